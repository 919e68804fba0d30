// The Grafana dashboard and the PrometheusRule against a real Prometheus scraping a real controller: the
// daemon (`node dist/cli.js run`, its own ServiceAccount) reconciles workspaces through a FlyteAdmin outage,
// an invalid document and a deleted ResourceQuota, then Prometheus (built from source, scripts/
// build-prometheus.sh) scrapes it every second and evaluates the rules. Every dashboard query and every
// rule expression must parse, every series selector in it must match scraped series (so a misspelt metric
// name or label value fails even where the expression as a whole would just be empty), and every
// dashboard query must return series.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GRAFANA_DASHBOARD,
  type Prometheus,
  prometheusRuleGroups,
  selectorText,
  startPrometheus,
  writeRuleFile,
} from '../../harness/prometheus.js';
import { uniqueName, waitFor } from '../support/kube.js';
import {
  type Daemon,
  type DaemonEnv,
  daemonEnv,
  idleScrape,
  leaseHolder,
  putWorkspace,
  startDaemon,
  waitReady,
  workspaceDoc,
  workspaceStatus,
} from './daemon-helpers.js';

// The Service's name: what the ServiceMonitor makes the `job` label, and what the rules select.
const JOB = 'flyte-workspace-controller-metrics';
const POD = 'flyte-workspace-controller-7d9f-abcde';
// Grafana's reference to the dashboard's data source variable (a literal, not a template string).
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana syntax
const DATASOURCE_UID = '${datasource}';

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
  gridPos: { x: number; y: number; w: number; h: number };
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  allValue?: string;
}
interface Dashboard {
  schemaVersion: number;
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboard = JSON.parse(readFileSync(GRAFANA_DASHBOARD, 'utf8')) as Dashboard;
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = allPanels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr ?? '' })),
);
const rules = prometheusRuleGroups().flatMap((g) => g.rules);

// What Grafana puts in place of the variables: one job and controller, every pod, short windows (the
// scrape interval here is 2 s).
const VALUES: Record<string, string> = {
  job: JOB,
  controller: 'workspace',
  pod: '.*',
  __rate_interval: '20s',
  __interval: '2s',
  __range: '10m',
};

function substitute(text: string): string {
  return text.replace(
    /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g,
    (whole, braced: string | undefined, bare: string | undefined) => {
      const value = VALUES[braced ?? bare ?? ''];
      if (value === undefined) throw new Error(`unknown dashboard variable ${whole} in ${text}`);
      return value;
    },
  );
}

/**
 * What is wrong with `expr` against the scraped data: invalid PromQL, a selector whose metric name no
 * scraped series has, a selector no scraped series matches, or (when `mustReturnSeries`) an empty result.
 */
async function problemsOf(where: string, expr: string, mustReturnSeries: boolean): Promise<string[]> {
  let selectors: Awaited<ReturnType<Prometheus['selectors']>>;
  try {
    selectors = await prom.selectors(expr);
  } catch (err) {
    return [`${where}: not valid PromQL: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  if (selectors.length === 0) problems.push(`${where}: selects no series at all`);
  for (const s of selectors) {
    if (!s.name) problems.push(`${where}: ${selectorText(s)} has no metric name`);
    else if ((await prom.query(`count({__name__=${JSON.stringify(s.name)}})`, evalTime)).length === 0) {
      problems.push(`${where}: no scraped series is called ${s.name}`);
    } else if ((await prom.query(`count(${selectorText(s)})`, evalTime)).length === 0) {
      problems.push(`${where}: no scraped series matches ${selectorText(s)}`);
    }
  }
  try {
    const result = await prom.query(expr, evalTime);
    if (mustReturnSeries && result.length === 0) problems.push(`${where}: returns no series`);
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
  }
  return problems;
}

let env: DaemonEnv;
let daemon: Daemon;
let prom: Prometheus;
/**
 * The time every query is evaluated at: that of a successful scrape. On this shared machine a scrape can
 * time out; Prometheus then marks every series stale until the next one, and a query in that gap would
 * see nothing.
 */
let evalTime: number;

beforeAll(async () => {
  env = await daemonEnv('prm');
  daemon = await startDaemon(env, 'a');
  await waitFor(async () => (await leaseHolder(env)) === daemon.identity, {
    timeoutMs: 20_000,
    message: 'the daemon to hold the Lease',
  });

  // A workspace created while FlyteAdmin is down: failed calls, a failed step and a retried reconcile.
  env.flyte.setDown(true);
  const good = uniqueName('prm');
  await putWorkspace(env, good, workspaceDoc(good));
  await waitFor(async () => ((await workspaceStatus(env, good))?.phase === 'Failed' ? true : undefined), {
    timeoutMs: 30_000,
    message: `${good} Failed while FlyteAdmin is down`,
  });
  env.flyte.setDown(false);
  await waitReady(env, [good]);
  // A document that is not valid: phase Invalid.
  const bad = uniqueName('prm');
  await putWorkspace(env, bad, workspaceDoc(bad, { users: 'nobody' }));
  await waitFor(async () => ((await workspaceStatus(env, bad))?.phase === 'Invalid' ? true : undefined), {
    timeoutMs: 30_000,
    message: `${bad} Invalid`,
  });
  // Drift: a deleted ResourceQuota, put back by the controller.
  await env.admin.delete({
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    namespace: `flyte-${good}`,
    name: `${good}-quota`,
  });
  await waitFor(
    async () => ((await daemon.scrape()).sum('flyte_workspace_drift_repairs_total') > 0 ? true : undefined),
    {
      timeoutMs: 30_000,
      message: 'a drift repair in /metrics',
    },
  );
  await idleScrape(daemon);

  const rulesFile = join(env.dir, 'flyte-workspace-controller.rules.yaml');
  writeRuleFile(rulesFile, prometheusRuleGroups());
  prom = await startPrometheus({
    scrape: [
      {
        job: JOB,
        targets: [`127.0.0.1:${daemon.metricsPort}`],
        // What the Prometheus Operator adds from the Endpoints of the metrics Service.
        labels: { namespace: 'flyte-workspace-controller', pod: POD, service: JOB },
      },
    ],
    ruleFiles: [rulesFile],
    intervalSeconds: 2,
  });
  // Enough samples for rate() over the substituted windows, and every rule evaluated at least once.
  await waitFor(
    async () => {
      const samples = await prom.query(`count_over_time(up{job="${JOB}"}[1m]) >= 5`);
      const evaluated = (await prom.rules()).filter((r) => !r.lastEvaluation.startsWith('0001-'));
      return samples.length === 1 && evaluated.length === rules.length ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500, message: 'five scrapes and one evaluation of every rule' },
  );
  evalTime = await waitFor(
    async () => {
      const [last] = await prom.query(`timestamp(up{job="${JOB}"} == 1)`);
      return last ? Number(last.value[1]) : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 500, message: 'a successful scrape' },
  );
});

afterAll(async () => {
  await prom?.stop();
  await env?.cleanup();
});

describe('Grafana dashboard', () => {
  it(`is in Grafana's current schema, every panel and query on the ${DATASOURCE_UID} Prometheus variable`, () => {
    expect(dashboard.schemaVersion).toBe(42);
    expect(dashboard.uid).toBe('flyte-workspace-controller');
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const wrong: string[] = [];
    for (const p of allPanels.filter((p) => p.type !== 'row')) {
      if (p.datasource?.uid !== DATASOURCE_UID)
        wrong.push(`panel "${p.title}": datasource ${JSON.stringify(p.datasource)}`);
      if ((p.targets ?? []).length === 0) wrong.push(`panel "${p.title}": no query`);
      for (const t of p.targets ?? []) {
        if (t.datasource?.uid !== DATASOURCE_UID || t.datasource.type !== 'prometheus') {
          wrong.push(`panel "${p.title}" ${t.refId}: datasource ${JSON.stringify(t.datasource)}`);
        }
      }
      if (p.gridPos.x + p.gridPos.w > 24) wrong.push(`panel "${p.title}": wider than the 24-column grid`);
    }
    expect(wrong).toEqual([]);
    expect(new Set(allPanels.map((p) => p.id)).size).toBe(allPanels.length);
  });

  it('every variable query returns values from the scraped controller', async () => {
    const problems: string[] = [];
    for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const text = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(text);
      if (!m) {
        problems.push(`variable ${v.name}: not label_values(selector, label): ${text}`);
        continue;
      }
      const values = await prom.labelValues(m[2] as string, substitute(m[1] as string));
      const expected = VALUES[v.name] === '.*' ? POD : VALUES[v.name];
      if (!values.includes(expected as string)) {
        problems.push(`variable ${v.name}: ${text} gives ${JSON.stringify(values)}, not ${expected}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it(`all ${queries.length} panel queries are valid, select only scraped series, and return series`, async () => {
    expect(queries.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const q of queries) problems.push(...(await problemsOf(q.where, substitute(q.expr), true)));
    expect(problems).toEqual([]);
  });
});

describe('PrometheusRule', () => {
  it(`all ${rules.length} rule expressions are valid and select only scraped series`, async () => {
    expect(rules.length).toBeGreaterThan(5);
    const problems: string[] = [];
    for (const r of rules) problems.push(...(await problemsOf(r.alert ?? r.record ?? '?', r.expr, false)));
    expect(problems).toEqual([]);
  });

  it('Prometheus loaded every rule and evaluates each without error', async () => {
    const loaded = await prom.rules();
    expect(loaded.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert ?? r.record).sort());
    expect(loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError}`)).toEqual([]);
  });
});

describe('the check itself', () => {
  it('fails a misspelt metric name, a label value no series has, a hidden misspelling, and invalid PromQL', async () => {
    const cases: [string, RegExp][] = [
      [
        'sum(rate(controller_runtime_reconcile_totl[1m]))',
        /no scraped series is called controller_runtime_reconcile_totl/,
      ],
      ['sum(workqueue_depth{name="workspaces"})', /no scraped series matches workqueue_depth\{name="workspaces"\}/],
      // The `or` hides the empty side from the result, not from the check.
      ['sum(workqueue_depth) or sum(workqueue_depht)', /no scraped series is called workqueue_depht/],
      ['sum(rate(controller_runtime_reconcile_total[1m])', /not valid PromQL/],
    ];
    for (const [expr, expected] of cases) {
      expect((await problemsOf('case', expr, true)).join('\n')).toMatch(expected);
    }
    expect(await problemsOf('case', 'sum(workqueue_depth)', true)).toEqual([]);
  });
});
