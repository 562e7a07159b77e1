# Thin wrappers over the CLI and pytest. `make book` and `make test` install into .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install book smoke test unit nbval bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"vlbridge needs Python 3.11, found {sys.version.split()[0]}: make PYTHON=/path/to/python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[book,test,dev]'
	touch $(INSTALLED)

book: install  ## run the whole book on the default profile into results/default/
	$(BIN)/vlbridge run all --profile default

smoke: install  ## the whole book in seconds, into results/smoke/
	$(BIN)/vlbridge run all --profile smoke

test: install  ## unit tests, then nbval on the committed smoke and default results
	$(BIN)/python -m pytest tests results/smoke results/default $(NBVAL)

unit: install
	$(BIN)/python -m pytest tests

nbval: install
	$(BIN)/python -m pytest results/smoke results/default $(NBVAL)

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) results/.staging-* results/.failed-*
