# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/demo
# The local Neo4j of a checkout lives in the checkout (an installed wheel uses a per-user folder).
export GRAPHINV_NEO4J_HOME ?= $(CURDIR)/.neo4j

.PHONY: demo check test bench lock neo4j-start neo4j-stop clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs the exact tested set (hashes checked), then graphinv itself without resolving
# anything further: what runs here is what the suite passed on.
$(VENV)/.installed: pyproject.toml requirements-dev-lock.txt | $(BIN)/activate
	$(BIN)/pip install -q --require-hashes -r requirements-dev-lock.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Re-resolve the lock files from pyproject.toml's ranges (after changing a dependency),
# then run `make test` on the result before committing them.
lock: | $(BIN)/activate
	$(BIN)/pip install -q 'uv>=0.13,<0.14'
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		-o requirements-lock.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra notebooks --extra spark --python-version 3.11 \
		--generate-hashes -o requirements-dev-lock.txt

# The main job on the embedded store (DuckDB file): no server, no Java.
demo: $(VENV)/.installed
	rm -rf $(DEMO)
	$(BIN)/graphinv synth $(DEMO)/input --preset small --seed 7
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb load $(DEMO)/input
	# Exit status 10 means "a new ring scores above the alert threshold": expected here.
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb sweep --json $(DEMO)/sweep.json || [ $$? -eq 10 ]
	$(BIN)/graphinv --db $(DEMO)/graphinv.duckdb evaluate --labels $(DEMO)/input
	@TOP=$$($(BIN)/graphinv --db $(DEMO)/graphinv.duckdb rings --limit 1 --format csv | sed -n 2p | cut -d, -f2 | tr -d '"'); \
	echo; echo "Next (the ranked table is above):"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb ring $$TOP"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb case $$TOP --html $(DEMO)/case.html --csv $(DEMO)/accounts.csv"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb review"; \
	echo "  $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb review $$TOP --set-status in_progress --assignee $${USER:-$$(id -un)}"; \
	echo "  a second day: $(BIN)/graphinv synth $(DEMO)/day2 --next-day $(DEMO)/input && $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb load $(DEMO)/day2 && $(BIN)/graphinv --db $(DEMO)/graphinv.duckdb sweep"

# The fast loop: lint, types and every test that needs neither Neo4j, Spark nor a large preset,
# spread over the cores, a module per worker so its fixtures are built once (the Neo4j tests
# share one server, so `make test` runs in one process).
check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy graphinv
	$(BIN)/pytest -q -n auto --dist loadscope -m "not neo4j and not slow and not spark"

# The whole suite; the test session starts the local Neo4j itself (and stops it after).
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy graphinv
	$(BIN)/pytest

# Benchmarks print tables (sizes, times, peak memory, machine); see README "Performance".
bench: $(VENV)/.installed
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_detect.py
	$(BIN)/python bench/bench_load.py --accounts 100000
	$(BIN)/python bench/bench_scale.py --accounts 100000 300000 1000000
	# The peer (Neo4j GDS in the local server, settings chosen on tuning seeds) on a case-24k report seed.
	$(BIN)/python bench/bench_peer.py --preset case-24k --accounts 100000 --seeds 300
	# The Neo4j store beside the embedded one (medium preset), on a server of the bench's own:
	# bench_scale empties the database it is given, so never the investigator's server.
	export GRAPHINV_NEO4J_HOME=$(CURDIR)/data/bench-neo4j GRAPHINV_NEO4J_BOLT_PORT=7702 \
		GRAPHINV_NEO4J_HTTP_PORT=7703; \
	$(BIN)/graphinv neo4j start && \
	$(BIN)/python bench/bench_scale.py --preset medium --seed 21 --accounts 100000 \
		--neo4j bolt://127.0.0.1:7702; status=$$?; $(BIN)/graphinv neo4j stop; exit $$status

neo4j-start: $(VENV)/.installed
	$(BIN)/graphinv neo4j start

neo4j-stop: $(VENV)/.installed
	$(BIN)/graphinv neo4j stop

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
