#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from the Go module proxy (no downloads of
# prebuilt binaries), the way envtest's assets would look. Prints the directory holding the binaries.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 with local replaces,
# which `go install ...@version` ignores. We require k8s.io/kubernetes at a pinned tag and replace every
# staging module with its published v0.<minor>.<patch> tag, derived from that tag's own go.mod.
#
# Honours KUBEBUILDER_ASSETS: if it points at a directory with all three binaries, nothing is built.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.35.4}"
BINARIES=(kube-apiserver kube-controller-manager etcd)

# shellcheck source=lib/cached-binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-binaries.sh"
OUT="$CACHE_ROOT/kube/v$KUBE_VERSION"
use_existing_binaries KUBEBUILDER_ASSETS "$OUT/bin" "${BINARIES[@]}"

command -v go >/dev/null || { echo "go is not installed: it is needed once to build the control plane" >&2; exit 1; }

log() { echo "[build-control-plane] $*" >&2; }
STAGING_VERSION="v0.${KUBE_VERSION#1.}"
MINOR="$(echo "$KUBE_VERSION" | cut -d. -f2)"
WORK="$OUT/src"
mkdir -p "$WORK" "$OUT/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log "resolving k8s.io/kubernetes@v$KUBE_VERSION (first run: downloads modules, then ~10-20 min of compiling on 2 cores)"
GOMOD="$(cd / && go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[ -f "$GOMOD" ] || { echo "could not download k8s.io/kubernetes@v$KUBE_VERSION" >&2; exit 1; }

GO_LINE="$(grep -E '^go [0-9]' "$GOMOD" | head -1)"
GODEBUG_LINE="$(grep -E '^godebug ' "$GOMOD" | head -1 || true)"
{
  echo 'module local/kubebin'
  echo
  echo "$GO_LINE"
  [ -n "$GODEBUG_LINE" ] && echo "$GODEBUG_LINE"
  echo
  echo "require k8s.io/kubernetes v$KUBE_VERSION"
  echo
  echo 'replace ('
  grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$GOMOD" | awk -v v="$STAGING_VERSION" '{printf "\t%s => %s %s\n",$1,$1,v}'
  echo ')'
} > "$WORK/go.mod"
cat > "$WORK/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO

cd "$WORK"
log "go mod tidy"
go mod tidy >&2
LDF="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR"
for b in kube-apiserver kube-controller-manager; do
  log "building $b"
  go build -trimpath -ldflags "$LDF" -o "$OUT/bin/.$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
  mv "$OUT/bin/.$b.tmp" "$OUT/bin/$b"
done
log "building etcd"
go build -trimpath -ldflags "-s -w" -o "$OUT/bin/.etcd.tmp" go.etcd.io/etcd/server/v3 >&2
mv "$OUT/bin/.etcd.tmp" "$OUT/bin/etcd"
log "done: $OUT/bin"
echo "$OUT/bin"
