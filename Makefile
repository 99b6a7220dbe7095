# bratskit: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extras the tests need. torch is installed first, pinned to the CPU build, so that the
# train extra's "torch>=2.3" is already met and pip does not pull several GB of CUDA
# packages; on a GPU machine with its own CUDA torch, run `make install TORCH_CPU=`.
EXTRAS ?= train,eval,dev,cpu,export
TORCH_CPU ?= torch==2.13.0
PYTEST_ARGS ?=
comma := ,

.PHONY: install test lint format demo clean help

help:
	@echo "make demo   run the pipeline end to end on synthetic and real cases"
	@echo "make test   create the environment, lint, run every test"
	@echo "make lint   ruff check and format check"

$(BIN)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_CPU),$(BIN)/python -m pip install -q "$(TORCH_CPU)")
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/.installed-$(subst $(comma),-,$(EXTRAS))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest exits 5 when it collects nothing: that fails the target, as it should.
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install
	BIN=$(BIN) bash scripts/demo.sh

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache *.egg-info
