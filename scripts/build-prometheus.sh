#!/usr/bin/env bash
# Builds `prometheus` and `promtool` from the Go module proxy (no downloads of prebuilt binaries), for the
# tests that check the PrometheusRule and the Grafana dashboard against a real Prometheus. Prints the
# directory holding the binaries; builds only when one is missing.
#
# Prometheus 3.x publishes its Go module as v0.3MM.P for release 3.MM.P. Its go.mod has no replace
# directives, so `go install <cmd>@<version>` builds it as released; no wrapper module is needed.
# The build tag `remove_all_sd` leaves out the cloud service-discovery plugins (AWS, Azure, GCE, ...), which
# the tests never use (they scrape a static target); static and file discovery stay. The web UI's assets
# are not embedded (tag `builtinassets` is off): the HTTP API the tests use does not need them.
#
# Honours PROMETHEUS_BIN: if it points at a directory with both binaries, nothing is built.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"
BINARIES=(prometheus promtool)

# shellcheck source=lib/cached-binaries.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-binaries.sh"
OUT="$CACHE_ROOT/prometheus/v$PROMETHEUS_VERSION"
use_existing_binaries PROMETHEUS_BIN "$OUT/bin" "${BINARIES[@]}"

command -v go >/dev/null || { echo "go is not installed: it is needed once to build prometheus and promtool" >&2; exit 1; }

log() { echo "[build-prometheus] $*" >&2; }
MAJOR="${PROMETHEUS_VERSION%%.*}"
REST="${PROMETHEUS_VERSION#*.}"
MODULE_VERSION="v0.${MAJOR}$(printf '%02d' "${REST%%.*}").${REST#*.}"
mkdir -p "$OUT/bin"
STAGE="$(mktemp -d "$OUT/.gobin-XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$STAGE"
unset GOFLAGS

LDF="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
LDF+=" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=$MODULE_VERSION"
log "building prometheus and promtool $PROMETHEUS_VERSION (module $MODULE_VERSION; first run: downloads modules, then some minutes of compiling)"
go install -trimpath -tags remove_all_sd -ldflags "$LDF" \
  "github.com/prometheus/prometheus/cmd/prometheus@$MODULE_VERSION" \
  "github.com/prometheus/prometheus/cmd/promtool@$MODULE_VERSION" >&2
for b in "${BINARIES[@]}"; do mv "$STAGE/$b" "$OUT/bin/$b"; done
log "done: $OUT/bin"
echo "$OUT/bin"
