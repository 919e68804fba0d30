#!/usr/bin/env bash
# `npm run bench -- [--n 100|1000|5000] [--concurrency 4] [--churn-rate 10] [--churn-seconds 30] [--skip-external]`
# Scale benchmark of the controller on a fresh local control plane (+ FlyteAdmin double + moto): cold start
# against a plain-client baseline, no-op resync, churn latency, memory and API cost per workspace.
# Writes bench-results/<timestamp>.md and .json. See the Benchmarks section of README.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh
ensure_node
ensure_dependencies
ensure_moto

echo "[bench] building dist/" >&2
npx tsc -p tsconfig.build.json

KUBEBUILDER_ASSETS="$(bash scripts/build-control-plane.sh)"
export KUBEBUILDER_ASSETS

# `bash scripts/bench.sh transport ...` (npm run bench:transport): HTTP/1.1 against HTTP/2 per request;
# `bash scripts/bench.sh status ...` (npm run bench:status): the `status` command over N workspaces.
script=scripts/bench.ts
case "${1:-}" in
  transport) script=scripts/bench-transport.ts; shift ;;
  status) script=scripts/bench-status.ts; shift ;;
esac
exec npx tsx "$script" "$@"
