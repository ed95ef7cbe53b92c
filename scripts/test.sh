#!/usr/bin/env bash
# `npm test`: sets up what is missing (scripts/setup.sh), then type-checks and runs
#  1. the unit, contract and integration tests in one node --test run. Integration tests share
#     one real etcd + kube-apiserver started by test/global-setup.ts; each file works in its
#     own namespaces, so files run side by side;
#  2. where the machine can run a real node (root on Linux, as CI is): the local cluster's own
#     test and the end-to-end tests (scripts/test-e2e.sh), one file at a time, since a machine
#     holds one cluster.
# Arguments go to the first run (e.g. --test-name-pattern).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
node_dir=$(bash scripts/ensure-node.sh | tail -n 1)
export PATH="$node_dir:$root/node_modules/.bin:$PATH"

echo "== type-check (tsc --noEmit)" >&2
tsc --noEmit -p .

echo "== unit, contract and integration tests" >&2
node --test --test-concurrency=2 --test-global-setup=test/global-setup.ts \
  'operator/**/*.test.ts' 'test/contract/**/*.test.ts' 'test/harness/**/*.test.ts' 'test/integration/**/*.test.ts' "$@"

if [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ]; then
  exec bash scripts/test-e2e.sh
else
  echo "== not run: the local cluster and end-to-end tests need root on Linux (npm run test:e2e there)" >&2
fi
