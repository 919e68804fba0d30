#!/usr/bin/env bash
# Builds the pinned kustomize from the Go module proxy (`go install`, no prebuilt download) into the
# project's cache, next to the control-plane binaries, and prints the binary's path. A no-op when it exists.
#
# Honours KUSTOMIZE: if it names an executable, that one is used and nothing is built.
set -euo pipefail

KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"

if [ -n "${KUSTOMIZE:-}" ]; then
  if [ -x "$KUSTOMIZE" ]; then echo "$KUSTOMIZE"; exit 0; fi
  echo "KUSTOMIZE=$KUSTOMIZE is not an executable" >&2
  exit 1
fi

CACHE_ROOT="${FWC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flyte-workspace-controller}"
OUT="$CACHE_ROOT/kustomize/$KUSTOMIZE_VERSION/bin"
if [ -x "$OUT/kustomize" ]; then echo "$OUT/kustomize"; exit 0; fi

command -v go >/dev/null || { echo "go is not installed: it is needed once to build kustomize" >&2; exit 1; }
echo "[build-kustomize] go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION (first run: ~1-3 min)" >&2
mkdir -p "$OUT"
# Build into a temporary GOBIN, then move: an interrupted build never leaves a half-written binary behind.
TMP="$(mktemp -d "$OUT/.build-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
(cd / && GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$TMP" \
  go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION") >&2
mv "$TMP/kustomize" "$OUT/kustomize"
echo "$OUT/kustomize"
