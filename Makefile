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
export UV_PYTHON_DOWNLOADS := never

.PHONY: help setup run repro test test-fast lint format bench serve bento clean sweep

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	@# A venv of its own: `python -m venv` builds on the base interpreter even when .venv is active.
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
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

bench: setup ## Benchmarks (pipeline, serving) into benchmarks/results/RESULTS.md; needs wrk (installed if root)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "bench: the serving section needs wrk: apt-get install wrk" >&2; exit 1; }
	python benchmarks/run.py

# A sweep explores: each point runs the pipeline up to $(SWEEP_TARGET) as a DVC experiment, so a
# point the gate would reject still shows its metrics (and bentoml will not build inside DVC's
# hidden experiment workspaces). Apply the point you want (`dvc exp apply`), then `make run`.
SWEEP_TARGET ?= evaluate
SWEEP_JOBS ?= 1
sweep: setup ## Queue a DVC experiment per point, run them, print `dvc exp show --md` (`make sweep ARGS="-S model.params.C=0.01,0.1,1"`)
	@test -n "$(ARGS)" || { echo 'sweep: name the points, e.g. make sweep ARGS="-S model.params.C=0.01,0.1,1"' >&2; exit 1; }
	dvc queue remove --failed
	dvc exp run --queue $(SWEEP_TARGET) $(ARGS)
	dvc queue start --jobs $(SWEEP_JOBS)
	@while dvc queue status | grep -Eq ' (Queued|Running) *$$'; do sleep 5; done
	dvc exp show --md --only-changed
	@if dvc queue status | grep -Eq ' Failed *$$'; then dvc queue status; echo "sweep: see \`dvc queue logs <name>\`" >&2; exit 1; fi

# The model this checkout packaged (reports/package.json), not merely the newest in the store.
serve: run ## `make run`, then `bentoml serve` here on port 3000 (docs at /, e.g. `make serve SERVE_ARGS="--port 8000"`)
	bentoml serve $(SERVE_ARGS)

bento: setup ## Re-export requirements/serve.txt from uv.lock, then `dvc repro` (its package stage builds the bento)
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --no-header --quiet -o requirements/serve.txt
	dvc repro

clean: ## Remove the environments and caches (not data, not the DVC cache)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

# --- CI/CD (the GitHub workflows run these; see README, "CI/CD") ------------------------------
# The image is ghcr.io/<owner>/<repo> in lowercase (registries reject uppercase; GitHub owners may
# have it), tagged with the commit. Both can be overridden: `make image IMAGE=… TAG=…`.
IMAGE ?= ghcr.io/$(shell printf '%s' '$(or $(GITHUB_REPOSITORY),local/conveyor)' | tr '[:upper:]' '[:lower:]')
TAG ?= $(shell git rev-parse HEAD)
OVERLAY ?= deploy/overlays/staging
BENTOML ?= bentoml
DOCKER ?= docker
# Read when `image` runs (recursive `=`), from what the package stage wrote.
BENTO_TAG = $(shell $(BIN)/python -c 'import json; print(json.load(open("reports/package.json"))["bento_tag"])')

.PHONY: ci-repro push-data report image set-image lint-workflows

ci-repro: setup ## CI: add the remote $DVC_REMOTE_URL (if set) to .dvc/config.local, `dvc repro --pull`, re-run the gate
ifneq ($(DVC_REMOTE_URL),)
	dvc remote add --local --default --force ci $(DVC_REMOTE_URL)
endif
	dvc repro --pull
	@# The champion is the model on gate.baseline_rev now, not when this branch last ran the gate;
	@# then whatever follows the gate catches up with its new verdict.
	dvc repro --force --single-item gate
	dvc repro

push-data: setup ## `dvc push` data and models to the DVC remote (says so and skips when none is set)
	@if [ -n "$$(dvc remote list)" ]; then dvc push --run-cache; else echo "push-data: no DVC remote configured, nothing pushed"; fi

report: setup ## Write report/report.md and its PNG plots: gate verdict, diffs against the baseline
	conveyor report --out report/report.md --gate reports/gate.json --validation reports/validation.json --tuning reports/tuning.json

image: ## Containerize the bento from `make bento` as $(IMAGE):$(TAG) and push it (needs Docker)
	@test -f reports/package.json || { echo "image: reports/package.json is missing: run \`make bento\` first" >&2; exit 1; }
	$(BENTOML) containerize $(BENTO_TAG) --image-tag $(IMAGE):$(TAG)
	$(DOCKER) push $(IMAGE):$(TAG)

set-image: setup ## Point $(OVERLAY) at $(IMAGE):$(TAG) (`conveyor deploy set-image`)
	conveyor deploy set-image --overlay $(OVERLAY) --image $(IMAGE) --tag $(TAG)

lint-workflows: setup ## zizmor (offline) and the GitHub-workflow JSON schema on .github/workflows
	zizmor --offline .github/workflows
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
