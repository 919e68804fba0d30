#!/usr/bin/env bash
# What `npm test` (and CI, through .ci/run) runs: lint, typecheck, layer check, generated-code check, build, the
# container image, the real control-plane binaries, prometheus and promtool (and promtool's checks of the alert
# rules), kustomize build of manifests/, then every vitest project including the integration tests on a real
# kube-apiserver. Extra arguments go to vitest: `npm test -- test/unit`, `npm test -- -t 'quota'`.
#
# A green run means tests ran and passed: the run fails if any test failed, was skipped or is a todo,
# or if the integration project ran no test at all (unless the arguments filter the run).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/toolchain.sh
source scripts/lib/toolchain.sh
ensure_node
ensure_dependencies
ensure_moto

RUN_START=$SECONDS
CURRENT_PHASE=''
PHASE_START=0

phase_begin() {
  CURRENT_PHASE="$1"
  PHASE_START=$SECONDS
  echo "==> [$CURRENT_PHASE]" >&2
}
phase_end() {
  echo "<== [$CURRENT_PHASE] ok in $((SECONDS - PHASE_START))s" >&2
  CURRENT_PHASE=''
}
on_exit() {
  local rc=$?
  if [ -n "$CURRENT_PHASE" ]; then
    echo "!!! [$CURRENT_PHASE] FAILED after $((SECONDS - PHASE_START))s (exit $rc)" >&2
  fi
  [ -n "${REPORT_DIR:-}" ] && rm -rf "$REPORT_DIR"
  if [ "$rc" -eq 0 ]; then
    echo "npm test: all phases passed in $((SECONDS - RUN_START))s" >&2
  else
    echo "npm test: FAILED (exit $rc) after $((SECONDS - RUN_START))s" >&2
  fi
}
trap on_exit EXIT

phase_begin lint
npx biome check .
phase_end

phase_begin typecheck
npx tsc -p tsconfig.json --noEmit
phase_end

# Imports go one way through the layers (scripts/check-layers.ts, docs/design.md).
phase_begin layers
npx tsx scripts/check-layers.ts
phase_end

# Hook: generated code (protobuf etc.) must match its sources.
if [ -f scripts/check-generated.sh ]; then
  phase_begin check-generated
  bash scripts/check-generated.sh
  phase_end
fi

phase_begin build
npx tsc -p tsconfig.build.json
phase_end

# The container image from the Dockerfile, with podman (scripts/build-image.sh): proves the Dockerfile builds
# from the committed lockfile. Cold (no cached base images) about 4-7 minutes, warm about 15 s. A run with
# arguments (a subset) skips it unless FWC_IMAGE_BUILD=1; the full run and CI always build it.
phase_begin image
if [ $# -gt 0 ] && [ "${FWC_IMAGE_BUILD:-}" != 1 ]; then
  echo "[image] skipped: npm test was given arguments (FWC_IMAGE_BUILD=1 builds the image anyway)" >&2
elif [ "$(id -u)" -ne 0 ] && toolchain_unavailable "building the image here needs root (debootstrap, chroot, podman)"; then
  [ "${CI:-}" != true ] || exit 1
elif ensure_os_packages podman runc debootstrap zstd; then
  FWC_IMAGE_REF="$(bash scripts/build-image.sh)"
  export FWC_IMAGE_REF
  echo "[image] built $FWC_IMAGE_REF" >&2
elif [ "${CI:-}" = true ]; then
  echo "!!! [image] cannot build the container image, and CI=true: failing" >&2
  exit 1
else
  echo "!!! [image] SKIPPED: cannot build the container image here (see above); CI would fail" >&2
fi
phase_end

phase_begin control-plane-binaries
KUBEBUILDER_ASSETS="$(bash scripts/build-control-plane.sh)"
export KUBEBUILDER_ASSETS
echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
phase_end

phase_begin prometheus-binaries
PROMETHEUS_BIN="$(bash scripts/build-prometheus.sh)"
export PROMETHEUS_BIN
echo "PROMETHEUS_BIN=$PROMETHEUS_BIN" >&2
phase_end

# promtool check rules and promtool test rules on the PrometheusRule (test/prometheus/*.test.yaml).
phase_begin prometheus-rules
npx tsx scripts/check-prometheus-rules.ts
phase_end

# The pinned kustomize (built once from the Go module proxy, cached like the control plane); every
# kustomization in manifests/ must build. The integration test dry-runs the output on the apiserver.
phase_begin kustomize
KUSTOMIZE="$(bash scripts/build-kustomize.sh)"
export KUSTOMIZE
while IFS= read -r kustomization; do
  "$KUSTOMIZE" build "$(dirname "$kustomization")" >/dev/null
done < <(find manifests -name kustomization.yaml | sort)
phase_end

# Does the user's argument list narrow the run? Then "integration ran 0 tests" is expected, and with a
# name pattern the tests that do not match are reported as skipped.
FILTERED=0
NAME_FILTERED=0
expect_value=0
for arg in "$@"; do
  if [ "$expect_value" -eq 1 ]; then expect_value=0; continue; fi
  case "$arg" in
    -t | --testNamePattern) FILTERED=1 NAME_FILTERED=1 expect_value=1 ;;
    -t=* | --testNamePattern=*) FILTERED=1 NAME_FILTERED=1 ;;
    -p | --project | --dir | --exclude | --shard) FILTERED=1 expect_value=1 ;;
    --project=* | --dir=* | --exclude=* | --shard=* | --changed* | --related* | --sinceLastRun | --tags*) FILTERED=1 ;;
    -*) ;;
    *) FILTERED=1 ;; # a file filter
  esac
done

phase_begin vitest
REPORT_DIR="$(mktemp -d -t fwc-vitest-XXXXXX)"
REPORT="$REPORT_DIR/report.json"
vitest_rc=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORT" "$@" || vitest_rc=$?

# The reporters' own exit code does not cover "nothing ran" or "skipped", so check the JSON report.
check_rc=0
REPORT="$REPORT" FILTERED="$FILTERED" NAME_FILTERED="$NAME_FILTERED" INTEGRATION_DIR="$PWD/test/integration/" \
  node --input-type=module -e '
import { existsSync, readFileSync } from "node:fs";
const { REPORT, FILTERED, NAME_FILTERED, INTEGRATION_DIR } = process.env;
const problems = [];
if (!existsSync(REPORT)) {
  console.error("test report check: vitest wrote no JSON report (did it crash before running tests?)");
  process.exit(1);
}
const r = JSON.parse(readFileSync(REPORT, "utf8"));
const tests = r.testResults.flatMap((f) => f.assertionResults.map((a) => ({ ...a, file: f.name })));
const count = (pred) => tests.filter(pred).length;
const integration = tests.filter((t) => t.file.startsWith(INTEGRATION_DIR));
const failedFiles = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.every((a) => a.status !== "failed"));
const byStatus = {};
for (const t of tests) byStatus[t.status] = (byStatus[t.status] ?? 0) + 1;
console.error(`test report: ${tests.length} tests ${JSON.stringify(byStatus)}; integration: ${integration.length} (${integration.filter((t) => t.status === "passed").length} passed)`);
if (count((t) => t.status === "failed") > 0 || r.numFailedTests > 0) problems.push(`${Math.max(r.numFailedTests, count((t) => t.status === "failed"))} test(s) failed`);
for (const f of failedFiles) problems.push(`suite failed without a failing test (setup/import error): ${f.name}: ${String(f.message).split("\n")[0]}`);
if (NAME_FILTERED !== "1") {
  const notRun = tests.filter((t) => t.status !== "passed" && t.status !== "failed");
  for (const t of notRun) problems.push(`${t.status}: ${t.fullName} (${t.file})`);
}
if (tests.length === 0) problems.push("no test ran");
if (FILTERED !== "1" && integration.filter((t) => t.status === "passed").length === 0) {
  problems.push("the integration project ran 0 tests (a skipped suite must not look green)");
}
if (problems.length > 0) {
  console.error("test report check FAILED:\n  - " + problems.join("\n  - "));
  process.exit(1);
}
' || check_rc=$?

if [ "$vitest_rc" -ne 0 ]; then exit "$vitest_rc"; fi
if [ "$check_rc" -ne 0 ]; then exit "$check_rc"; fi
phase_end
