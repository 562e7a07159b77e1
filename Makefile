# Thin wrappers over the CLI and pytest. `make book` and `make test` install into .venv first if needed.
# The reference CPU book: Python 3.11 and the exact versions of constraints/cpu-reference.txt (what the
# committed results were made with). `make gpu` instead uses a Python that already has a CUDA torch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
CONSTRAINTS := constraints/cpu-reference.txt
# On a GPU machine: a python with its own CUDA torch and this package importable (`pip install -e .`
# beside that torch; README.md, "On a GPU"), never the CPU-pinned .venv. GPU_CHAPTERS picks chapters.
GPU_PYTHON ?= python3
GPU_CHAPTERS ?= all
GPU_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install book smoke seeds gpu test unit nbval bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"the reference book needs Python 3.11, found {sys.version.split()[0]}: make PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e '.[book,test,dev]'
	touch $(INSTALLED)

book: install  ## run the whole book on the default profile into results/default/
	$(BIN)/vlbridge run all --profile default

smoke: install  ## the whole book in seconds, into results/smoke/
	$(BIN)/vlbridge run all --profile smoke

seeds: install  ## chapters 3-5 on the default profile with seeds 0, 1, 2: results/seeds/summary.md (~30 min)
	$(BIN)/vlbridge seeds --profile default

gpu:  ## the whole book on the gpu profile into results/gpu/, with GPU_PYTHON (no .venv)
	$(GPU_PYTHON) -c 'import torch; assert torch.cuda.is_available(), f"make gpu needs a CUDA torch, found torch {torch.__version__} without a GPU"'
	$(GPU_PYTHON) -m vlbridge run $(GPU_CHAPTERS) --profile gpu $(GPU_ARGS)

test: install  ## unit tests, then nbval on the committed smoke and default results
	$(BIN)/python -m pytest tests results/smoke results/default $(NBVAL)

unit: install
	$(BIN)/python -m pytest tests -m "not browser"

nbval: install
	$(BIN)/python -m pytest results/smoke results/default $(NBVAL)

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) results/.staging-* results/.failed-*
