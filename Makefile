# The studio's two commands: `make run` and `make test`. Both create .venv
# and install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test pytest storage-check chromium bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m flask --app generation_studio run --host $(HOST) --port $(PORT)

test: chromium pytest storage-check

# The browser tests drive Debian's Chromium (Playwright downloads no browser here).
chromium:
	@command -v chromium >/dev/null || ./scripts/install_chromium.sh

pytest: $(VENV)/.installed
	$(PY) -m pytest -q

storage-check: $(VENV)/.installed
	PY=$(PY) ./scripts/storage_check.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/record_overhead.py
	$(PY) benchmarks/history_bench.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
