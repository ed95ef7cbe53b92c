#!/usr/bin/env bash
# `npm run test:e2e`: the local cluster's test, then the end-to-end tests (Ferry installed with
# its chart into that cluster, the iris example in real Pods). Needs root on Linux. One file at
# a time: a machine holds one cluster. Arguments go to node --test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
node_dir=$(bash scripts/ensure-node.sh | tail -n 1)
export PATH="$node_dir:$root/node_modules/.bin:$PATH"

echo "== local cluster and end-to-end tests" >&2
# The demo leaves its cluster up (README: demo, then npm test); a machine holds one cluster.
node test/cluster/stop-demo-cluster.ts
exec node --test --test-concurrency=1 'test/cluster/**/*.test.ts' 'test/e2e/**/*.test.ts' "$@"
