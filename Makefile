# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# gcloud-tasks-emulator pins protobuf 4.25 and an old google-cloud-tasks, which conflict with ours: its own venv,
# built before the tests (they run with loopback as the only network). The stamp names the version it installed.
TASKS_EMULATOR := $(VENV)/tasks-emulator
TASKS_EMULATOR_VERSION := 0.6.2
# Debian's Chromium for the browser tests (tests/report/test_browser.py) and `make screenshot`, with the emoji font
# the verdict icons need: installed where make runs as root with apt-get (CI, a fresh machine: about 25 s), before the
# tests lose the network; elsewhere those tests are skipped and say why.
BROWSER_PACKAGES := chromium fonts-noto-color-emoji
# `make mutate MODULES="report/score.py"`; empty: tests/mutation.py's own list.
MODULES ?=

# No recipe may reach the GCE metadata server (169.254.169.254): google-auth skips its probe and points it at a
# closed loopback port, and gcloud (the Pub/Sub emulator's launcher) neither probes, reports usage nor checks for updates.
export NO_GCE_CHECK := true
export GCE_METADATA_HOST := 127.0.0.1:9
export GCE_METADATA_IP := 127.0.0.1:9
export CLOUDSDK_CORE_CHECK_GCE_METADATA := false
export CLOUDSDK_CORE_DISABLE_USAGE_REPORTING := true
export CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK := true

.PHONY: demo demo-broken test lint bench mutate clean browser golden screenshot

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

$(TASKS_EMULATOR)/.installed-$(TASKS_EMULATOR_VERSION):
	$(PYTHON) -m venv $(TASKS_EMULATOR)
	$(TASKS_EMULATOR)/bin/python -m pip install -q gcloud-tasks-emulator==$(TASKS_EMULATOR_VERSION)
	touch $@

browser:  ## Chromium for the browser tests, where apt-get can install it
	@if command -v chromium >/dev/null 2>&1 && { ! command -v dpkg >/dev/null 2>&1 || dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(BROWSER_PACKAGES) (Debian) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; \
	else echo "note: chromium is not installed and installing it needs root and apt-get: the browser tests will be skipped"; fi

demo: $(VENV)/.runtime  ## validate the bundled sample service offline
	$(BIN)/python main.py demo

demo-broken: $(VENV)/.runtime  ## the same with a broken service: a FAIL with reasons
	$(BIN)/python main.py demo --broken

test: $(VENV)/.dev $(TASKS_EMULATOR)/.installed-$(TASKS_EMULATOR_VERSION) browser  ## the whole suite, loopback-only where unshare works; fixtures start and stop the emulators and servers
	bash tests/isolated.sh $(BIN)/python -m pytest

golden: $(VENV)/.dev  ## rewrite tests/data/golden from what the code renders now: review it with `git diff tests/data/golden`
	UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q -k golden tests/report/test_golden_files.py tests/report/test_render.py

screenshot: $(VENV)/.dev browser  ## docs/fail-report.png: the broken demo's FAIL report in Chromium, 1280 px wide, for the README
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	$(BIN)/python main.py demo --broken --out "$$out" >/dev/null && \
	$(BIN)/python -m tests.servers.browser "$$(ls "$$out"/*/*/report.html | head -n 1)" docs/fail-report.png --width 1280 --max-height 2400

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy .
	@if command -v shellcheck >/dev/null; then shellcheck deploy/deploy.sh tests/isolated.sh .ci/run; \
	else echo "shellcheck not installed: deploy/deploy.sh, tests/isolated.sh and .ci/run not linted"; fi

bench: $(VENV)/.dev  ## P1 cold import ratio, P2 ack time, P3 concurrency, P6 Logging calls, P7 time to verdict
	$(BIN)/python bench/bench.py

mutate: $(VENV)/.dev  ## mutation testing of the verdict code: the figure per module
	$(BIN)/python tests/mutation.py $(MODULES)

clean:
	rm -rf $(VENV) reports mutants .pytest_cache .mypy_cache .ruff_cache
