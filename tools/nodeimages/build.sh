#!/usr/bin/env bash
# Build the real node's images locally and push them to a plain-HTTP registry:
#
#   tools/nodeimages/build.sh --registry HOST:PORT --out FILE
#   tools/nodeimages/build.sh --build-only      (fill the cache only: `make node-images`)
#
# writes FILE as JSON {"pause", "nginx", "kaniko", "python", "maint"} -> HOST:PORT/repo@sha256:…
# No Docker and no outside registry: every image is a folder of this host's files (Debian's
# nginx and python3, a static pause program, the Kaniko executor built from the Go module proxy,
# maint from wheels built here) written as an OCI layout and pushed with `skopeo copy`.
# Cached under $MAINT_CACHE_DIR (default ~/.cache/maint)/images, keyed by the inputs: a warm run
# only pushes (seconds). Idempotent. Progress goes to stderr. Needs: gcc (static libc), Go,
# python3 with pip, skopeo, dpkg-query, ldd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="${MAINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maint}"
usage() { echo "usage: $0 --registry HOST:PORT --out FILE | --build-only" >&2; exit 2; }
registry="" out="" build_only=""
while [ $# -gt 0 ]; do
  case $1 in
    --registry) [ $# -ge 2 ] || usage; registry=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "nodeimages: unknown argument $1" >&2; usage ;;
  esac
done
if [ -n "$build_only" ]; then
  [ -z "$registry$out" ] || usage
  set -- --build-only
else
  [ -n "$registry" ] && [ -n "$out" ] || usage
  set -- --registry "$registry" --out "$out"
fi
for tool in gcc skopeo ldd dpkg-query; do
  command -v "$tool" >/dev/null || { echo "nodeimages: $tool is missing (run tools/setup.sh as root)" >&2; exit 1; }
done
python=/usr/bin/python3
[ -x "$python" ] || { echo "nodeimages: Debian's $python is missing (apt-get install python3 python3-pip)" >&2; exit 1; }

# One build at a time per cache (the node tests and `make` may start one concurrently).
mkdir -p "$cache/images"
exec 9>"$cache/images/.lock"
flock -n 9 || { echo "nodeimages: waiting for another build using $cache/images ..." >&2; flock 9; }

# The pause program: static, so its image holds one file.
pause_dir="$cache/images/pause-bin/$(sha256sum "$here/pause.c" | cut -c1-16)"
if [ ! -x "$pause_dir/pause" ]; then
  echo "nodeimages: compiling pause.c (static)" >&2
  mkdir -p "$pause_dir"
  gcc -static -O2 -s -Wall -Wextra -Werror -o "$pause_dir/pause.tmp" "$here/pause.c"
  mv "$pause_dir/pause.tmp" "$pause_dir/pause"
fi
executor=$("$here/kaniko-bin.sh")
cd "$repo"
exec "$python" -m tools.nodeimages "$@" --cache "$cache" \
  --pause-binary "$pause_dir/pause" --kaniko-executor "$executor"
