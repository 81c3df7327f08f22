# dann_ros developer entry points. `make setup` is idempotent: a second run with nothing
# changed does nothing (stamps in .venv/.setup-stamps, keyed on hashes of the inputs).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TESTS ?= test
PYTEST_ARGS ?=

# Every ROS process started from here stays on this machine (see docs/CONVENTIONS.md).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.DEFAULT_GOAL := help
.PHONY: help setup demo test bench clean distclean

help:
	@echo "make demo       set up, then run the demo on the built-in real data"
	@echo "make test       set up, then run the test suite (pytest, 2 workers; TESTS=, PYTEST_ARGS=)"
	@echo "make setup      .venv + requirements + dann_ros (editable) + vision_msgs + demo data"
	@echo "make bench      set up, then run benchmarks/*.py"
	@echo "make clean      remove build outputs and caches (keeps .venv and downloaded data)"
	@echo "make distclean  clean, and remove .venv and .cache too"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/dann-ros demo

test: setup
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS) $(TESTS)

bench: setup
	@shopt -s nullglob; set -e; ran=0; \
	for f in benchmarks/*.py; do \
		case "$$(basename "$$f")" in _*|conftest.py) continue;; esac; \
		echo "== $$f"; $(PY) "$$f"; ran=1; \
	done; \
	[[ $$ran == 1 ]] || echo "no benchmarks in benchmarks/"

clean:
	rm -rf build .cache/build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .cache
