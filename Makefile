# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-team test bench mutation coverage clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/slotgen demo

# Two operators' clones on one PostgreSQL database (starts a throwaway local server: the OS's PostgreSQL 15).
demo-team: $(STAMP)
	$(VENV)/bin/slotgen demo --team

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/run_all.py

# Mutation testing (slow: see README): `make mutation MODULES="slotgen_ops/audit/log.py"` narrows it.
MODULES ?=
JOBS    ?= 2
$(VENV)/.mutation-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	touch $@

mutation: $(VENV)/.mutation-installed
	$(PY) tools/mutation_report.py run --jobs $(JOBS) $(MODULES)

# Branch coverage of the whole suite, the CLI's subprocesses included (slow: about 1.5x `make test`).
coverage: $(VENV)/.mutation-installed
	rm -rf .coverage-data && mkdir -p .coverage-data
	$(PY) -m coverage run -m pytest -q -p no:cacheprovider
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --sort=cover

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis dist build mutants .coverage-data
