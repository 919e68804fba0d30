#!/usr/bin/env bash
# Fails when src/gen/ differs from what scripts/gen-proto.sh generates now (edited by hand, stale after a
# proto or tool version change, or missing files). Called by the test runner when present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

OUT_DIR="$tmp/gen" bash "$ROOT/scripts/gen-proto.sh"
if ! diff -r -u "$ROOT/src/gen" "$tmp/gen" >"$tmp/diff"; then
  echo "check-generated: src/gen is out of date with proto/ and the pinned generators; run: npm run gen:proto" >&2
  head -n 80 "$tmp/diff" >&2
  exit 1
fi
echo "check-generated: src/gen is up to date" >&2
