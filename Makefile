# The short forms of the project's commands. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
PYTEST_ARGS ?=
# Test processes (pytest-xdist; 0 = none); each test file stays on one, so its module
# fixtures are built once. Much of a test's time (imports, XLA compilation) runs on one
# thread: two processes finish 1.49x sooner on 2 cores (22 vs 33 min, a slow EPYC).
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
DEMO_ARGS ?=
# demo-full: the recorded 1× run (results/embedded_full.py; its header lists the flags).
# Its mix, a quarter of every batch synthetic with the 0.9 filter, gained most at 20
# and 40 epochs (results/README.md); add ",ratio:0.25+distill:0.5+temperature:2" for
# the row's second mix, soft targets and their control (~95 min more, the best at 60
# epochs), or ",concat+filter:0.9" for the filtered union (~65 min more).
FULL_ARGS ?= --scales=1 --mixes=ratio:0.25+filter:0.9

.PHONY: venv data test test-slow bench demo demo-full clean

# The venv is rebuilt when setup.py changes (the stamp records the last install).
$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Real Fashion-MNIST (Debian package dataset-fashion-mnist, idx files).
data:
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST found in $(FASHION_MNIST_DIR)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else \
	  echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
	       "or put the four idx .gz files in a folder and set FASHION_MNIST_DIR=<folder>."; \
	  exit 1; \
	fi

test: venv data
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(PYTEST) $(PYTEST_ARGS) tests

test-slow: venv data
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(PYTEST) --run-slow $(PYTEST_ARGS) tests

bench: venv
	for b in benchmarks/*_bench.py; do $(PY) $$b || exit 1; done

# The embedded factory end to end (pipelines/configs/fashion.py:demo, 5-30 min on 2
# CPU cores); rerun to resume. demo-full: the 1× run behind results/embedded_full.json
# (hours; workdirs/fashion_full_1x, rerun to resume), which it rewrites.
demo: venv data
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(PY) -m synthfactory.pipelines.run \
	  --config=pipelines/configs/fashion.py:demo $(DEMO_ARGS)

demo-full: venv data
	FASHION_MNIST_DIR=$(FASHION_MNIST_DIR) $(PY) results/embedded_full.py $(FULL_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
