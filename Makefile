# synthstudy: `make reproduce` runs the whole study (quick profile by default), `make test` checks it.
# Every target installs what it needs first, so both work on a fresh machine.
PROFILE ?= quick
EXECUTOR ?= inline
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz

.PHONY: setup data reproduce test lint test-executors unit notebooks-smoke lab bench sync clean help

help:
	@echo "make reproduce [PROFILE=quick|smoke|paper] [EXECUTOR=inline|local|slurm]"
	@echo "                                           run the study's notebooks -> results/, figures/, report.html"
	@echo "make test                                  lint (ruff), unit tests + every notebook on the smoke profile"
	@echo "make test-executors                        the whole smoke study under EXECUTOR=local = the inline run"
	@echo "make lint                                  ruff: style, import order, common bugs"
	@echo "make bench                                 accuracy per budget in training images (128k-1M, 3 seeds; same on any"
	@echo "                                           machine), 2/5-min wall-clock table vs a compute ceiling, generators"
	@echo "make lab                                   JupyterLab on notebooks/"
	@echo "make setup | data | sync | clean"

# Virtual environment with the pinned packages; reinstalls only when pyproject.toml changes.
setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST, offline: $$SYNTHSTUDY_DATA, the Debian package's folder, or ./data (see synthstudy/data.py).
data:
	@for d in "$$SYNTHSTUDY_DATA" /usr/share/datasets/fashion-mnist ./data; do \
	  if [ -n "$$d" ] && [ -f "$$d/train-images-idx3-ubyte.gz" ] && [ -f "$$d/t10k-labels-idx1-ubyte.gz" ]; then \
	    echo "Fashion-MNIST found in $$d"; exit 0; fi; done; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST is missing. Get it one of three ways:"; \
	  echo "  1. sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; or run 'make data' as root)"; \
	  echo "  2. export SYNTHSTUDY_DATA=/folder/with/the/four/idx.gz/files"; \
	  echo "  3. copy $(FMNIST_FILES) into ./data"; \
	  exit 1; fi

reproduce: setup data
	@# the last notebook, `report`, publishes figures/, regenerates the README's results section (not on smoke)
	@# and writes results/$(PROFILE)/report/report.html
	$(PY) -m synthstudy.reproduce --profile $(PROFILE) --executor $(EXECUTOR)

# Unit tests, then every notebook end to end on the smoke profile (tests/test_notebooks.py).
# Without Fashion-MNIST (no root, no files) the tests that need it are skipped, the rest still run.
test: setup
	-@$(MAKE) --no-print-directory data
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not executors"

lint: setup
	$(VENV)/bin/ruff check .

# The scale-out path for the whole study: every smoke notebook inline and under EXECUTOR=local (2 jobs at a time),
# records compared (tests/test_executors.py). Minutes, so separate from `make test`; .ci/run calls both.
test-executors: setup
	-@$(MAKE) --no-print-directory data
	$(PY) -m pytest -m executors

# Classifier at budgets of 128k-1M training images x 3 seeds (the main table, the same on every machine), then the
# 2- and 5-min wall-clock points x 3 seeds (this machine's table, throughput against a compute ceiling), then the
# quick generators' fit time and samples/s (a generator missing from results/cache is trained first: 4-14 min for
# all four on 2-core VMs). The former --as-if-peak step is retired: the images table answers it on any machine.
bench: setup data
	$(PY) -m synthstudy.bench --generators

# JupyterLab with the jupytext .py sources opened as notebooks (settings in .jupyter/, this project's only).
lab: setup
	JUPYTERLAB_SETTINGS_DIR=$(CURDIR)/.jupyter/lab/user-settings $(VENV)/bin/jupyter lab notebooks/

# Re-pair notebooks/*.ipynb with their .py sources (the .py files are the truth).
sync: setup
	$(VENV)/bin/jupytext --sync notebooks/*.py

clean:
	rm -rf results/ .pytest_cache
