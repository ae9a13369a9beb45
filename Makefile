# maint — the two commands a newcomer needs are `make demo` (run it) and `make test` (prove it).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv lint test unit integration k8s-bins bench demo image e2e kind-up kind-down clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(BIN)/maint: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/maint  ## create .venv with maint and the dev tools

k8s-bins:  ## build (once) etcd, kube-apiserver, kube-controller-manager; prints their folder
	@tools/k8sbin/build.sh

lint: venv  ## ruff, mypy (strict on maint/), import-linter layer contracts
	$(BIN)/ruff check maint tests bench tools
	$(BIN)/ruff format --check maint tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv  ## unit + integration tests (real control plane, nginx, PostgreSQL, registry, moto)
	@tools/ensure-services.sh
	KUBEBUILDER_ASSETS="$$(tools/k8sbin/build.sh)" $(BIN)/pytest tests/unit tests/integration $(PYTEST_ARGS)

unit: venv  ## unit tests only (no services)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: venv  ## benchmarks against the local control plane; writes bench/results.json
	@tools/ensure-services.sh
	KUBEBUILDER_ASSETS="$$(tools/k8sbin/build.sh)" $(BIN)/python -m bench

demo: venv  ## run a whole maintenance window (kind if present, else the local control plane)
	@tools/demo.sh

image:  ## build maint's own container image (needs Docker)
	docker build -t maint:dev .

kind-up:  ## kind cluster + local registry with the base and Kaniko images (needs Docker, kind)
	@tools/kind-up.sh

kind-down:  ## delete the kind cluster and the local registry
	@tools/kind-down.sh

e2e: venv  ## end-to-end tests on kind (skipped with a reason where Docker/kind are missing)
	$(BIN)/pytest -m e2e tests/e2e -rs $(PYTEST_ARGS)

clean:  ## remove the venv and caches (not the Kubernetes binaries in ~/.cache/maint)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache maint.egg-info
