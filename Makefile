# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetransfer quickstart

# TEST_WORKERS=2: two pytest-xdist workers, a whole test file each (module fixtures built once).
# Measured on 2 cores: 17 min against 39.5 min in one process; but the Ctrl-C test
# (test_sigint_mid_epoch...) exited 0 instead of 130 in 2 of 3 such runs, not yet understood,
# so the default (and CI) stays one process.
TEST_WORKERS ?= 0

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

# ruff (lint + format) and mypy, configured in pyproject.toml; the same as .pre-commit-config.yaml.
lint: $(STAMP)
	$(BIN)/ruff check edgetransfer tests benchmarks examples
	$(BIN)/ruff format --check edgetransfer tests benchmarks examples
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) quickstart-out .pytest_cache
