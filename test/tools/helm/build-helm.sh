#!/usr/bin/env bash
# Builds the pinned helm (the chart tests run `helm lint` and `helm template` with it) from
# the Go module in this folder, once, into a cache keyed by version outside the repo.
# Usage: build-helm.sh   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
version=$(awk '$1=="helm.sh/helm/v3"{print $2; exit}' "$here/go.mod")
[ -n "$version" ] || { echo "no helm.sh/helm/v3 version in $here/go.mod" >&2; exit 1; }
client_go=$(awk '$1=="k8s.io/client-go"{print $2; exit}' "$here/go.mod")
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/helm-$version"
name=helm
mkdir -p "$bin_dir"

if [ ! -x "$bin_dir/$name" ]; then
  echo "building $name $version into $bin_dir ..." >&2
  started=$(date +%s)
  # As helm's Makefile does: without these, `helm version` says v3.N (no patch) and helm
  # assumes Kubernetes 1.20 for .Capabilities and deprecation lint. client-go v0.M.x → 1.M.
  k8s_minor=${client_go#v0.}; k8s_minor=${k8s_minor%%.*}
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  # A per-process temp name, so two concurrent first builds never rename a half-written file.
  tmp="$bin_dir/$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp" helm.sh/helm/v3/cmd/helm)
  mv "$tmp" "$bin_dir/$name"
  echo "built $name $version in $(( $(date +%s) - started ))s" >&2
fi
echo "$bin_dir"
