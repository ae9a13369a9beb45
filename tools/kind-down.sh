#!/usr/bin/env bash
# `make kind-down`: delete the kind cluster and the local registry that tools/kind-up.sh made.
# Idempotent; touches nothing else (other kind clusters and containers stay).
set -euo pipefail
cluster=${KIND_CLUSTER_NAME:-maint}
command -v kind >/dev/null || { echo "kind-down: kind is not installed: nothing to delete" >&2; exit 0; }
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
fi
if docker inspect kind-registry >/dev/null 2>&1; then
  docker rm -f kind-registry >/dev/null
  echo "kind-down: registry kind-registry removed" >&2
fi
