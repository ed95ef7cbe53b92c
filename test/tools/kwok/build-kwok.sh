#!/usr/bin/env bash
# Builds the pinned kwok (simulated nodes and Pod lifecycles for `npm run bench` and the bench
# smoke test) from the Go module in this folder, once, into a cache keyed by version outside the repo.
# Usage: build-kwok.sh   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
version=$(awk '$1=="sigs.k8s.io/kwok"{print $2; exit}' "$here/go.mod")
[ -n "$version" ] || { echo "no sigs.k8s.io/kwok version in $here/go.mod" >&2; exit 1; }
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/kwok-$version"
name=kwok
mkdir -p "$bin_dir"

if [ ! -x "$bin_dir/$name" ]; then
  echo "building $name $version into $bin_dir ..." >&2
  started=$(date +%s)
  # As kwok's Makefile does, so `kwok --version` names the release.
  ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}"
  # A per-process temp name, so two concurrent first builds never rename a half-written file.
  tmp="$bin_dir/$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # nice: the machines that run this are small and shared; a build must not starve the tests.
  (cd "$here" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp" sigs.k8s.io/kwok/cmd/kwok)
  mv "$tmp" "$bin_dir/$name"
  echo "built $name $version in $(( $(date +%s) - started ))s" >&2
fi
echo "$bin_dir"
