# The two commands of the README: `make bench` (main job) and `make test` (the suite).
# Each creates .venv on first use and installs everything in one pip command.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test install clean

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

clean:
	rm -rf $(VENV) results
