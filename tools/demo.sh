#!/usr/bin/env bash
# `make demo`: one whole maintenance window, printed as a timeline (README: "run it").
#
# With Docker and kind: a kind cluster with a local registry (tools/kind-up.sh), maint's image
# built and pushed, manifests/overlays/kind applied, the sample app, a notice starting in 30 s
# for 60 s, and the timeline of maint's event log and of HTTP answers through the Service.
# Without them, as root on Linux: the real node of the test suite (tools/demo_node.py): real
# containerd, kubelet, kube-proxy, Kaniko and nginx, maint as its own Deployment, and a client's
# answers through the ClusterIP next to maint's event log. Its packages, binaries and images are
# installed and built first (once; cached in ~/.cache/maint).
# Only where neither can run: the same flow on the local control plane the tests use
# (tools/demo.py local), labelled plainly as simulated nodes without containers.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "demo: run \`make venv\` first (or \`make demo\`, which does)" >&2; exit 1; }

why=""
if ! command -v docker >/dev/null; then
  why="docker is not installed"
elif ! err=$(docker info 2>&1 >/dev/null); then
  why="docker is installed but not usable: $(echo "$err" | grep -v '^$' | tail -1)"
elif ! command -v kind >/dev/null; then
  why="kind is not installed (https://kind.sigs.k8s.io)"
elif ! command -v kubectl >/dev/null; then
  why="kubectl is not installed"
fi

if [ -n "$why" ]; then
  # The local control plane's binaries: KUBEBUILDER_ASSETS, the cache, or a one-time build.
  KUBEBUILDER_ASSETS="$(tools/k8sbin/build.sh)"
  export KUBEBUILDER_ASSETS
  no_node=""
  if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ]; then
    no_node="the real node needs root on Linux"
  else
    echo "* kind cannot run here ($why): the real node instead"
    echo "* its packages, binaries and images (built once, cached in ~/.cache/maint)"
    if ! { tools/setup.sh && tools/k8sbin/build.sh node >/dev/null &&
           tools/nodeimages/build.sh --build-only; }; then
      no_node="the real node's set-up failed (see above)"
    fi
  fi
  if [ -z "$no_node" ]; then
    exec "$py" tools/demo_node.py --assets "$KUBEBUILDER_ASSETS"
  fi
  exec "$py" tools/demo.py local --reason "$why; $no_node"
fi

context=kind-maint
step() { echo "* $*"; }
step "kind cluster and local registry (tools/kind-up.sh)"
tools/kind-up.sh
step "maint's image: docker build, push as localhost:5001/maint:dev"
docker build -q -t localhost:5001/maint:dev . >/dev/null
docker push -q localhost:5001/maint:dev >/dev/null
step "kubectl apply -k manifests/overlays/kind"
kubectl --context "$context" apply -k manifests/overlays/kind
kubectl --context "$context" -n maint-system rollout restart deploy/maint >/dev/null
kubectl --context "$context" -n maint-system rollout status deploy/maint --timeout=300s
step "sample app: kubectl apply -k manifests/sample-app"
kubectl --context "$context" apply -k manifests/sample-app
kubectl --context "$context" -n shop rollout status deploy/web --timeout=180s
at() { "$py" -c 'import datetime as d, sys; print((d.datetime.now(d.UTC).replace(microsecond=0) + d.timedelta(seconds=int(sys.argv[1]))).isoformat())' "$1"; }
start=$(at 30)
end=$(at 90)
step "maint notice add --start $start --end $end --target shop/web"
id=$(kubectl --context "$context" -n maint-system exec deploy/maint -c maint -- \
  maint notice add --title "Planned maintenance" --reason "Database upgrade (maint demo)" \
  --start "$start" --end "$end" --target shop/web --lang en -o json |
  "$py" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
step "timeline of notice $id (maint's event log, and GET http://127.0.0.1:30080/ through the Service)"
"$py" tools/demo.py kind --notice "$id" --context "$context"
kubectl --context "$context" -n maint-system exec deploy/maint -c maint -- maint notice show "$id"
echo "* done; \`make kind-down\` deletes the cluster and the registry"
