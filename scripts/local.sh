#!/usr/bin/env bash
# `npm run local`: the controller on this machine against a local control plane, an IAM emulator (moto)
# and a FlyteAdmin double, with the example workspace applied and summarised. Runs until Ctrl-C.
#
#   npm run local                 # interactive: keeps running, Ctrl-C stops and cleans up
#   npm run local -- --once       # exit 0 right after the summary (also: LOCAL_RUN_ONCE=1)
#   npm run local -- --help       # all options
#
# Works on a fresh clone: installs Node 24 (when the machine's is older) and the dependencies, builds
# dist/, and the first run builds the control-plane binaries (about 9 minutes on 2 cores, cached after).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh
ensure_node
ensure_dependencies
ensure_moto

echo "[local] building dist/ (tsc)" >&2
npx tsc -p tsconfig.build.json

exec npx tsx scripts/local.ts "$@"
