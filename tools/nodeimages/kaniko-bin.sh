#!/usr/bin/env bash
# Build the Kaniko executor (upstream v1.24.0, the version the Go module proxy still serves) once
# and print its path. Cached in $MAINT_CACHE_DIR/kaniko/<version>/executor (default ~/.cache/maint);
# KANIKO_EXECUTOR naming an executable uses that one instead and builds nothing.
#
# `go install …@v1.24.0` does not work here: it reads `@v/list`, which the proxy answers with 403
# for this archived module. So: `go mod download` the module, copy it out of the read-only module
# cache and `go build ./cmd/executor` in the copy (CGO off, a static binary). Cold: ~2-4 min.
set -euo pipefail
version=v1.24.0
module=github.com/GoogleContainerTools/kaniko
cache="${MAINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maint}"
out="$cache/kaniko/$version"
if [ -n "${KANIKO_EXECUTOR:-}" ]; then  # a binary of your own: used as it is
  [ -x "$KANIKO_EXECUTOR" ] || { echo "kaniko: KANIKO_EXECUTOR=$KANIKO_EXECUTOR is not executable" >&2; exit 2; }
  echo "kaniko: using KANIKO_EXECUTOR=$KANIKO_EXECUTOR" >&2; echo "$KANIKO_EXECUTOR"; exit 0
fi
if [ -x "$out/executor" ]; then
  echo "kaniko: cached in $out/executor" >&2; echo "$out/executor"; exit 0
fi
PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "kaniko: Go is required to build the executor" >&2; exit 1; }
start=$SECONDS
echo "kaniko: downloading $module@$version from the Go module proxy ..." >&2
dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "kaniko: go mod download gave no source folder for $module@$version" >&2; exit 1; }
mkdir -p "$out"
src="$out/src"
rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
# The module zip keeps vendor/modules.txt but not the vendored code: build in module mode.
rm -rf "$src/vendor"
echo "kaniko: building the executor (CGO off; cold: ~2-4 min) ..." >&2
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
   -ldflags "-s -w -X $module/pkg/version.version=$version" -o "$out/executor.tmp" ./cmd/executor)
mv "$out/executor.tmp" "$out/executor"
rm -rf "$src"
echo "kaniko: executor built in $((SECONDS - start))s" >&2
echo "$out/executor"
