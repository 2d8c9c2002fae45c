# Conveyor's commands. `make help` lists them; each target's `## ` comment is its help line.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(abspath $(VENV))/bin

# dvc runs each stage's `cmd` through the shell: the environment's tools must come first on PATH.
export PATH := $(BIN):$(PATH)
# Bytecode compiled once at install: each stage is a fresh process, and some environments set
# PYTHONDONTWRITEBYTECODE, which would make every process recompile scikit-learn (≈4 s).
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: help setup run repro test test-fast lint format bench serve bento clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS) uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	PYTHONPATH=$(TOOLS) $(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced ## Create .venv from uv.lock (installs uv itself into .tools/ first)

run: setup ## Set up, then `dvc repro` to an accepted, packaged model
	dvc repro

repro: run

test: setup ## Run the whole test suite, slow integration tests included
	pytest

test-fast: setup ## Run the unit tests only (no `slow` marker)
	pytest -m "not slow"

lint: setup ## ruff (lint + format check) and mypy
	ruff check .
	ruff format --check .
	mypy

format: setup ## Format and autofix with ruff
	ruff format .
	ruff check --fix .

bench: setup ## Benchmarks: pipeline and serving timings, written to benchmarks/results/
	python benchmarks/run.py

clean: ## Remove the environments and caches (not data, not the DVC cache)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
