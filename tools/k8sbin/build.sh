#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and etcd for the integration tests and print the
# folder that holds them (the envtest KUBEBUILDER_ASSETS convention).
#
# - KUBEBUILDER_ASSETS naming a folder with all three binaries: use it, build nothing.
# - Otherwise build into $MAINT_CACHE_DIR/k8s/<version> (default ~/.cache/maint), once: the cache
#   lives outside the clone so a fresh clone on the same machine is warm. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$here/VERSION")
bins=(etcd kube-apiserver kube-controller-manager)

have_all() { local b; for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  echo "k8s-bins: using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
out="${MAINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maint}/k8s/$version"
if have_all "$out"; then
  echo "k8s-bins: cached in $out" >&2; echo "$out"; exit 0
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
build() {  # name package
  local start=$SECONDS
  [ -x "$out/$1" ] && { echo "k8s-bins: $1 already built" >&2; return; }
  echo "k8s-bins: building $1 ($version) from $2 ... (cold: several minutes)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$out/$1.tmp" "$2"
  mv "$out/$1.tmp" "$out/$1"
  echo "k8s-bins: $1 built in $((SECONDS - start))s" >&2
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
echo "$out"
