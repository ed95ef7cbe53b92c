#!/usr/bin/env bash
# `npm test`: sets up what is missing (scripts/setup.sh), then type-checks and runs the unit,
# contract and integration tests in one node --test run. Integration tests share one real
# etcd + kube-apiserver started by test/global-setup.ts; each file works in its own namespaces.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
node_dir=$(bash scripts/ensure-node.sh | tail -n 1)
export PATH="$node_dir:$root/node_modules/.bin:$PATH"

echo "== type-check (tsc --noEmit)" >&2
tsc --noEmit -p .

echo "== tests" >&2
exec node --test --test-concurrency=2 --test-global-setup=test/global-setup.ts \
  'operator/**/*.test.ts' 'test/**/*.test.ts' "$@"
