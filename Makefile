# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint docs install clean

# pip --quiet hides its progress, so each step says what it installs and how long it usually takes
# (issue #38: a newcomer could not tell the install from a hang). Measured on the 2-core machine,
# from a package mirror: `time make install` in a fresh clone 5 min 27 s at load average 7.7-9.3
# (the ".[dev]" step 315 s), and the ".[dev]" step alone 68 s on a quieter machine.
$(BIN)/python:
	@echo "make: creating the virtual environment $(VENV) with $(PYTHON) (a few seconds)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV) (a few seconds)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: pip upgraded"

$(STAMP): $(BIN)/python pyproject.toml
	@echo "make: installing edgetransfer and its [dev] extra into $(VENV): TensorFlow, Keras, ONNX Runtime,"
	@echo "      LiteRT, OpenVINO, Ray, tflite-micro, the docs tools, pytest, ruff, mypy (about 3 GB);"
	@echo "      usually 1 to 6 minutes, and pip prints nothing until it is done (a setuptools notice"
	@echo "      'Editable installation' is expected)"
	@start=$$(date +%s); $(BIN)/python -m pip install --quiet -e ".[dev]" \
		&& echo "make: edgetransfer installed in $$(( $$(date +%s) - start )) s"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetransfer quickstart

# Two pytest-xdist workers, a whole test file each (module fixtures built once); TEST_WORKERS=0
# runs in one process. Last measured full runs on 2 cores: 17 min with 2 workers, 39.5 min in one
# process (both before the fast layer and the cheaper per-test Keras clean-up; not re-measured).
# The Ctrl-C test's two-worker flake (exit 0 instead of 130) was a KeyboardInterrupt swallowed by
# a finaliser inside Keras' fit, fixed in edgetransfer/training/interrupt.py.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

# ruff (lint + format) and mypy, configured in pyproject.toml; the same as .pre-commit-config.yaml.
lint: $(STAMP)
	$(BIN)/ruff check edgetransfer tests benchmarks examples docs/_hooks
	$(BIN)/ruff format --check edgetransfer tests benchmarks examples docs/_hooks
	$(BIN)/mypy

# -m "not slow": the fast layer on a tiny untrained run (tests/conftest.py: untrained_run), records,
# strict YAML, data, registries; the change-by-change check. Measured: 276 tests in 2 min 44 s with
# 2 workers on the 2-core machine while shared (load average 9-12).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# The documentation site (mkdocs.yml, docs/): strict, so a broken link, a page missing from the nav
# or an API reference that no longer resolves fails the build; offline (no web fonts, no downloads).
# Open site/index.html. NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2.0, not a build warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) quickstart-out .pytest_cache site
