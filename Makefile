# The front door. `make bench` and `make test` do all the set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON     ?= $(shell command -v python3.11 || command -v python3)
LOCK       := requirements.lock
LOCK_HASH  := $(shell sha256sum $(LOCK) | cut -c1-16)
# The environment is built once per lock file and reused (a fresh clone links .venv to it).
VENV_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mobile-deploy-toolkit
VENV_DIR   := $(VENV_CACHE)/venv-$(LOCK_HASH)
VENV       := .venv
PY         := $(VENV)/bin/python

# export: make export TARGET=coreml MODEL=mobileformer_294m RES=224
TARGET     ?= all
MODEL      ?= mobileformer_294m
PRECISION  ?= fp32
# bench: comma-separated lists
MODELS     ?= mobileformer_294m,mobilenetv3_large_100,mobilevit_xs
FORMATS    ?= onnx,tflite,executorch,coreml
BENCH_RES  := 128,160,192,224,256,384,512
ITERS      ?= 100
WARMUP     ?= 10
THREADS    ?= 1
DEVICE     ?= host
# Every value a user can set is taken as raw text (make does not expand it either: `$(shell ...)` in a value stays
# text), reaches the recipes through the environment and is expanded by the shell inside double quotes
# ("$$MODEL"), never pasted into the recipe text: `make export MODEL='x; rm -rf ~'` is just a bad model name.
# (PYTEST_ARGS is split into words, with globbing off, and never evaluated.)
USER_VARS  := TARGET MODEL PRECISION MODELS FORMATS BENCH_RES ITERS WARMUP THREADS DEVICE RES PYTEST_ARGS
$(foreach v,$(USER_VARS),$(eval override $(v) := $$(value $(v))))
export PYTHON VENV_CACHE VENV_DIR TARGET MODEL PRECISION MODELS FORMATS BENCH_RES ITERS WARMUP THREADS DEVICE RES \
  PYTEST_ARGS

.PHONY: help setup export bench report test test-fast lint models clean
help:
	@echo "make bench    set up, export the default models and benchmark them on this machine, write the report"
	@echo "make test     set up, then run the whole test suite"
	@echo "make test-fast  the suite without real conversions or sweeps (the inner loop)"
	@echo "make export TARGET=<onnx|coreml|tflite|executorch|all> MODEL=<name> RES=<224|192x256> [PRECISION=fp16]"
	@echo "make report   re-render the latest report from results/results.sqlite"
	@echo "make models   the model table"
	@echo "make setup    only build .venv from $(LOCK) (cached by its hash in $(VENV_CACHE))"

setup:
	@if [ ! -f "$$VENV_DIR/.complete" ]; then \
	  echo "setup: building $$VENV_DIR from $(LOCK) (once per lock file: about 5 minutes, 9 GB)"; \
	  rm -rf -- "$$VENV_DIR" && mkdir -p -- "$$VENV_CACHE" && \
	  "$$PYTHON" -m venv "$$VENV_DIR" && \
	  "$$VENV_DIR/bin/pip" install --no-input --progress-bar off -r $(LOCK) && \
	  "$$VENV_DIR/bin/pip" check && \
	  touch "$$VENV_DIR/.complete" || { echo "setup: failed; see the pip output above" >&2; exit 1; }; \
	fi
	@if [ "$$(readlink $(VENV) 2>/dev/null)" != "$$VENV_DIR" ]; then rm -rf $(VENV) && ln -s "$$VENV_DIR" $(VENV); fi

models: setup
	$(PY) -m models list

export: setup
	$(PY) -m export --model "$$MODEL" --format "$$TARGET" --res "$${RES:-224}" --precision "$$PRECISION"

bench: setup
	$(PY) -m bench run --device "$$DEVICE" --models "$$MODELS" --formats "$$FORMATS" --res "$${RES:-$$BENCH_RES}" \
	  --iters "$$ITERS" --warmup "$$WARMUP" --threads "$$THREADS"

report: setup
	$(PY) -m bench report

test: setup
	set -f; $(PY) -m pytest $$PYTEST_ARGS

test-fast: setup
	set -f; $(PY) -m pytest -m "not export and not bench" $$PYTEST_ARGS

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf artifacts results reports .pytest_cache
