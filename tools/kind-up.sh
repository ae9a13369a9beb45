#!/usr/bin/env bash
# `make kind-up`: a kind cluster "maint" and a local registry "kind-registry" that Pods and nodes
# both reach as kind-registry:5000 (plain HTTP), with the page's base image and the Kaniko image
# mirrored into it. Idempotent: run it again and it only fills in what is missing.
#
# Names (FACTS.md, "kind + local registry"):
#   from the host:          localhost:5001/<image>      (docker push)
#   from Pods and nodes:    kind-registry:5000/<image>  (Kaniko --insecure; containerd via the
#                           hosts.toml written below, so the digest maint reads is pullable)
# Deletes are enabled in the registry (REGISTRY_STORAGE_DELETE_ENABLED): maint removes each page
# image after its window. `make kind-down` removes the cluster and the registry.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER_NAME:-maint}
reg_name=kind-registry
reg_port=${KIND_REGISTRY_PORT:-5001}
images=(
  "${MAINT_BASE_IMAGE_SOURCE:-nginxinc/nginx-unprivileged:1.27-alpine}"
  "${MAINT_KANIKO_IMAGE_SOURCE:-ghcr.io/osscontainertools/kaniko:v1.25.2}"
)
say() { echo "kind-up: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
docker info >/dev/null 2>&1 || die "docker is installed but the daemon is not reachable (docker info)"

# 1. The registry container, on the host's loopback only.
if [ "$(docker inspect -f '{{.State.Running}}' "$reg_name" 2>/dev/null || true)" != true ]; then
  docker rm -f "$reg_name" >/dev/null 2>&1 || true
  say "starting registry $reg_name on 127.0.0.1:$reg_port"
  docker run -d --restart=always --name "$reg_name" -p "127.0.0.1:${reg_port}:5000" \
    -e REGISTRY_STORAGE_DELETE_ENABLED=true registry:2 >/dev/null
fi

# 2. The cluster.
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "creating kind cluster $cluster (kind-config.yaml)"
  kind create cluster --name "$cluster" --config kind-config.yaml --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
context="kind-$cluster"

# 3. containerd on every node: kind-registry:5000 is the registry container, over HTTP.
for node in $(kind get nodes --name "$cluster"); do
  dir="/etc/containerd/certs.d/${reg_name}:5000"
  docker exec "$node" mkdir -p "$dir"
  printf '[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' "$reg_name" |
    docker exec -i "$node" cp /dev/stdin "$dir/hosts.toml"
done

# 4. Put the registry on the cluster's network, so the name resolves from nodes and Pods.
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = null ]; then
  docker network connect kind "$reg_name"
fi

# 5. Document the registry in the cluster (KEP-1755).
kubectl --context "$context" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${reg_port}"
    hostFromClusterNetwork: "${reg_name}:5000"
    hostFromContainerRuntime: "${reg_name}:5000"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

# 6. Mirror the images Kaniko needs (itself, and the FROM it pulls) into the registry.
for image in "${images[@]}"; do
  path=${image#*/}
  case "${image%%/*}" in *.*|*:*|localhost) ;; *) path=$image ;; esac  # no registry host: Docker Hub
  local_ref="localhost:${reg_port}/${path}"
  if docker manifest inspect --insecure "$local_ref" >/dev/null 2>&1; then
    say "$local_ref already mirrored"
    continue
  fi
  say "mirroring $image -> $local_ref"
  docker pull -q "$image" >/dev/null
  docker tag "$image" "$local_ref"
  docker push -q "$local_ref" >/dev/null
done
say "ready: kubectl --context $context; registry localhost:${reg_port} (host) = ${reg_name}:5000 (cluster)"
