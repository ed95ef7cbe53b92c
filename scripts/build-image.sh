#!/usr/bin/env bash
# `npm run image`: builds Ferry's one image (the operator, and the step agent by another entry
# point) with buildah from ./Containerfile. No base image can be pulled here, so the script
# assembles the build context itself, each part cached by what it is made of:
#   rootfs.tar  Node.js 24 (the binary the project runs on, stripped) + the shared libraries it
#               links + CA certificates + /etc/passwd with user 65532, keyed by Node and
#               Debian library versions
#   app/        the operator compiled to JavaScript (tsconfig.build.json) + production
#               node_modules (npm ci --omit=dev, keyed by package-lock.json)
# then tags ferry:<package.json version> (buildah stores it as localhost/ferry:<version>), saves
# an OCI archive named docker.io/library/ferry:<version> in the cache for clusters to import,
# prints the size, and proves the image runs unless --no-verify: --help, the operator's whole
# module graph loads, and the agent publishes an output to a file:// store, all as UID 65532.
# Usage: build-image.sh [--no-verify]   Prints the OCI archive path on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
verify=true
for arg in "$@"; do
  case "$arg" in
    --no-verify) verify=false ;;
    *) echo "usage: $0 [--no-verify]" >&2; exit 2 ;;
  esac
done
started=$(date +%s)
say() { echo "image: $*" >&2; }

command -v buildah >/dev/null 2>&1 || {
  say "installing buildah (Debian) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends buildah >&2
}
node_dir=$(bash scripts/ensure-node.sh | tail -n 1)
export PATH="$node_dir:$root/node_modules/.bin:$PATH"
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund >&2 # the compiler

version=$(node -p 'require("./package.json").version')
name=${FERRY_IMAGE_NAME:-ferry}
image="localhost/$name:$version"
# The name a cluster resolves `ferry:<version>` to, recorded in the OCI archive for import.
archive_ref="docker.io/library/$name:$version"
cache_root=${FERRY_CACHE:-$HOME/.cache/ferry}
cache="$cache_root/image"
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# ── 1. the base root filesystem ───────────────────────────────────────────────────────────
node_bin="$node_dir/node"
node_version=$(node --version)
libs=$(ldd "$node_bin" | awk '$2=="=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
# Debian package (and version) behind each library, for the cache key and the copyright files.
declare -A lib_package=()
for lib in $libs; do
  canonical="$(readlink -f "$(dirname "$lib")")/$(basename "$lib")"
  pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$canonical" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true)
  pkg=${pkg%%:*}
  [ -n "$pkg" ] && lib_package[$lib]=$pkg
done
packages=$(printf '%s\n' "${lib_package[@]}" ca-certificates | sort -u)
recipe_version=2 # bump when the rootfs recipe below changes
base_key=$( {
  echo "recipe $recipe_version node $node_version $(sha256sum "$node_bin" | cut -c1-16)"
  for pkg in $packages; do dpkg-query -W -f '${Package} ${Version}\n' "$pkg"; done
} | sha256sum | cut -c1-12)
rootfs_tar="$cache/rootfs-node-${node_version#v}-$base_key.tar"

if [ ! -f "$rootfs_tar" ]; then
  say "assembling the base root filesystem (Node.js $node_version, ${#lib_package[@]} libraries) ..."
  fs="$work/rootfs"
  mkdir -p "$fs"/{etc/ssl/certs,usr/local/bin,usr/lib,tmp,home/nonroot,usr/share/doc/nodejs}
  # Merged /usr, as on Debian: /lib and /lib64 point into /usr, so ldd's paths resolve.
  for top in lib lib64; do
    if [ -L "/$top" ]; then ln -s "$(readlink "/$top")" "$fs/$top"; fi
  done
  if command -v strip >/dev/null 2>&1; then
    strip --strip-all -o "$fs/usr/local/bin/node" "$node_bin" # debug symbols: ~13 MB the image never uses
  else
    cp "$node_bin" "$fs/usr/local/bin/node"
  fi
  cp "$node_dir/../LICENSE" "$fs/usr/share/doc/nodejs/LICENSE"
  for lib in $libs; do
    real=$(readlink -f "$lib")
    canonical="$(readlink -f "$(dirname "$lib")")/$(basename "$lib")"
    mkdir -p "$fs$(dirname "$real")" "$fs$(dirname "$canonical")"
    cp "$real" "$fs$real"
    [ "$canonical" = "$real" ] || ln -sfr "$fs$real" "$fs$canonical"
  done
  for pkg in $packages; do
    if [ -f "/usr/share/doc/$pkg/copyright" ]; then
      mkdir -p "$fs/usr/share/doc/$pkg" && cp "/usr/share/doc/$pkg/copyright" "$fs/usr/share/doc/$pkg/"
    fi
  done
  cp /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$fs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$fs/etc/group"
  printf 'hosts: files dns\n' > "$fs/etc/nsswitch.conf"
  chmod 1777 "$fs/tmp"
  chown 65532:65532 "$fs/home/nonroot"
  # Reproducible bytes: sorted names, fixed times, numeric owners.
  tar --sort=name --mtime=@0 --numeric-owner -C "$fs" -cf "$rootfs_tar.tmp.$$" .
  mv "$rootfs_tar.tmp.$$" "$rootfs_tar"
  rm -rf "$fs"
fi

# ── 2. the application: compiled JavaScript + production dependencies ─────────────────────
say "compiling TypeScript (tsconfig.build.json) ..."
app="$work/context/app"
mkdir -p "$app"
tsc -p tsconfig.build.json --outDir "$app"
cp package.json package-lock.json "$app/"

# Keyed by the lockfile and the dependency lists only: a new npm script reuses the cache.
lock_key=$( { cat package-lock.json; node -p 'const p = require("./package.json"); JSON.stringify([p.dependencies, p.optionalDependencies])'; } | sha256sum | cut -c1-12)
deps="$cache/node-modules-$lock_key"
if [ ! -d "$deps/node_modules" ]; then
  say "installing production dependencies (npm ci --omit=dev) ..."
  staging="$work/deps"
  mkdir -p "$staging"
  cp package.json package-lock.json "$staging/"
  (cd "$staging" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  # Type declarations and source maps are never loaded at run time.
  find "$staging/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete
  rm -rf "$staging/node_modules/.package-lock.json"
  rm -rf "$deps.tmp.$$" && mkdir -p "$deps.tmp.$$" && mv "$staging/node_modules" "$deps.tmp.$$/"
  rm -rf "$deps" && mv "$deps.tmp.$$" "$deps"
fi
cp -a "$deps/node_modules" "$app/node_modules"
ln "$rootfs_tar" "$work/context/rootfs.tar" 2>/dev/null || cp "$rootfs_tar" "$work/context/rootfs.tar"

# ── 3. the image ───────────────────────────────────────────────────────────────────────────
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
previous=$(buildah images --quiet --no-trunc "$image" 2>/dev/null | head -n 1 || true)
say "building $image with buildah ..."
# --layers: the base layer is cached (and shared by every Ferry version); only app/ is new.
buildah build --quiet --layers \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "NODE_VERSION=$node_version" \
  -f Containerfile -t "$image" "$work/context" >&2

current=$(buildah images --quiet --no-trunc "$image" | head -n 1)
# The image this tag pointed at before is garbage now (its layers are shared or replaced).
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi

archive_dir="$cache/archives"
mkdir -p "$archive_dir"
archive="$archive_dir/$name-$version.oci.tar"
rm -f "$archive"
buildah push --quiet "$image" "oci-archive:$archive:$archive_ref" >&2

size=$(buildah images --format '{{.Size}}' "$image" | head -n 1)
archive_mib=$(awk -v b="$(stat -c %s "$archive")" 'BEGIN { printf "%.1f MiB", b / 1048576 }')
say "built $image in $(( $(date +%s) - started ))s: $size unpacked, $archive_mib as an OCI archive (gzip layers) at $archive"

# ── 4. prove it runs: the operator's help, and the agent publishing an output ───────────────
if $verify; then
  say "verifying the image ..."
  # chroot isolation: no OCI runtime needed (crun refuses the hybrid cgroups of these machines),
  # and the image's own /usr/local/bin/node and libraries still do all the work.
  container=$(buildah from --pull-never "$image")
  scratch=$(mktemp -d)
  trap 'buildah rm "$container" >/dev/null 2>&1 || true; rm -rf "$scratch"; cleanup' EXIT
  help=$(buildah run --isolation chroot --user 65532:65532 "$container" -- node /app/operator/main.js --help)
  grep -q 'ferry agent fetch-inputs|publish-outputs' <<<"$help" || { say "--help did not print the usage: $help"; exit 1; }
  # --help loads little; this loads the operator's whole module graph (every production dependency).
  buildah run --isolation chroot --user 65532:65532 "$container" -- \
    node --input-type=module -e 'await import("/app/operator/operator.js"); console.error("image: the operator modules load")' >&2
  # A step wrote /ferry/outputs/model; publish-outputs uploads it to the file:// store.
  mkdir -p "$scratch/ferry/outputs/model" "$scratch/store"
  head -c 100000 /dev/urandom > "$scratch/ferry/outputs/model/weights.bin"
  echo '{"accuracy": 0.93}' > "$scratch/ferry/outputs/metrics.json"
  chown -R 65532:65532 "$scratch"
  buildah run --isolation chroot --user 65532:65532 -v "$scratch:/scratch" \
    --env FERRY_DIR=/scratch/ferry --env FERRY_ARTIFACT_STORE=file:///scratch/store \
    --env 'FERRY_OUTPUTS=[{"name":"model","type":"model"}]' --env FERRY_TERMINATION_LOG=/scratch/termination-log \
    "$container" -- node /app/operator/main.js agent publish-outputs >&2
  node -e '
    const fs = require("node:fs");
    const [log, store] = process.argv.slice(1);
    const message = JSON.parse(fs.readFileSync(log, "utf8"));
    const out = message.report?.outputs?.[0];
    if (!out || out.name !== "model" || !/^sha256:[0-9a-f]{64}$/.test(out.digest)) throw new Error("unexpected report: " + JSON.stringify(message));
    if (message.report.metrics?.accuracy !== 0.93) throw new Error("metrics missing: " + JSON.stringify(message));
    const path = store + new URL(out.uri).pathname.slice("/scratch/store".length);
    if (fs.statSync(path).size !== out.size) throw new Error("the stored blob does not match " + out.uri);
    console.error("image: the agent published " + out.uri + " (" + out.size + " bytes) from inside the image");
  ' "$scratch/termination-log" "$scratch/store"
fi
say "done in $(( $(date +%s) - started ))s: $image"
echo "$archive"
