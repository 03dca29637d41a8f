# Every target creates .venv when it is missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test lint bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/hcs-batch demo
	@echo
	@echo "The hcs-batch command is installed in $(VENV). To use it, activate the environment:"
	@echo "    . $(VENV)/bin/activate      # then: hcs-batch --help"
	@echo "or call it by its path: $(VENV)/bin/hcs-batch --help"

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src guest_mode tests benchmarks scripts
	$(VENV)/bin/mypy

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks $(if $(FULL),--full,)

docs: $(STAMP)
	$(PY) -m scripts.steps_reference

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
