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
.PHONY: help setup demo test bench clean distclean test-torchless test-jazzy robot-setup

help:
	@echo "make demo       set up, then run the demo on the built-in real data"
	@echo "make test       set up, then run the test suite (pytest, 2 workers; TESTS=, PYTEST_ARGS=)"
	@echo "make setup      .venv + requirements + dann_ros (editable) + vision_msgs + demo data"
	@echo "make test-torchless  the ROS node, eval-bag and replay tests with torch made unimportable"
	@echo "make test-jazzy the ROS tests again on ROS 2 Jazzy (a second venv, .cache/venv-jazzy)"
	@echo "make robot-setup     on the robot: venv (system site-packages) + pip install -e .[runtime], no torch"
	@echo "make bench      set up, then run benchmarks/*.py"
	@echo "make clean      remove build outputs and caches (keeps .venv and downloaded data)"
	@echo "make distclean  clean, and remove .venv and .cache too"

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/dann-ros demo

test: setup
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS) $(TESTS)

# --- robot side without torch (issue 13) ----------------------------------------------------
# Test models are exported with torch first, then the tests run with torch blocked in every
# process (test/torchless/sitecustomize.py), subprocesses such as dann_node included.
TORCHLESS_TESTS ?= test/ros test/runtime test/export/test_tensorrt.py test/evaluation/test_eval_bag.py \
	test/evaluation/test_eval_bag_detection.py test/evaluation/test_replay.py
test-torchless: setup
	rm -rf .cache/test-models && $(PY) -m test.make_test_models .cache/test-models
	DANN_ROS_BLOCK_TORCH=1 DANN_ROS_TEST_MODELS=$(CURDIR)/.cache/test-models \
		PYTHONPATH=$(CURDIR)/test/torchless$${PYTHONPATH:+:$$PYTHONPATH} \
		$(PY) -m pytest -n 2 -q $(PYTEST_ARGS) $(TORCHLESS_TESTS)

# --- the ROS tests on ROS 2 Jazzy (issue 12) ---------------------------------------------------
# A second venv (.cache/venv-jazzy, scripts/setup_jazzy.sh) with the ros-jazzy-* wheels (rclpy
# 7.1.x) and no torch, as on a JetPack 7 robot; test models exported with .venv first.
JAZZY_VENV ?= .cache/venv-jazzy
JAZZY_TESTS ?= test/ros
test-jazzy: setup
	@JAZZY_VENV=$(JAZZY_VENV) bash scripts/setup_jazzy.sh
	@$(JAZZY_VENV)/bin/python -c "import importlib.metadata as m; print('Jazzy leg: ros-rclpy', m.version('ros-rclpy'))"
	rm -rf .cache/test-models-jazzy && $(PY) -m test.make_test_models .cache/test-models-jazzy
	DANN_ROS_BLOCK_TORCH=1 DANN_ROS_TEST_MODELS=$(CURDIR)/.cache/test-models-jazzy \
		PYTHONPATH=$(CURDIR)/test/torchless$${PYTHONPATH:+:$$PYTHONPATH} \
		$(JAZZY_VENV)/bin/python -m pytest -n 2 -q $(PYTEST_ARGS) $(JAZZY_TESTS)

ROBOT_VENV ?= .venv
robot-setup:
	python3 -m venv --system-site-packages $(ROBOT_VENV)
	$(ROBOT_VENV)/bin/python -m pip install --upgrade pip
	$(ROBOT_VENV)/bin/python -m pip install -e '.[runtime]'
	bash scripts/install_ros_prefix.sh $(ROBOT_VENV)   # ros2 launch/run find dann_ros in the venv

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
