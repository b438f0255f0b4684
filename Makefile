# The README's commands. `make run` and `make test` create the virtualenv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export POWERTOOLS_METRICS_NAMESPACE ?= buildlogs
export POWERTOOLS_SERVICE_NAME ?= buildlogs

.PHONY: setup run test lint typecheck pytest bench clean synth

setup: $(STAMP)

# Rebuilt only when a requirements file or pyproject.toml changes. The package itself is
# installed editable (pip install -e .): `import buildlogs` works for every tool run from the
# venv, and .venv/bin/buildlogs is the client CLI (submit SPEC.json | tail BUILD_ID).
$(STAMP): requirements.txt requirements-dev.txt requirements-client.txt layers/buildlogs/requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@# an earlier setup's path file and CLI shim (the editable install replaces both)
	@rm -f $(VENV)/lib/python3*/site-packages/buildlogs-layer.pth $(VENV)/bin/buildlogs
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

# A whole build of $(EXAMPLE) through the deployed state machine, on this machine (no network).
EXAMPLE ?= examples/hello-web
run: $(STAMP)
	$(VENV)/bin/buildlogs run $(EXAMPLE)

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) -m bench.stream_throughput
	$(PY) -m bench.stream_latency
	$(PY) -m bench.cold_import
	$(PY) -m bench.archive
	$(PY) -m bench.pipeline
	$(PY) -m bench.iteration
	$(PY) -m bench.search
	$(PY) -m bench.viewer

# The pinned CDK CLI (package.json / package-lock.json), installed only when they change.
NPM_STAMP := node_modules/.installed
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NPM_STAMP)

# Offline: no Docker (the layer bundles locally with pip), no AWS credentials, no lookups.
# cdk.json's `python3 app.py` runs the venv's python (.venv/bin first on PATH).
synth: $(STAMP) $(NPM_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=$$(node -p 'process.versions.node.split(".")[0]') node_modules/.bin/cdk synth --no-notices --quiet

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cdk.out
