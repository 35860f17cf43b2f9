# Continuity: `make run` serves a dev frontend on 127.0.0.1:8080, `make test` runs everything.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install test lint run clean unit

install: $(STAMP_PY) $(STAMP_NPM)

$(STAMP_PY): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check frontend client tests $(wildcard gossip) $(wildcard router) $(wildcard bench)
	$(BIN)/mypy frontend client $(wildcard gossip) $(wildcard router)

run: install
	$(BIN)/python -m frontend --dev --host 127.0.0.1 --port 8080

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
