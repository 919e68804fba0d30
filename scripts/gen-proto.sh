#!/usr/bin/env bash
# Generates the FlyteAdmin client messages and service descriptor into src/gen/ (committed).
#
#   scripts/gen-proto.sh              regenerate src/gen/
#   OUT_DIR=/tmp/x scripts/gen-proto.sh   generate elsewhere (scripts/check-generated.sh uses this)
#
# Inputs: proto/ (buf.yaml, buf.gen.yaml and the trimmed flyteidl/service/admin_projects.proto) plus the
# upstream flyteidl/{admin,core,event} protos copied from the pinned @flyteorg/flyteidl package into a
# temporary buf module. Only the import closure of admin_projects.proto is generated (include_imports with
# --path); well-known types resolve to @bufbuild/protobuf/wkt. Tools come from node_modules (buf and
# protoc-gen-es versions are pinned in package-lock.json), so the output is byte-for-byte reproducible
# and needs no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/toolchain.sh
source "$ROOT/scripts/lib/toolchain.sh"
ensure_node

FLYTEIDL_VERSION_PINNED="1.16.5"
OUT_DIR="${OUT_DIR:-$ROOT/src/gen}"
IDL_DIR="$ROOT/node_modules/@flyteorg/flyteidl"

[ -d "$IDL_DIR/protos/flyteidl/admin" ] || { echo "gen-proto: $IDL_DIR missing; run npm ci" >&2; exit 1; }
idl_version="$(node -p "require('$IDL_DIR/package.json').version")"
if [ "$idl_version" != "$FLYTEIDL_VERSION_PINNED" ]; then
  echo "gen-proto: @flyteorg/flyteidl is $idl_version, expected $FLYTEIDL_VERSION_PINNED (update the pin here on purpose)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/module/flyteidl"
cp "$ROOT/proto/buf.yaml" "$ROOT/proto/buf.gen.yaml" "$work/module/"
cp -R "$ROOT/proto/flyteidl/service" "$work/module/flyteidl/"
for dir in admin core event; do
  cp -R "$IDL_DIR/protos/flyteidl/$dir" "$work/module/flyteidl/"
done

export PATH="$ROOT/node_modules/.bin:$PATH"
export BUF_CACHE_DIR="$work/buf-cache"
(
  cd "$work/module"
  buf generate --template buf.gen.yaml --path flyteidl/service/admin_projects.proto -o "$work/out"
)

cat > "$work/out/gen/README.md" <<'MD'
# Generated code — do not edit

Written by `scripts/gen-proto.sh` (protoc-gen-es, `target=ts`, `import_extension=js`) from
`proto/flyteidl/service/admin_projects.proto` and the upstream `flyteidl/{admin,core}` protos of the
pinned `@flyteorg/flyteidl` package. Regenerate with `npm run gen:proto`; `scripts/check-generated.sh`
fails when this folder differs from a fresh generation.
MD

mkdir -p "$OUT_DIR"
# Replace the whole folder content so files no longer generated disappear.
find "$OUT_DIR" -mindepth 1 -delete
cp -R "$work/out/gen/." "$OUT_DIR/"
echo "gen-proto: wrote $(find "$OUT_DIR" -name '*.ts' | wc -l | tr -d ' ') files to ${OUT_DIR#"$ROOT/"}" >&2
