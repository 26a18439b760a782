# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/demo

.PHONY: demo test lint bench neo4j-start neo4j-stop clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[dev,notebooks]'
	touch $@

# The main job on the embedded store (DuckDB file): no server, no Java.
demo: $(VENV)/.installed
	$(BIN)/graphinv synth $(DEMO)/input --preset small --seed 7
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb load $(DEMO)/input
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb sweep
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb rings --limit 15

# The whole suite; the test session starts the local Neo4j itself (and stops it after).
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python -m bench

neo4j-start: $(VENV)/.installed
	$(BIN)/graphinv neo4j start

neo4j-stop: $(VENV)/.installed
	$(BIN)/graphinv neo4j stop

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
