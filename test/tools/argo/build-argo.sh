#!/usr/bin/env bash
# Builds the pinned Argo Workflows workflow-controller (the peer `npm run bench` compares Ferry
# with) from the Go module in this folder, once, into a cache keyed by version outside the repo,
# and copies the release's minimal CRDs next to it. Only `npm run bench` calls this; `npm test` never does.
# Usage: build-argo.sh   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
module=github.com/argoproj/argo-workflows/v3
version=$(awk -v m="$module" '$1==m{print $2; exit}' "$here/go.mod")
[ -n "$version" ] || { echo "no $module version in $here/go.mod" >&2; exit 1; }
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/argo-workflows-$version"
name=workflow-controller
mkdir -p "$bin_dir"

if [ ! -x "$bin_dir/$name" ]; then
  echo "building $name $version into $bin_dir (a large build: several minutes) ..." >&2
  started=$(date +%s)
  # As Argo's Makefile does, so the controller logs its real version.
  ldflags="-s -w -X $module.version=$version -X $module.gitTag=$version -X $module.gitTreeState=clean"
  # A per-process temp name, so two concurrent first builds never rename a half-written file.
  tmp="$bin_dir/$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # nice: the machines that run this are small and shared.
  (cd "$here" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp" "$module/cmd/$name")
  mv "$tmp" "$bin_dir/$name"
  echo "built $name $version in $(( $(date +%s) - started ))s" >&2
fi
if [ ! -d "$bin_dir/crds" ]; then
  src=$(cd "$here" && go list -m -f '{{.Dir}}' "$module")
  mkdir -p "$bin_dir/crds.tmp.$$"
  cp "$src"/manifests/base/crds/minimal/argoproj.io_*.yaml "$bin_dir/crds.tmp.$$/"
  chmod u+w "$bin_dir/crds.tmp.$$"/*
  mv "$bin_dir/crds.tmp.$$" "$bin_dir/crds"
fi
echo "$bin_dir"
