# maint — the two commands a newcomer needs are `make demo` (run it) and `make test` (prove it).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/local/go/bin

.PHONY: help setup venv lint test unit integration k8s-bins node-bins node-images bench demo image e2e kind-up kind-down clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(BIN)/maint: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/maint  ## create .venv with maint and the dev tools

setup:  ## install the Debian packages the tests need (as root; else prints the command)
	@tools/setup.sh

k8s-bins:  ## build (once) etcd, kube-apiserver, kube-controller-manager; prints their folder
	@tools/k8sbin/build.sh

node-bins:  ## build (once) kubelet, kube-proxy, kube-scheduler, kubectl into the same folder
	@tools/k8sbin/build.sh node

node-images:  ## build (once, cached) the real node's images: pause, nginx, Kaniko, python, maint
	@tools/nodeimages/build.sh --build-only

lint: venv  ## ruff, mypy (strict on maint/), import-linter layer contracts
	$(BIN)/ruff check maint tests bench tools
	$(BIN)/ruff format --check maint tests bench tools
	$(BIN)/mypy
	$(BIN)/mypy --strict --explicit-package-bases tools/nodeimages
	$(BIN)/lint-imports

# Everything from a fresh machine: packages, venv, services, binaries and images (each step is
# cached and takes seconds when warm), then every test layer but kind's (README: Tests), in two
# phases: unit + integration on TEST_WORKERS parallel workers (pytest-xdist: each test to the
# next free worker, each worker with its own control plane; tests/conftest.py keeps a module
# with a module-scoped fixture on one worker), then the real-node tests alone (one node on the
# host's bridge, iptables and sysctls). The second phase runs even when the first failed; either
# failing fails the target (a phase that PYTEST_ARGS left without tests, exit 5, does not).
TEST_WORKERS ?= 3
PARALLEL_TESTS := -n $(TEST_WORKERS) --dist load
NO_TESTS_OK := $(if $(strip $(PYTEST_ARGS)),5,none)

test:  ## set up, then unit + integration (parallel) and real-node tests
	@tools/setup.sh
	@$(MAKE) --no-print-directory venv
	@tools/ensure-services.sh
	@tools/k8sbin/build.sh >/dev/null
	@tools/k8sbin/build.sh node >/dev/null
	@tools/nodeimages/build.sh --build-only
	@export KUBEBUILDER_ASSETS="$$(tools/k8sbin/build.sh)"; status=0; \
	phase() { echo "+ pytest $$*"; $(BIN)/pytest "$$@" || { code=$$?; \
	  [ $$code = $(NO_TESTS_OK) ] || status=$$code; }; }; \
	phase $(PARALLEL_TESTS) tests/unit tests/integration $(PYTEST_ARGS); \
	if [ -d tests/node ]; then phase tests/node $(PYTEST_ARGS); fi; \
	exit $$status

unit: venv  ## unit tests only (no services)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: venv  ## benchmarks (local control plane, then the real node); writes bench/results.json
	@tools/ensure-services.sh
	@if [ "$$(id -u)" = 0 ] && [ "$$(uname -s)" = Linux ]; then \
	  tools/setup.sh && tools/k8sbin/build.sh node >/dev/null && tools/nodeimages/build.sh --build-only; \
	fi
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
