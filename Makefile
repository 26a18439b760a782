# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/demo
# The local Neo4j of a checkout lives in the checkout (an installed wheel uses a per-user folder).
export GRAPHINV_NEO4J_HOME ?= $(CURDIR)/.neo4j

.PHONY: demo check test bench neo4j-start neo4j-stop clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[dev,notebooks,spark]'
	touch $@

# The main job on the embedded store (DuckDB file): no server, no Java.
demo: $(VENV)/.installed
	rm -rf $(DEMO)
	$(BIN)/graphinv synth $(DEMO)/input --preset small --seed 7
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb load $(DEMO)/input
	# Exit status 10 means "a new ring scores above the alert threshold": expected here.
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb sweep --json $(DEMO)/sweep.json || [ $$? -eq 10 ]
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb evaluate --labels $(DEMO)/input
	@TOP=$$($(BIN)/graphinv --db $(DEMO)/graphinv.duckdb rings --limit 1 --format csv | sed -n 2p | cut -d, -f2); \
	echo; echo "Next (the ranked table is above):"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb ring $$TOP"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb case $$TOP --html $(DEMO)/case.html --csv $(DEMO)/accounts.csv"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb review"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb review $$TOP --set-status in_progress --assignee $$USER"; \
	echo "  a second day: $(BIN)/graphinv synth $(DEMO)/day2 --next-day $(DEMO)/input && $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb load $(DEMO)/day2 && $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb sweep"

# Modules that type-check clean; the rest of the package is not there yet (CONTRIBUTING.md).
TYPED := graphinv/stores graphinv/score graphinv/config.py graphinv/evaluate.py \
	graphinv/errors.py graphinv/ingest/load.py graphinv/ingest/pseudonymise.py \
	graphinv/ingest/fingerprint.py graphinv/ingest/prompt_rules.py \
	graphinv/investigate/querylib.py graphinv/investigate/browser_kit.py

# The fast loop: lint, types and every test that needs neither Neo4j, Spark nor a large preset.
check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy --follow-imports=silent $(TYPED)
	$(BIN)/pytest -q -m "not neo4j and not slow and not spark"

# The whole suite; the test session starts the local Neo4j itself (and stops it after).
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

# Benchmarks print tables (sizes, times, peak memory, machine); see README "Performance".
bench: $(VENV)/.installed
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_detect.py
	$(BIN)/python bench/bench_load.py --accounts 100000

neo4j-start: $(VENV)/.installed
	$(BIN)/graphinv neo4j start

neo4j-stop: $(VENV)/.installed
	$(BIN)/graphinv neo4j stop

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
