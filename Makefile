# Two commands on a fresh clone:  `make demo`  (main job)  and  `make test`  (whole test suite).
# Each creates .venv and installs everything from the package registry on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Where the real annotation data lives (../shared/data beside the project by default).
PROCALIGN_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export PROCALIGN_DATA

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/procalign demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/dp_kernels.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
