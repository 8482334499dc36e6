# STEP: every target sets up what it needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock.txt pyproject.toml | sha1sum | cut -c1-12)
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow test-gpu lint bench bench-gpu leaderboard reproduce-cpu clean mutate

help: ## list every target with one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  make %-28s %s\n", $$1, $$2}'

$(STAMP): requirements.lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# ONE resolver run: torch and torchvision are pinned beside everything else, so nothing swaps them.
	$(PY) -m pip install -q -r requirements.lock.txt
	$(PY) -m pip install -q --no-deps -e .
	# NeuroBench for the energy parity tests: --no-deps, since its pins would swap torch (it needs none of them to count).
	$(PY) -m pip install -q --no-deps neurobench==2.3.0 snntorch==1.0.0
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies and the package (editable)

demo: install ## train a small Spikformer on the embedded digits, print the result table
	$(VENV)/bin/step-train experiment=demo

test: install ## run the test suite (fast: tiny models; excludes slow and gpu markers)
	WANDB_MODE=disabled $(PY) -m pytest -q

test-slow: install ## run only the slow tests (longer trainings)
	WANDB_MODE=disabled $(PY) -m pytest -q -m slow

test-gpu: install ## run the CUDA tests: Triton neuron kernels vs the torch loop, counting, tiny runs (skip without a GPU)
	WANDB_MODE=disabled $(PY) -m pytest -q -m gpu

bench-gpu: install ## GPU benchmark, < 5 min on one GPU: neuron, training step, inference vs SpikingJelly -> results/bench.csv (exits 0 without CUDA)
	WANDB_MODE=disabled $(PY) tests/benchmarks/bench_gpu.py $(BENCH_GPU_ARGS)

bench: install ## timed benchmarks (ours vs peers, same process, medians and ratios) -> results/bench.csv; exits 1 on REGRESSION
	WANDB_MODE=disabled $(PY) tests/benchmarks/run_all.py $(BENCH_ARGS)

mutate: install ## mutation score per core module (mutmut) -> results/mutation.csv; one module: make mutate MODULE=sdsa; re-test its survivors after new tests: AGAIN=1 (not in make test: minutes to hours)
	WANDB_MODE=disabled $(PY) tests/mutation/mutate.py $(if $(MODULE),--module $(MODULE),) $(if $(AGAIN),--again,)

clean: ## remove outputs of runs, the user board included (keeps results/ and the venv)
	rm -rf outputs multirun

# --- experiments, suites and the leaderboard (docs/sweeps.md, docs/leaderboard.md) ---
SUITES := attention sdsa repconv random_qk patch_embed neuron surrogate encoder shortcut timesteps temporal
REPRODUCE := reproduce-meta-spikeformer-15m-imagenet-t1 reproduce-meta-spikeformer-15m-imagenet-t4 reproduce-meta-spikeformer-31m-imagenet-t1 reproduce-meta-spikeformer-31m-imagenet-t4 reproduce-meta-spikeformer-55m-imagenet-t4 reproduce-meta-spikeformer-55m-imagenet-t4-distilled reproduce-qkformer-cifar10 reproduce-qkformer-cifar100 reproduce-qkformer-cifar10dvs reproduce-qkformer-dvsgesture reproduce-qkformer-imagenet reproduce-sdt-cifar10 reproduce-sdt-cifar100 reproduce-sdt-cifar10dvs reproduce-sdt-dvsgesture reproduce-sdt-imagenet reproduce-semm-cifar10 reproduce-semm-cifar100 reproduce-spikformer-cifar10 reproduce-spikformer-cifar100 reproduce-spikformer-cifar10dvs reproduce-spikformer-dvsgesture reproduce-spikformer-imagenet reproduce-spikformer-psmnist reproduce-spikformer-scifar10 reproduce-spikformer-smnist
.PHONY: $(REPRODUCE) reproduce-cpu dense-cpu leaderboard

# Runs append to the user board (outputs/leaderboard.csv, git-ignored) unless asked otherwise; the
# targets that curate results/ ask for it (an STEP_RESULTS already set in the environment wins).
$(REPRODUCE) reproduce-cpu dense-cpu: export STEP_RESULTS ?= $(CURDIR)/results

reproduce-cpu: install ## run the ablation suites at CPU size (SUITES="attention ..." for some; about 30 min each), move the rows each replaces to results/superseded.csv, then make leaderboard
	@for s in $(SUITES); do \
	  start=$$(date -u +%Y-%m-%dT%H:%M:%S+00:00); echo "== suite=$$s scale=cpu (started $$start)"; \
	  $(VENV)/bin/step-train suite=$$s scale=cpu || exit 1; \
	  $(VENV)/bin/step-board --supersede suite=$$s scale=cpu --since $$start \
	    --because "re-run by make reproduce-cpu at $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" || exit 1; \
	done
	$(MAKE) leaderboard

dense-cpu: install ## segmentation and detection on the embedded digits-scenes, Meta-SpikeFormer-tiny backbone (about 16 min on 2 CPU cores)
	$(VENV)/bin/step-train experiment=segmentation-digits-scenes
	$(VENV)/bin/step-train experiment=detection-digits-scenes

leaderboard: install ## rebuild results/reference.csv, render results/leaderboard.{md,html} and figures (ours beside the papers), and results/orderings.md
	-$(PY) -m step.results.cli --build-reference
	$(PY) -m step.results.cli --curated --compare-reference
	$(PY) -m step.results.cli --curated --orderings

reproduce-meta-spikeformer-15m-imagenet-t1: install ## Meta-SpikeFormer (15.1M) on ImageNet-1K at 224 px, T=1, trained directly (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-15m-imagenet-t1 seed=0,1,2
reproduce-meta-spikeformer-15m-imagenet-t4: install ## Meta-SpikeFormer (15.1M) on ImageNet-1K at 224 px, T=4, trained directly (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-15m-imagenet-t4 seed=0,1,2
reproduce-meta-spikeformer-31m-imagenet-t1: install ## Meta-SpikeFormer (31.3M) on ImageNet-1K at 224 px, T=1, trained directly (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-31m-imagenet-t1 seed=0,1,2
reproduce-meta-spikeformer-31m-imagenet-t4: install ## Meta-SpikeFormer (31.3M) on ImageNet-1K at 224 px, T=4, trained directly (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-31m-imagenet-t4 seed=0,1,2
reproduce-meta-spikeformer-55m-imagenet-t4: install ## Meta-SpikeFormer (55.4M) on ImageNet-1K at 224 px, T=4, trained directly (no distillation) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-55m-imagenet-t4 seed=0,1,2
reproduce-meta-spikeformer-55m-imagenet-t4-distilled: install ## Meta-SpikeFormer 55M, T=4: the released 50-epoch fine-tune of a T=1 checkpoint with CAFormer-B36 distillation; INIT=<T=1 model.pt> (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=meta-spikeformer-55m-imagenet-t4-distilled trainer.init_from=$(INIT) seed=0,1,2
reproduce-qkformer-cifar10: install ## QKFormer HST-4-384 on CIFAR-10, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=qkformer-cifar10 seed=0,1,2
reproduce-qkformer-cifar100: install ## QKFormer HST-4-384 on CIFAR-100, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=qkformer-cifar100 seed=0,1,2
reproduce-qkformer-cifar10dvs: install ## QKFormer HST-2-256 (mlp ratio 1) on CIFAR10-DVS, T=16 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=qkformer-cifar10dvs seed=0,1,2
reproduce-qkformer-dvsgesture: install ## QKFormer HST-2-256 (mlp ratio 4, as released) on DVS128 Gesture, T=16 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=qkformer-dvsgesture seed=0,1,2
reproduce-qkformer-imagenet: install ## QKFormer HST-10-768 on ImageNet-1K at 224 px, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=qkformer-imagenet seed=0,1,2
reproduce-sdt-cifar10: install ## Spike-driven Transformer (SDT v1) 2-512 on CIFAR-10, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=sdt-cifar10 seed=0,1,2
reproduce-sdt-cifar100: install ## SDT v1 2-512 on CIFAR-100, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=sdt-cifar100 seed=0,1,2
reproduce-sdt-cifar10dvs: install ## SDT v1 2-256 on CIFAR10-DVS at 64x64, T=10 with TET and Erode pooling (the released run) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=sdt-cifar10dvs seed=0,1,2
reproduce-sdt-dvsgesture: install ## SDT v1 2-256 on DVS128 Gesture at 128x128, T=16, pooling 0111 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=sdt-dvsgesture seed=0,1,2
reproduce-sdt-imagenet: install ## Spike-driven Transformer 8-768 on ImageNet-1K, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=sdt-imagenet seed=0,1,2
reproduce-semm-cifar10: install ## Spikformer + SEMM (spiking experts mixture) 4-384 on CIFAR-10, T=4, STEP's recipe (AdamW 1e-3, batch 128, 400 epochs) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=semm-cifar10 seed=0,1,2
reproduce-semm-cifar100: install ## Spikformer + SEMM 4-384 on CIFAR-100, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=semm-cifar100 seed=0,1,2
reproduce-spikformer-cifar10: install ## Spikformer-4-384 on CIFAR-10, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-cifar10 seed=0,1,2
reproduce-spikformer-cifar100: install ## Spikformer-4-384 on CIFAR-100, T=4, the CIFAR-10 recipe (STEP section 5) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-cifar100 seed=0,1,2
reproduce-spikformer-cifar10dvs: install ## Spikformer-2-256 (16 heads) on CIFAR10-DVS, T=16 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-cifar10dvs seed=0,1,2
reproduce-spikformer-dvsgesture: install ## Spikformer-2-256 (16 heads) on DVS128 Gesture, T=16 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-dvsgesture seed=0,1,2
reproduce-spikformer-imagenet: install ## Spikformer-8-512 (the released config) on ImageNet-1K at 224 px, T=4 (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-imagenet seed=0,1,2
reproduce-spikformer-psmnist: install ## Spikformer-4-384 on psMNIST (read pixel by pixel), T=4, the CIFAR recipe without image augmentation (STEP section 4.1, sequential table) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-psmnist seed=0,1,2
reproduce-spikformer-scifar10: install ## Spikformer-4-384 on sCIFAR-10 (read pixel by pixel), T=4, the CIFAR recipe without image augmentation (STEP section 4.1, sequential table) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-scifar10 seed=0,1,2
reproduce-spikformer-smnist: install ## Spikformer-4-384 on sMNIST (read pixel by pixel), T=4, the CIFAR recipe without image augmentation (STEP section 4.1, sequential table) (needs the dataset under STEP_DATA and a GPU; seeds 0,1,2)
	$(VENV)/bin/step-train -m experiment=spikformer-smnist seed=0,1,2
