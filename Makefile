# The two commands of robotjobs (see README): `make demo` runs a real batch end to end, `make test` runs the tests.
# Both set up everything themselves on a fresh machine: a virtualenv with the pinned dependency set.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PostgreSQL server the second test run uses; the suite creates (and drops) its own database on it.
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: install test test-sqlite test-postgres demo up down status clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

test: install
	$(PY) -m stack.run_tests --database sqlite --database "$(PG_TEST_URL)"

test-sqlite: install
	$(PY) -m stack.run_tests --database sqlite

test-postgres: install
	$(PY) -m stack.run_tests --database "$(PG_TEST_URL)"

demo: install
	$(PY) -m stack.demo

up: install
	$(PY) -m stack.up

down:
	$(PY) -m stack.down

status:
	$(PY) -m cli.main stack-status

clean:
	rm -rf $(VENV) var
