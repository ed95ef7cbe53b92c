#!/usr/bin/env bash
# Builds the pinned fake-gcs-server (the GCS emulator the artifact-store tests run against)
# from the Go module in fake-gcs/, once, into a cache keyed by version outside the repo.
# Usage: build-fake-gcs.sh   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module_dir="$here/fake-gcs"
version=$(awk '$1=="github.com/fsouza/fake-gcs-server"{print $2; exit}' "$module_dir/go.mod")
[ -n "$version" ] || { echo "no github.com/fsouza/fake-gcs-server version in $module_dir/go.mod" >&2; exit 1; }
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/fake-gcs-server-$version"
name=fake-gcs-server
mkdir -p "$bin_dir"

if [ ! -x "$bin_dir/$name" ]; then
  echo "building $name $version into $bin_dir ..." >&2
  started=$(date +%s)
  # A per-process temp name, so two concurrent first builds never rename a half-written file.
  tmp="$bin_dir/$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/fsouza/fake-gcs-server)
  mv "$tmp" "$bin_dir/$name"
  echo "built $name in $(( $(date +%s) - started ))s" >&2
fi
echo "$bin_dir"
