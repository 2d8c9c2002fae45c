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

.PHONY: help setup system-tools run repro check-repro test test-fast lint format docs bench serve bento clean sweep

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	@# A venv of its own: `python -m venv` builds on the base interpreter even when .venv is active.
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced system-tools ## Create .venv from uv.lock (installs uv itself into .tools/ first), then system-tools

# Tools tests run that no PyPI package ships, as command:package (Debian/Ubuntu names; GitHub's
# runners are Ubuntu). PostgreSQL's server binaries live in /usr/lib/postgresql/<version>/bin;
# Chromium loads the service's docs page headless.
SYSTEM_TOOLS := promtool:prometheus pg_ctl:postgresql chromium:chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

system-tools: ## Install the missing system tools tests need (promtool, PostgreSQL, Chromium) with apt-get, or say how
	@missing=; for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/$${pair%%:*}" >/dev/null \
			|| missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && { [ -z "$(SUDO)" ] || $(SUDO) true 2>/dev/null; }; then \
		echo "system-tools: apt-get install$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "system-tools: install$$missing with your package manager (no apt-get as root or passwordless sudo here): the tests that need them fail until then" >&2; \
	fi

# A fresh clone reproduces main's committed outputs byte for byte, so DVC skips `package`; the
# BentoML store lives outside the repository, though, and may not hold that model yet.

run: setup ## Set up, then `dvc repro` to an accepted, packaged model (in this machine's BentoML store)
	dvc repro
	@conveyor packaged in-store 2>/dev/null || { echo "run: the packaged model is not in this machine's BentoML store: packaging it"; dvc repro --force --single-item package; }

repro: run

check-repro: setup ## After `make run`: is the committed dvc.lock current, and are results the committed ones (within tolerance)?
	conveyor check-repro

# One test process per core (pytest-xdist), each test file on one of them: a file's module
# fixtures (a served bento, a reproduced copy) start once; `pytest` alone runs in one process.
PYTEST_PARALLEL := -n auto --dist loadfile

test: setup ## Run the whole test suite, slow integration tests included, one process per core
	pytest $(PYTEST_PARALLEL)

test-fast: setup ## Run the unit tests only (no `slow` marker), one process per core
	pytest $(PYTEST_PARALLEL) -m "not slow"

lint: setup ## ruff (lint + format check), mypy, and the docs site built with --strict (a broken link fails)
	ruff check .
	ruff format --check .
	mypy
	$(MKDOCS) build --strict --site-dir $(DOCS_SITE)

format: setup ## Format and autofix with ruff
	ruff format .
	ruff check --fix .

# The site (mkdocs.yml) builds offline into a gitignored folder. Material for MkDocs 9.7+ prints an
# end-of-life banner on every build; it is news, not a problem with these docs.
DOCS_SITE := build/site
MKDOCS := NO_MKDOCS_2_WARNING=1 mkdocs

docs: setup ## Regenerate docs/layout.md from the package tree, then build the site into build/site/ (open index.html)
	python docs/gen_layout.py
	$(MKDOCS) build --strict --site-dir $(DOCS_SITE)

bench: setup ## Benchmarks (pipeline, serving, tuning, scale, feature store, bakeoff) into benchmarks/results/RESULTS.md; needs wrk (installed if root)
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
	rm -rf $(VENV) $(TOOLS) $(FEAST_VENV) .pytest_cache .mypy_cache .ruff_cache

# --- Feature store (the option `feature_store` in params.yaml; see docs/feature-store.md) -------
# Feast needs pandas<3: it gets its own environment from feature_repo/uv.lock, and the project only
# ever runs it as a process. FEAST_USAGE=False: nothing is reported anywhere, everything is local.
FEAST_REPO := feature_repo
FEAST_VENV := $(FEAST_REPO)/.venv
FEAST := cd $(FEAST_REPO) && FEAST_USAGE=False .venv/bin/feast
# From before the example's first event to now: `feast materialize-incremental` on a new store
# would start at now minus each view's TTL, and the example's rows are older than that.
MATERIALIZE_START ?= 2000-01-01T00:00:00
FEATURE_SERVER_PORT ?= 6566
# `on` when params.yaml sets feature_store.enabled (read by the venv's Python; `off` without one):
# CI's pipeline then needs the Feast environment (ingest runs in it; `make retrain` rebuilds the
# training set from the store), and the deploy workflow loads the online store (`online-store`).
FEATURE_STORE = $(shell $(BIN)/python -c 'import yaml; p = yaml.safe_load(open("params.yaml")) or {}; print("on" if (p.get("feature_store") or {}).get("enabled") else "off")' 2>/dev/null || echo off)
ON_FEATURE_STORE = $(if $(filter on,$(FEATURE_STORE)),$(1))

.PHONY: feast-env feast-apply materialize online-store feature-server feature-store

$(FEAST_VENV)/.synced: $(FEAST_REPO)/pyproject.toml $(FEAST_REPO)/uv.lock | $(UV)
	env -u UV_PROJECT_ENVIRONMENT $(UV) sync --frozen --project $(FEAST_REPO)
	@touch $@

feast-env: $(FEAST_VENV)/.synced ## Create feature_repo/.venv (Feast, pandas 2) from feature_repo/uv.lock

feast-apply: feast-env ## `feast apply` the example repository's definitions (registry in feature_repo/store/)
	$(FEAST) apply

materialize: feast-env ## `feast apply`, then load the online store (SQLite) with each entity's newest feature values
	@# One process for both: importing Feast takes seconds.
	cd $(FEAST_REPO) && FEAST_USAGE=False .venv/bin/python materialize.py --repo . --apply --start $(MATERIALIZE_START)

online-store: $(call ON_FEATURE_STORE,materialize) ## With feature_store.enabled, `make materialize` (the deploy workflow runs it); else nothing
	@$(if $(filter on,$(FEATURE_STORE)),:,echo "online-store: feature_store.enabled is false in params.yaml: no online store to load")

feature-server: materialize ## `feast serve` on 127.0.0.1:$(FEATURE_SERVER_PORT), the online features the service reads
	$(FEAST) serve --host 127.0.0.1 --port $(FEATURE_SERVER_PORT) --no-access-log

# The whole option end to end, without touching this checkout's params.yaml or dvc.lock: the
# pipeline runs in a copy of the tracked files (build/feature-store/) with feature_store.enabled,
# to a packaged model (in $BENTOML_HOME); then `feast serve` and `bentoml serve` of that model
# (fed by it through CONVEYOR_FEAST_URL) answer one record that gives an entity key alone.
FEATURE_STORE_DEMO ?= build/feature-store
DEMO_RECORD ?= {"penguin_id": 1}
DEMO_PARAMS := import sys, yaml; p = yaml.safe_load(open("params.yaml")); p["feature_store"].update(enabled=True, python=sys.argv[1]); yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
FREE_PORT := import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
WAIT_FOR = for _ in $$(seq 1 480); do curl -sf $(1) >/dev/null && break; sleep 0.5; done; curl -sf $(1) >/dev/null

feature-store: setup materialize ## The feature store end to end: pipeline from Feast (in a copy), feast serve, the service fed by it, one prediction from an entity key
	rm -rf $(FEATURE_STORE_DEMO) && mkdir -p $(FEATURE_STORE_DEMO)
	git ls-files -z | xargs -0 cp --parents -t $(FEATURE_STORE_DEMO)
	cd $(FEATURE_STORE_DEMO) && python -c '$(DEMO_PARAMS)' $(abspath $(FEAST_VENV))/bin/python \
		&& git init -q -b main && git add -A \
		&& git -c user.name=conveyor -c user.email=conveyor@localhost commit -qm "feature store demo" \
		&& dvc repro && cat reports/ingest.json
	@feast=$$(python -c '$(FREE_PORT)'); port=$$(python -c '$(FREE_PORT)'); \
	FEAST_USAGE=False setsid $(FEAST_VENV)/bin/feast --chdir $(FEAST_REPO) serve --host 127.0.0.1 --port $$feast --no-access-log \
		>$(FEATURE_STORE_DEMO)/feast-serve.log 2>&1 & \
	feast_pid=$$!; \
	(cd $(FEATURE_STORE_DEMO) && exec env CONVEYOR_FEAST_URL=http://127.0.0.1:$$feast setsid bentoml serve --host 127.0.0.1 --port $$port) \
		>$(FEATURE_STORE_DEMO)/bentoml-serve.log 2>&1 & \
	serve_pid=$$!; trap 'kill -- -'$$feast_pid' -'$$serve_pid' 2>/dev/null; wait 2>/dev/null' EXIT; \
	$(call WAIT_FOR,http://127.0.0.1:$$feast/health) || { echo "feature-store: feast serve did not start; see $(FEATURE_STORE_DEMO)/feast-serve.log" >&2; exit 1; }; \
	$(call WAIT_FOR,http://127.0.0.1:$$port/readyz) || { echo "feature-store: bentoml serve did not start; see $(FEATURE_STORE_DEMO)/bentoml-serve.log" >&2; exit 1; }; \
	echo "feature-store: feast serve on 127.0.0.1:$$feast, the model $$(conveyor packaged model-tag --report $(FEATURE_STORE_DEMO)/reports/package.json) on 127.0.0.1:$$port;"; \
	echo 'POST /predict {"records": [$(DEMO_RECORD)]}, its features fetched from feast serve:'; \
	curl -sS --fail-with-body http://127.0.0.1:$$port/predict -H 'content-type: application/json' -d '{"records": [$(DEMO_RECORD)]}'; echo

# --- CI/CD (the GitHub workflows run these; see docs/ci-cd.md) -------------------------------
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

ci-repro: setup $(call ON_FEATURE_STORE,feast-env) ## CI: add the remote $DVC_REMOTE_URL (if set, pulls verified) to .dvc/config.local, `dvc repro --pull`, re-run the gate
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

# --- Monitoring (the model-monitor workflow runs these; see docs/monitoring.md) -----------------
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

retrain: ci-repro ## `make ci-repro`, then ingest again (data.source, or the feature store when enabled: DVC cannot see new rows behind a URL, a query or a store) and reproduce
	dvc repro --force --single-item ingest
	dvc repro
