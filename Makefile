# Two commands matter: `make run` (try it) and `make test` (prove it). Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev,emulator,e2e

.PHONY: run test test-postgres lint bench install clean

# editable_mode=compat: a plain path entry, without setuptools' warning about import precedence.
$(STAMP): pyproject.toml
	@echo "Installing Python packages into $(VENV) (the first time takes a minute or two)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]" --config-settings editable_mode=compat
	@touch $(STAMP)
	@echo "Packages installed."

install: $(STAMP)

## make run: SQLite, in-memory channel layer, and the local emulator unless OPENAI_API_KEY is set.
run: $(STAMP)
	@bash scripts/run.sh

## make test: the whole suite (unit, integration, real-browser). DATABASE_URL=postgres://... for PostgreSQL.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	@DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest $(PYTEST_ARGS)

# ESLint comes with the browser tests' tools (tests/e2e/package-lock.json); npm ci when the lockfile changes.
NODE_TOOLS := tests/e2e/node_modules/.package-lock.json
$(NODE_TOOLS): tests/e2e/package-lock.json
	@npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error

## make lint: ruff, mypy (voice/, realtime_site/) and ESLint (static/); silent when all is well.
lint: $(STAMP) $(NODE_TOOLS)
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/mypy --no-error-summary
	@tests/e2e/node_modules/.bin/eslint static/ eslint.config.js

bench: $(STAMP)
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[bench]"
	@$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles test-artifacts benchmarks/results
