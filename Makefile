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

# A fresh clone reproduces main's committed outputs byte for byte, so DVC skips `package`; the
# BentoML store lives outside the repository, though, and may not hold that model yet.

run: setup ## Set up, then `dvc repro` to an accepted, packaged model (in this machine's BentoML store)
	dvc repro
	@conveyor packaged in-store 2>/dev/null || { echo "run: the packaged model is not in this machine's BentoML store: packaging it"; dvc repro --force --single-item package; }

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
	$(UV) export --frozen --no-default-groups --no-hashes --no-emit-project --no-header --quiet -o requirements/serve.txt
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
BENTO_TAG = $(shell $(BIN)/conveyor packaged bento-tag)
# The digest the registry returned for the pushed image: what the overlays pin. `make image`
# writes it; `set-image` reads it (or $DIGEST, which the deploy workflow passes between jobs).
IMAGE_DIGEST_FILE ?= build/image-digest
DIGEST ?= $(shell cat $(IMAGE_DIGEST_FILE) 2>/dev/null)

.PHONY: ci-repro push-data report image set-image lint-workflows stage-timings

# Each stage process adds its wall time here when the variable is set (the workflows upload it as
# the `stage-timings` artifact, which the model monitor reads); untracked: a time is no output.
STAGE_TIMINGS ?= stage-timings.json

ci-repro: setup ## CI: add the remote $DVC_REMOTE_URL (if set, pulls verified) to .dvc/config.local, `dvc repro --pull`, re-run the gate
ifneq ($(DVC_REMOTE_URL),)
	dvc remote add --local --default --force ci $(DVC_REMOTE_URL)
	@# DVC trusts an S3 object's name by default: hash what is pulled, so an object replaced in
	@# the bucket fails the pull instead of becoming this run's model.
	dvc remote modify --local ci verify true
endif
	dvc repro --pull
	@# The champion is the model on gate.baseline_rev now, not when this branch last ran the gate;
	@# then whatever follows the gate catches up with its new verdict.
	dvc repro --force --single-item gate
	dvc repro

push-data: setup ## `dvc push` data and models to the DVC remote (says so and skips when none is set)
	@if [ -n "$$(dvc remote list)" ]; then dvc push --run-cache; else echo "push-data: no DVC remote configured, nothing pushed"; fi

stage-timings: setup ## CI: the stage times in $(STAGE_TIMINGS) as Markdown, into the job summary when there is one
	conveyor timings --file $(STAGE_TIMINGS) | tee -a "$${GITHUB_STEP_SUMMARY:-/dev/null}"

report: setup ## Write report/report.md and its PNG plots: gate verdict, diffs against the baseline
	conveyor report --out report/report.md --gate reports/gate.json --champion reports/champion.json --validation reports/validation.json --tuning reports/tuning.json

image: ## Containerize the bento from `make bento` as $(IMAGE):$(TAG), push it, keep the pushed digest (needs Docker)
	@test -f reports/package.json || { echo "image: reports/package.json is missing: run \`make bento\` first" >&2; exit 1; }
	$(BENTOML) containerize $(BENTO_TAG) --image-tag $(IMAGE):$(TAG)
	@mkdir -p $(dir $(IMAGE_DIGEST_FILE))
	set -o pipefail; $(DOCKER) push $(IMAGE):$(TAG) | tee $(IMAGE_DIGEST_FILE).log
	@# docker push ends with "<tag>: digest: sha256:<hex> size: <bytes>"; in a workflow the digest
	@# also becomes the step's output `digest`.
	@digest=$$(sed -nE 's/^.*: digest: (sha256:[0-9a-f]{64}) size: [0-9]+$$/\1/p' $(IMAGE_DIGEST_FILE).log | tail -n 1); \
	test -n "$$digest" || { echo "image: docker push printed no digest for $(IMAGE):$(TAG)" >&2; exit 1; }; \
	echo "$$digest" > $(IMAGE_DIGEST_FILE); \
	if [ -n "$$GITHUB_OUTPUT" ]; then echo "digest=$$digest" >> "$$GITHUB_OUTPUT"; fi; \
	echo "image: pushed $(IMAGE):$(TAG)@$$digest"

set-image: setup ## Point $(OVERLAY) at $(IMAGE):$(TAG)@$(DIGEST), the digest `make image` kept (`conveyor deploy set-image`)
	conveyor deploy set-image --overlay $(OVERLAY) --image $(IMAGE) --tag $(TAG) --digest '$(DIGEST)'

lint-workflows: setup ## zizmor (offline) and the GitHub-workflow JSON schema on .github/workflows
	zizmor --offline .github/workflows
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

# --- Monitoring (the model-monitor workflow runs these; see README, "Monitoring") ---------------
MONITOR_OUT ?= monitor-report
PIPELINE_WORKFLOW ?= deploy.yml

.PHONY: monitor monitor-alert retrain

monitor: setup ## Judge the service's logs at $MONITOR_LOGS_URL against the packaged model, into monitor-report/
	@test -n "$$MONITOR_LOGS_URL" || { echo "monitor: set MONITOR_LOGS_URL to the service's log folder or s3:// URL" >&2; exit 1; }
	@# In GitHub Actions, the last main pipeline's stage timings too (monitor.max_pipeline_seconds).
ifneq ($(GITHUB_ACTIONS),)
	conveyor alert timings --workflow $(PIPELINE_WORKFLOW) --out $(MONITOR_OUT)/stage-timings.json
endif
	conveyor monitor --logs "$$MONITOR_LOGS_URL" --out $(MONITOR_OUT) \
		$$(test -f $(MONITOR_OUT)/stage-timings.json && echo --timings $(MONITOR_OUT)/stage-timings.json)

monitor-alert: setup ## Open, update or close the model-monitor issue from monitor-report/ (and dispatch retrain.yml if asked)
	conveyor alert sync --report $(MONITOR_OUT)

retrain: ci-repro ## `make ci-repro`, then read data.source again (DVC cannot see new rows behind a URL or a query) and reproduce
	dvc repro --force --single-item ingest
	dvc repro
