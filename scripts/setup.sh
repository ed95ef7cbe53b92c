#!/usr/bin/env bash
# Installs what Ferry's tests and tools need on a fresh machine, each piece once and cached
# outside the repo by version: Node.js 24, the npm packages, and the pinned Kubernetes
# binaries (built from Go modules). Safe to run again: it skips what is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Go lives in /usr/local/go on these machines; a non-login shell may not have it on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null 2>&1 || { echo "setup: Go is required to build the Kubernetes test binaries" >&2; exit 1; }

# Debian packages the tests use: an OCI registry, an image builder, htpasswd for registry auth,
# Lua for Argo CD health checks, PostgreSQL for the metadata store.
missing=()
for pair in docker-registry:docker-registry buildah:buildah htpasswd:apache2-utils lua5.4:lua5.4; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
# PostgreSQL's server binaries for the metadata-store tests (not on PATH in Debian).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

node_dir=$(bash scripts/ensure-node.sh | tail -n 1)
export PATH="$node_dir:$PATH"

# npm ci only when the lockfile changed since the last install.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.ferry-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  echo "setup: installing npm packages ..." >&2
  npm ci --no-audit --no-fund >&2
  echo "$lock_hash" > node_modules/.ferry-lock-hash
fi

bash test/tools/build-binaries.sh "$@" >/dev/null
bash test/tools/build-fake-gcs.sh >/dev/null
bash test/tools/build-seaweedfs.sh >/dev/null
bash test/tools/helm/build-helm.sh >/dev/null
