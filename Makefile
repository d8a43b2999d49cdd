# `make demo` and `make test` work on a fresh machine that has only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export WANDB_SILENT ?= true

.PHONY: demo test venv lint bench clean

venv: $(STAMP)

# Re-install whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/img2img demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check img2img tests tools datasets

bench: $(STAMP)
	$(BIN)/python tools/bench.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
