#!/usr/bin/env bash
# Builds the pinned SeaweedFS `weed` binary (its S3 gateway is the real S3 server the s3://
# artifact-store tests run against) from the Go module in seaweedfs/, once, into a cache keyed
# by version outside the repo.
# Usage: build-seaweedfs.sh   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module_dir="$here/seaweedfs"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
version=$(awk '$1=="github.com/seaweedfs/seaweedfs"{print $2; exit}' "$module_dir/go.mod")
[ -n "$version" ] || { echo "no github.com/seaweedfs/seaweedfs version in $module_dir/go.mod" >&2; exit 1; }
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/seaweedfs-$version"
name=weed
mkdir -p "$bin_dir"

if [ ! -x "$bin_dir/$name" ]; then
  echo "building $name (SeaweedFS $version) into $bin_dir ..." >&2
  started=$(date +%s)
  # A per-process temp name, so two concurrent first builds never rename a half-written file.
  tmp="$bin_dir/$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (cd "$module_dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/seaweedfs/seaweedfs/weed)
  mv "$tmp" "$bin_dir/$name"
  echo "built $name in $(( $(date +%s) - started ))s" >&2
fi
echo "$bin_dir"
