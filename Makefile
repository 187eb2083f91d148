# The front door. `make bench` and `make test` do all the set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Settings read from the environment or the command line (PYTHON, VENV_CACHE, XDG_CACHE_HOME, HOME) are raw text
# as well: `$(value ...)` takes them unexpanded, so `VENV_CACHE='$(shell ...)' make help` runs nothing; recipes
# read them from the environment ("$$VENV_DIR"). The toolkit's own names are not settings (override). Any variable
# given on the command line is made raw text first (make would expand it when it exports it to a recipe).
$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(eval override $(v) := $$(value $(v)))))
ifeq ($(origin PYTHON),undefined)
PYTHON     := $(shell command -v python3.11 || command -v python3)
else
override PYTHON := $(value PYTHON)
endif
override LOCK       := requirements.lock
override LOCK_HASH  := $(shell sha256sum requirements.lock | cut -c1-16)
# The environment is built once per lock file and reused (a fresh clone links .venv to it).
ifeq ($(origin VENV_CACHE),undefined)
override VENV_CACHE := $(if $(value XDG_CACHE_HOME),$(value XDG_CACHE_HOME),$(value HOME)/.cache)/mobile-deploy-toolkit
else
override VENV_CACHE := $(value VENV_CACHE)
endif
override VENV_DIR   := $(VENV_CACHE)/venv-$(LOCK_HASH)
override VENV       := .venv
override PY         := $(VENV)/bin/python

# export: make export TARGET=coreml MODEL=<name>[:key=value] RES=224 [PRECISION=fp16|int8] [CALIBRATION=dir]
#         [OPTIMIZE=1]
# why:    make why [MODELS=a,b] [FORMATS=onnx] [RES=128,512] [ITERS=100] [THREADS=1] [DEVICE=host]
# bench:  make bench [MODELS=a,b] [FORMATS=onnx,tflite] [RES=128,224] [ITERS=100] [ROUNDS=10] [WARMUP=10]
#                    [THREADS=1] [PRECISION=fp32,int8] [OPTIMIZE=both|on|off]
#                    [DEVICE=host] [PROFILES=my-devices.toml] [EXECUTOR=local|ray]
# A variable left unset is not passed at all: the defaults live in one place (models/defaults.py and the tools'
# own --help), not here.
TARGET     ?= all
# Every value a user can set is taken as raw text (make does not expand it either: `$(shell ...)` in a value stays
# text), reaches the recipes through the environment and is expanded by the shell inside double quotes
# ("$$MODEL"), never pasted into the recipe text: `make export MODEL='x; rm -rf ~'` is just a bad model name.
# (PYTEST_ARGS is split into words, with globbing off, and never evaluated.)
USER_VARS  := TARGET MODEL PRECISION CALIBRATION MODELS FORMATS ITERS ROUNDS WARMUP THREADS DEVICE PROFILES RES PYTEST_ARGS \
              ARCH OPTIMIZE EXECUTOR
$(foreach v,$(USER_VARS),$(eval override $(v) := $$(value $(v))))
export PYTHON VENV_CACHE VENV_DIR $(USER_VARS)

.PHONY: help setup export bench why report test test-fast lint models native arm-board clean
help:
	@echo "make bench    set up, export the default models and benchmark them on this machine, write the report"
	@echo "make test     set up, then run the whole test suite"
	@echo "make test-fast  the suite without real conversions or sweeps (the inner loop)"
	@echo "make export TARGET=<format|all> MODEL=<name>[:key=value] RES=<224|192x256> [PRECISION=fp16|int8]"
	@echo "             [CALIBRATION=<folder of JPEG/PNG>] (int8; default: seeded crops of scikit-image photographs)"
	@echo "             [OPTIMIZE=1] (fp32, fp16: the optimized artifact beside the plain one)"
	@echo "make why      why Mobile-Former slows down on small images: ablations, fixed cost, peak, feedback path"
	@echo "make report   re-render the latest report from results/results.sqlite"
	@echo "make models   the model table"
	@echo "make native   build the native ExecuTorch runner (et-bench; cmake and a C++ compiler; cached)"
	@echo "make native ARCH=aarch64  cross-compile it for an aarch64 board (g++-aarch64-linux-gnu; cached)"
	@echo "make arm-board  start an emulated aarch64 board (qemu-user, as root) and print its profiles file"
	@echo "make setup    only build .venv from $(LOCK) (cached by its hash in $$VENV_CACHE)"

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
	$(PY) -m export --format "$$TARGET" $${MODEL:+--model "$$MODEL"} $${RES:+--res "$$RES"} \
	  $${PRECISION:+--precision "$$PRECISION"} $${CALIBRATION:+--calibration "$$CALIBRATION"} \
	  $${OPTIMIZE:+--optimize "$$OPTIMIZE"}

bench: setup
	$(PY) -m bench run $${DEVICE:+--device "$$DEVICE"} $${PROFILES:+--profiles "$$PROFILES"} \
	  $${MODELS:+--models "$$MODELS"} $${FORMATS:+--formats "$$FORMATS"} $${RES:+--res "$$RES"} \
	  $${ITERS:+--iters "$$ITERS"} $${ROUNDS:+--rounds "$$ROUNDS"} $${WARMUP:+--warmup "$$WARMUP"} \
	  $${THREADS:+--threads "$$THREADS"} $${PRECISION:+--precision "$$PRECISION"} \
	  $${OPTIMIZE:+--optimize "$$OPTIMIZE"} $${EXECUTOR:+--executor "$$EXECUTOR"}

why: setup
	$(PY) -m bench why $${DEVICE:+--device "$$DEVICE"} $${PROFILES:+--profiles "$$PROFILES"} \
	  $${MODELS:+--models "$$MODELS"} $${FORMATS:+--formats "$$FORMATS"} $${RES:+--res "$$RES"} \
	  $${ITERS:+--iters "$$ITERS"} $${ROUNDS:+--rounds "$$ROUNDS"} $${WARMUP:+--warmup "$$WARMUP"} \
	  $${THREADS:+--threads "$$THREADS"}

native: setup
	$(PY) -m devices.native build $${ARCH:+--arch "$$ARCH"}

arm-board: setup
	$(PY) -m devices emulate arm64

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
