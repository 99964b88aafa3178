# The two commands of the README: `make bench` (main job) and `make test` (the suite).
# Each creates .venv on first use and installs everything in one pip command.
# Extra targets: `make lint` (ruff + mypy, as tests/test_lint.py runs them) and `make test-unit`
# (the unit tests alone: no Ray, redis-server or HTTP; see tests/conftest.py).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test test-unit lint install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/rwttt bench --backend http

test: $(STAMP)
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests -m unit

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) results
