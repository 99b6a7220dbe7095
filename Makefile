# bratskit: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extras the tests need. torch is installed first, pinned to the CPU build, so that the
# train extra's "torch>=2.3" is already met and pip does not pull several GB of CUDA
# packages; on a GPU machine with its own CUDA torch, run `make install TORCH_CPU=`.
EXTRAS ?= train,eval,dev,cpu,export,import
TORCH_CPU ?= torch==2.13.0
PYTEST_ARGS ?=
comma := ,

# The submission image (README "Submitting to BraTS").
BUNDLE ?=
IMAGE ?= bratskit:latest
BACKEND ?= onnx
BASE_IMAGE ?=
OFFLINE_BASE ?= bratskit/base:bookworm
SAVE ?= $(subst /,_,$(subst :,-,$(IMAGE))).tar.gz
# Python of the image's base (3.11 in both the python:3.11 default and Debian bookworm), and
# the manylinux tags its glibc (2.36) runs: pip does not infer older tags from newer ones.
IMAGE_PYTHON ?= 3.11
IMAGE_PLATFORMS ?= $(foreach v,2_5 2_12 2_17 2_27 2_28 2_34,manylinux_$(v)_x86_64) \
	manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64 linux_x86_64

.PHONY: install test lint format demo demo-docker bench-task clean help build run rehearse base-image wheelhouse save

help:
	@echo "make demo        synth, train 5 folds, export, tune, predict, evaluate, pictures (~15 min)"
	@echo "make demo-docker the same, predicting through the built image"
	@echo "make bench-task TASK=gli-post  one task end to end, held-out Dice per region (~15 min)"
	@echo "make test        create the environment, lint, run every test"
	@echo "make lint        ruff check and format check"
	@echo "make build BUNDLE=dir [IMAGE=name:tag] [BASE_IMAGE=image] [BACKEND=onnx]"
	@echo "make run IN=dir OUT=dir [IMAGE=name:tag] [ARGS='--labels 2023']"
	@echo "make rehearse IN=dir [IMAGE=name:tag] [RULES=2026] [TASK=GLI] [ARGS='--json']  the organisers' run and checks"
	@echo "make base-image  bratskit/base:bookworm without a registry (debootstrap)"
	@echo "make wheelhouse  the image's Python packages, for offline builds"
	@echo "make save        the image as a tarball for docker load"

$(BIN)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_CPU),$(BIN)/python -m pip install -q "$(TORCH_CPU)")
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(if $(findstring import,$(EXTRAS)),$(BIN)/python -m pip install -q --no-deps -r requirements/import-nodeps.txt)
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

# The same, predicting through the built image (needs Docker; offline: BASE_IMAGE=bratskit/base:bookworm
# after make base-image and make wheelhouse).
demo-docker: install
	BIN=$(BIN) DEMO_PREDICT=docker IMAGE=bratskit:demo BASE_IMAGE="$(BASE_IMAGE)" bash scripts/demo.sh

# One BraTS task end to end on synthetic cases (issue 14): TASK=gli-post|ped|met|men-rt|...
TASK_BENCH ?= gli-post
bench-task: install
	BIN=$(BIN) TASK=$(if $(TASK),$(TASK),$(TASK_BENCH)) bash scripts/bench_task.sh

build:
	BUNDLE="$(BUNDLE)" IMAGE="$(IMAGE)" BACKEND="$(BACKEND)" BASE_IMAGE="$(BASE_IMAGE)" \
		bash docker/build.sh

run:
	IN="$(IN)" OUT="$(OUT)" IMAGE="$(IMAGE)" ARGS="$(ARGS)" bash docker/run.sh

# The organisers' run of IMAGE on IN, and their checks of what it wrote (exit 0: would pass).
RULES ?= 2026
TASK ?=
rehearse: install
	@test -n "$(IN)" || { echo "usage: make rehearse IN=dir [IMAGE=name:tag] [RULES=2026] [TASK=GLI] [ARGS='--json']" >&2; exit 2; }
	$(BIN)/bratskit rehearse $(IMAGE) --input "$(IN)" --rules $(RULES) $(if $(TASK),--task $(TASK)) $(ARGS)

base-image:
	bash docker/base-image.sh $(OFFLINE_BASE)

# Wheels for the image's platform and Python, whatever the host's: `make build` then
# installs from them with --network none.
wheelhouse:
	$(PYTHON) -m pip download -q --dest wheelhouse/$(BACKEND) --only-binary=:all: \
		$(addprefix --platform ,$(IMAGE_PLATFORMS)) --python-version $(IMAGE_PYTHON) \
		--implementation cp -r docker/requirements-$(BACKEND).txt
	@echo "wheelhouse/$(BACKEND): $$(ls wheelhouse/$(BACKEND) | wc -l) wheels, $$(du -sh wheelhouse/$(BACKEND) | cut -f1)"

save:
	docker save $(IMAGE) | gzip -1 > $(SAVE)
	@echo "wrote $(SAVE) ($$(du -h $(SAVE) | cut -f1)): docker load -i $(SAVE)"

clean:
	rm -rf $(VENV) demo build .pytest_cache .ruff_cache *.egg-info
