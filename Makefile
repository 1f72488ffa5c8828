# Two commands: `make run` serves the app with demo tasks, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
DEMO_TASKS ?= 5000
# Test processes (pytest-xdist): one per core; each makes databases of its own.
TEST_PROCESSES ?= auto
# The database servers the tests use when they are running here (tests for a server that
# cannot be reached are skipped, or fail when CI is set); override to point elsewhere.
export TEST_POSTGRESQL_URL ?= postgresql://postgres@127.0.0.1:5432/test
export TEST_MARIADB_URL ?= mariadb://root@127.0.0.1:3306/test

.PHONY: run test lint format bench clean

run: $(VENV)/.installed
	$(BIN)/flask --app wsgi seed-demo --if-empty --tasks $(DEMO_TASKS)
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal

lint: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_tasks.py

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.x)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .hypothesis .schemathesis
