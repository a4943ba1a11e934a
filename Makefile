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

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# ruff (lint + format) and mypy, configured in pyproject.toml; the same as .pre-commit-config.yaml.
lint: $(STAMP)
	$(BIN)/ruff check edgetransfer tests benchmarks examples
	$(BIN)/ruff format --check edgetransfer tests benchmarks examples
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) quickstart-out .pytest_cache
