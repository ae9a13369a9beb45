#!/usr/bin/env bash
# Build the Kubernetes binaries the tests run and print the folder that holds them (the envtest
# KUBEBUILDER_ASSETS convention).
#
#   tools/k8sbin/build.sh        control plane: etcd, kube-apiserver, kube-controller-manager
#   tools/k8sbin/build.sh node   the real node: kubelet, kube-proxy, kube-scheduler, kubectl
#
# - KUBEBUILDER_ASSETS naming a folder with every binary of the set: use it, build nothing.
# - Otherwise build into $MAINT_CACHE_DIR/k8s/<version> (default ~/.cache/maint), once: the cache
#   lives outside the clone so a fresh clone on the same machine is warm. Idempotent. Both sets
#   share the folder, so one KUBEBUILDER_ASSETS serves the control plane and the node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$here/VERSION")
set_name=${1:-control-plane}
case "$set_name" in
  control-plane) bins=(etcd kube-apiserver kube-controller-manager) ;;
  node) bins=(kubelet kube-proxy kube-scheduler kubectl) ;;
  *) echo "k8s-bins: unknown set '$set_name' (use: build.sh [node])" >&2; exit 2 ;;
esac
declare -A pkg=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
)

have_all() { local b; for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "k8s-bins: using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS ($set_name)" >&2
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
out="${MAINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maint}/k8s/$version"
if have_all "$out"; then
  echo "k8s-bins: $set_name cached in $out" >&2; echo "$out"; exit 0
fi
command -v go >/dev/null || { echo "k8s-bins: Go is required (apt-get install golang, or see go.dev)" >&2; exit 1; }
mkdir -p "$out"
minor=${version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for kv in "gitVersion=$version" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
          "gitCommit=0000000000000000000000000000000000000000" "buildDate=1970-01-01T00:00:00Z"; do
  ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
export CGO_ENABLED=0 GOFLAGS=-mod=mod
cd "$here"
build() {  # name
  local start=$SECONDS
  [ -x "$out/$1" ] && { echo "k8s-bins: $1 already built" >&2; return; }
  echo "k8s-bins: building $1 ($version) from ${pkg[$1]} ... (cold: several minutes)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "${pkg[$1]}"
  mv "$out/$1.tmp" "$out/$1"
  echo "k8s-bins: $1 built in $((SECONDS - start))s" >&2
}
for b in "${bins[@]}"; do build "$b"; done
echo "$out"
