# raftnet: every target installs what it needs; a second run is quick.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup setup-dev sysdeps check test test-partitions test-fast bench demo clean-runs clean

help:
	@echo "make demo              set up, then run the main job (sudo for the namespace run)"
	@echo "make check             lint (ruff), types (mypy), the Vagrantfile's syntax (ruby); CI runs it first"
	@echo "make setup-dev         setup plus what only development needs (ruby, for the Vagrantfile check)"
	@echo "make test              the whole suite (as root it includes the namespace tests)"
	@echo "make test-partitions   only the namespace scenarios (needs root or user namespaces)"
	@echo "make bench             raftnet beside etcd (root: namespaces): throughput, latency, CPU, RSS, failover; ratios"
	@echo "                       and targets, JSON in bench-results/ (BENCH_ARGS=\"--baseline HEAD~5\" adds that commit)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "make: cannot create a venv; install python3-venv" >&2; exit 2; }
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,dev]'
	@touch $(STAMP)

sysdeps:
	@sh scripts/install-sysdeps.sh

setup: $(STAMP) sysdeps

setup-dev: setup
	@RAFTNET_WITH_RUBY=1 sh scripts/install-sysdeps.sh

check: setup-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	@if command -v ruby >/dev/null 2>&1; then ruby -c vagrant/Vagrantfile >/dev/null && echo "vagrant/Vagrantfile: Syntax OK"; \
	else echo "note: ruby missing, the Vagrantfile's syntax is not checked (sudo make setup-dev installs it)"; fi

test: setup
	@RAFTNET_WITH_CHROMIUM=1 sh scripts/install-sysdeps.sh  # the report's render test (headless Chromium)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -n auto -m "not slow and not netns" $(PYTEST_ARGS)

test-partitions: setup
	$(BIN)/python -m pytest -n auto -m netns $(PYTEST_ARGS)

bench: setup
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)
	$(BIN)/python scripts/bench_power.py

DEMO_ARGS ?= --nodes 5 --time 60 --clients 10 --keys 5 --nemesis all

demo: setup
	@if [ "$$(id -u)" = 0 ]; then \
		$(BIN)/raftnet check $(DEMO_ARGS); \
	else \
		echo "not root: network namespaces need root (sudo make demo), so this is the short tour on 127.0.0.1"; \
		$(BIN)/python scripts/demo_local.py; \
	fi

clean-runs:
	rm -rf runs bench-results

clean: clean-runs
	rm -rf $(VENV) *.egg-info
