# The studio's two commands: `make run` and `make test`. Both create .venv
# and install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint pytest storage-check debian-packages bench lighthouse mutation fuzz clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# gunicorn (several web processes) and one job worker; `flask run` alone also works.
run: $(VENV)/.installed
	PY=$(PY) HOST=$(HOST) PORT=$(PORT) ./scripts/run.sh

test: debian-packages lint pytest storage-check

# The tests start real components: Debian's chromium (Playwright downloads no
# browser here) and redis-server.
debian-packages:
	@./scripts/install_debian.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check generation_studio tests benchmarks

pytest: $(VENV)/.installed
	$(PY) -m pytest -q

storage-check: $(VENV)/.installed
	PY=$(PY) ./scripts/storage_check.sh

# A long fuzzing run: schemathesis against a live server from /api/openapi.json
# (tests/test_fuzz.py), every phase, FUZZ_EXAMPLES cases per route (thousands
# of requests); it prints the requests sent, the 5xx found and the time.
FUZZ_EXAMPLES ?= 100
fuzz: $(VENV)/.installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		$(PY) -m pytest -q -s tests/test_fuzz.py

# Lighthouse on the pages with OPERATIONS (50,000) stored; npm and Chromium needed (README).
lighthouse: $(VENV)/.installed debian-packages
	PY=$(PY) ./benchmarks/lighthouse.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/queue_latency.py
	$(PY) benchmarks/history_bench.py

# Mutation testing of storage/ and history/ ([tool.mutmut] in pyproject.toml; README,
# "Mutation testing"). It takes an hour or more on 2 cores, so it is not part of `make test`. Results are kept
# in mutants/ and a second run only redoes what changed; `rm -rf mutants` starts afresh.
# It lists the surviving mutants (`$(VENV)/bin/mutmut show <name>` shows one) and the totals.
MUTATION_JOBS ?= $(shell nproc)
mutation: $(VENV)/.installed
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	@echo "Surviving, timed-out and untested mutants:"
	@$(VENV)/bin/mutmut results
	@$(VENV)/bin/mutmut export-cicd-stats >/dev/null
	@$(PY) -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); \
	print("mutants: {total} total, {killed} killed, {survived} survived, {timeout} timeout, " \
	      "{no_tests} without tests, {suspicious} suspicious".format(**s))'

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache mutants
