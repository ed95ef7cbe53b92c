#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries the tests need (kube-apiserver, kubectl, etcd)
# from the Go modules in this folder, once, into a cache keyed by version outside the repo.
# The local cluster (test/cluster) also asks for the node binaries by name: kubelet,
# kube-scheduler, kube-controller-manager, kube-proxy (tool lines in go.mod).
# Usage: build-binaries.sh [name...]   Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '/^require k8s.io\/kubernetes /{print $3}' "$here/go.mod")
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
bin_dir="$cache_root/bin/k8s-$k8s_version-etcd-$etcd_version"
mkdir -p "$bin_dir"

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(kube-apiserver kubectl etcd)

# Binaries built with plain `go build` report v0.0.0; clients such as helm check it.
minor=${k8s_version#v1.}; minor=${minor%%.*}
version_pkg=k8s.io/component-base/version
ldflags="-s -w -X $version_pkg.gitVersion=$k8s_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"

package_of() {
  case "$1" in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}

for name in "${names[@]}"; do
  if [ -x "$bin_dir/$name" ]; then continue; fi
  echo "building $name ($(package_of "$name")) into $bin_dir ..." >&2
  started=$(date +%s)
  # A per-process temp name: two builders racing for the same binary must not share a file.
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp.$$" "$(package_of "$name")")
  mv "$bin_dir/$name.tmp.$$" "$bin_dir/$name"
  echo "built $name in $(( $(date +%s) - started ))s" >&2
done
echo "$bin_dir"
