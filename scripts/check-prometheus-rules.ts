// `npm test` phase: the PrometheusRule in manifests/monitoring/monitoring.yaml checked by a real promtool.
//   1. its spec.groups, written out as a plain rule file, pass `promtool check rules` (lint problems fatal);
//   2. the unit tests in test/prometheus/*.test.yaml pass `promtool test rules`;
//   3. every alert has a test case where it fires and one where it stays silent, and no case names an alert
//      that does not exist (promtool passes "expect no alert" for a misspelt alert name).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadYamlDocuments, prometheusBinDir, prometheusRuleGroups, writeRuleFile } from '../harness/prometheus.js';

const ROOT = join(import.meta.dirname, '..');
const TESTS_DIR = join(ROOT, 'test', 'prometheus');
const RULE_FILE = 'flyte-workspace-controller.rules.yaml';

interface AlertCase {
  alertname: string;
  exp_alerts?: unknown[];
}
interface TestFile {
  rule_files?: string[];
  tests?: { name?: string; alert_rule_test?: AlertCase[] }[];
}

const promtool = join(prometheusBinDir(), 'promtool');
const work = mkdtempSync(join(tmpdir(), 'fwc-promtool-'));
try {
  const groups = prometheusRuleGroups();
  writeRuleFile(join(work, RULE_FILE), groups);
  const run = (args: string[]) => execFileSync(promtool, args, { cwd: work, stdio: 'inherit' });
  run(['check', 'rules', '--lint=all', '--lint-fatal', RULE_FILE]);

  const testFiles = readdirSync(TESTS_DIR)
    .filter((f) => f.endsWith('.test.yaml'))
    .sort();
  if (testFiles.length === 0) throw new Error(`no *.test.yaml in ${TESTS_DIR}`);
  for (const f of testFiles) copyFileSync(join(TESTS_DIR, f), join(work, f));
  run(['test', 'rules', ...testFiles]);

  const alerts = new Set(groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : []))));
  const fires = new Set<string>();
  const silent = new Set<string>();
  const problems: string[] = [];
  for (const f of testFiles) {
    const doc = loadYamlDocuments(join(TESTS_DIR, f))[0] as TestFile;
    if (!doc.rule_files?.includes(RULE_FILE)) problems.push(`${f}: rule_files must list ${RULE_FILE}`);
    for (const t of doc.tests ?? []) {
      for (const c of t.alert_rule_test ?? []) {
        if (!alerts.has(c.alertname)) problems.push(`${f}: "${t.name}" tests ${c.alertname}, which is not an alert`);
        ((c.exp_alerts ?? []).length > 0 ? fires : silent).add(c.alertname);
      }
    }
  }
  for (const a of alerts) {
    if (!fires.has(a)) problems.push(`${a}: no test case where it fires`);
    if (!silent.has(a)) problems.push(`${a}: no test case where it stays silent`);
  }
  if (problems.length > 0) {
    console.error(`prometheus rules: coverage problems:\n  - ${problems.join('\n  - ')}`);
    process.exitCode = 1;
  } else {
    console.error(
      `prometheus rules: ${alerts.size} alerts, each with firing and silent cases in ${testFiles.join(', ')}`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
