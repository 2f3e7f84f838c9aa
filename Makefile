# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo demo-broken test lint bench clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.runtime  ## validate the bundled sample service offline
	$(BIN)/python main.py demo

demo-broken: $(VENV)/.runtime  ## the same with a broken service: a FAIL with reasons
	$(BIN)/python main.py demo --broken

test: $(VENV)/.dev  ## the whole suite; fixtures start and stop the emulators and local servers
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy .
	@if command -v shellcheck >/dev/null; then shellcheck deploy/deploy.sh; else echo "shellcheck not installed: deploy/deploy.sh not linted"; fi

bench: $(VENV)/.dev  ## P1 cold import ratio, P2 ack time, P3 concurrency, P6 Logging calls
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
