#!/usr/bin/env bash
# Install the Debian packages the tests need; the first step of `make test` (and so of .ci/run).
#
# - All present (checked with dpkg-query): prints one line and exits at once; no apt, no root.
# - Some missing, as root (or with password-less sudo): apt-get update + install of just those.
#   Without an init system, package scripts must not start services (they would hang or fail):
#   a policy-rc.d that answers 101 is put in place for the install and removed afterwards, unless
#   one was already there. tools/ensure-services.sh starts PostgreSQL as a plain process.
# - Some missing, not root: one line naming the command to run, exit 1.
#
# The real node (tests/node) needs containerd, runc, the CNI plugins, iptables, conntrack and the
# registry; the node images (tools/nodeimages) need gcc with a static libc, skopeo and pip.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  # the venv, the integration layer (real nginx, PostgreSQL, registry)
  ca-certificates make openssl python3 python3-venv python3-pip nginx postgresql
  docker-registry skopeo prometheus-alertmanager
  # the page in a real browser (tests/integration/test_page_browser.py): headless Chromium,
  # a font with Hangul so Korean is not drawn as boxes, and fc-list to tell which fonts have it
  chromium fonts-nanum fontconfig
  # the real node and its images
  containerd runc containernetworking-plugins iptables conntrack util-linux procps
  gcc libc6-dev
)
# Go builds the Kubernetes binaries and Kaniko; /usr/local/go counts (Debian's is older but
# fetches the toolchain tools/k8sbin/go.mod asks for: GOTOOLCHAIN=auto).
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || packages+=(golang-go)
# node runs the page's reload script in tests/unit/test_reload_script.py (any recent one will do).
command -v node >/dev/null || packages+=(nodejs)

# One dpkg-query for all: "name=ii " per installed package ("ii" = wanted and installed).
installed=" $({ dpkg-query -W -f '${Package}=${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true; } \
  | sed -n 's/=ii *$//p' | tr '\n' ' ') "
missing=()
for package in "${packages[@]}"; do
  [[ $installed == *" $package "* ]] || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present" >&2
  exit 0
fi

if [ "$(id -u)" = 0 ]; then
  as_root() { "$@"; }
elif sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  echo "setup: missing ${missing[*]}; run: sudo $0   (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

created_policy=""
cleanup() { [ -z "$created_policy" ] || as_root rm -f "$created_policy"; }
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod 755 /usr/sbin/policy-rc.d
  created_policy=/usr/sbin/policy-rc.d
fi
echo "setup: installing ${missing[*]}" >&2
as_root apt-get update -q
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done" >&2
