# The two commands: `make demo` (set up, then run the whole loop on the embedded default) and
# `make test` (set up, then run the tests). Both create .venv first; nothing is downloaded at
# run time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch pinned: the CPU build from local disk here, PyPI's CUDA build of the same release elsewhere.
TORCH_SPEC ?= torch==2.13.0
# Constraints reach source builds too (deepspeed), so nothing pulls another torch.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export DS_BUILD_OPS := 0
export RAY_AUTH_MODE := disabled
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
DEMO_OUT ?= lte-demo
PYTEST_ARGS ?=

.PHONY: venv demo test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[test]"
	touch $@

demo: venv
	$(VENV)/bin/lte demo --out $(DEMO_OUT)

test: venv
	$(VENV)/bin/ruff check lte tests tools
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check lte tests tools

clean:
	rm -rf $(VENV) $(DEMO_OUT)
