# Two commands a newcomer needs:
#   make demo   set everything up and run the demo
#   make test   set everything up and run every test (embedded defaults, then PostgreSQL + Redis)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: setup demo test test-embedded test-services lint services diagrams bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/paybot demo

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint test-embedded test-services

test-embedded: setup
	PAYBOT_TEST_BACKEND=embedded $(PY) -m pytest

test-services: setup services
	PAYBOT_TEST_BACKEND=services $(PY) -m pytest

services:
	bash scripts/ensure-services

diagrams: setup
	$(PY) -m states.diagram > docs/flows.md
	$(PY) -m states.diagram --readme

bench: setup services
	$(PY) -m bench.sms_load --backend services
