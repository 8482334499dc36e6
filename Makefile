# STEP: every target sets up what it needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock.txt pyproject.toml | sha1sum | cut -c1-12)
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow test-gpu lint bench leaderboard reproduce-cpu clean

help: ## list every target with one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  make %-28s %s\n", $$1, $$2}'

$(STAMP): requirements.lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# ONE resolver run: torch and torchvision are pinned beside everything else, so nothing swaps them.
	$(PY) -m pip install -q -r requirements.lock.txt
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies and the package (editable)

demo: install ## train a small Spikformer on the embedded digits, print the result table
	$(VENV)/bin/step-train experiment=demo

test: install ## run the test suite (fast: tiny models; excludes slow and gpu markers)
	WANDB_MODE=disabled $(PY) -m pytest -q

test-slow: install ## run only the slow tests (longer trainings)
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow

test-gpu: install ## run the CUDA tests (needs a GPU)
	WANDB_MODE=disabled $(PY) -m pytest -q -m gpu

bench: install ## timed benchmarks (ours vs peers, same process, medians and ratios) -> results/bench.csv
	WANDB_MODE=disabled $(PY) tests/benchmarks/bench_energy.py

clean: ## remove outputs of runs (keeps results/ and the venv)
	rm -rf outputs multirun
