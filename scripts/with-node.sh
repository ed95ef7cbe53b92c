#!/usr/bin/env bash
# Runs a command with Node.js 24 and the project's node_modules/.bin first on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node_dir=$(bash "$root/scripts/ensure-node.sh" | tail -n 1)
export PATH="$node_dir:$root/node_modules/.bin:$PATH"
exec "$@"
