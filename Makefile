# Two commands a newcomer needs:
#   make demo   set everything up and run the demo (PORT=8081 for another port)
#   make test   set everything up and run every test (embedded defaults, then PostgreSQL + Redis,
#               then the short fault-injection run, make chaos)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: setup demo test test-embedded test-services lint services diagrams bench browser messages chaos

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# make demo PORT=8081 (HOST=0.0.0.0) when 8080 is taken; ARGS=--once for the walkthrough only.
demo: setup
	$(VENV)/bin/paybot demo $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST)) $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

test: setup browser lint test-embedded test-services chaos

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests" >&2; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

test-embedded: setup browser
	PAYBOT_TEST_BACKEND=embedded $(PY) -m pytest

test-services: setup browser services
	PAYBOT_TEST_BACKEND=services $(PY) -m pytest

services:
	bash scripts/ensure-services

# The Spanish catalogs (bot/locale/es): extract every marked text, merge it in; then translate.
messages: setup
	$(PY) -m bot.text.catalogs update
	$(PY) -m bot.text.catalogs check

diagrams: setup
	$(PY) -m states.diagram > docs/flows.md
	$(PY) -m states.diagram --readme

bench: setup services
	$(PY) -m bench.sms_load --backend services --floor

# The fault-injection run (docs/reliability.md): its own PostgreSQL, Redis and localstripe, two web
# processes and two workers, simulated customers, faults on a seeded schedule, the invariants
# checked at the end; exit 1 on any violation. The long run: make chaos MINUTES=30 CUSTOMERS=400
chaos: setup
	$(PY) -m bench.chaos --minutes $(or $(MINUTES),2) --customers $(or $(CUSTOMERS),200) --seed $(or $(SEED),7) $(ARGS)
