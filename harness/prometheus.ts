// A real Prometheus for tests and local runs: `prometheus` and `promtool` built from source by
// scripts/build-prometheus.sh, started with its own temp dir, a loopback listen address on a free port,
// static scrape targets and rule files, and stopped (temp dir removed) by stop().
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePorts } from './controlplane.js';

const ROOT = join(import.meta.dirname, '..');
export const MONITORING_MANIFEST = join(ROOT, 'manifests', 'monitoring', 'monitoring.yaml');
export const GRAFANA_DASHBOARD = join(ROOT, 'manifests', 'grafana-dashboard.json');

/** The directory holding `prometheus` and `promtool` (built once into the cache, or $PROMETHEUS_BIN). */
export function prometheusBinDir(): string {
  const out = execFileSync('bash', [join(ROOT, 'scripts', 'build-prometheus.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const dir = out.trim().split('\n').pop();
  if (!dir) throw new Error('scripts/build-prometheus.sh printed no directory');
  return dir;
}

// ---------------------------------------------------------------------------------------------------------
// The PrometheusRule's rules as a plain Prometheus rule file

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}

// js-yaml, the parser client-node uses, loaded through it (no dependency of its own).
const requireFromClientNode = createRequire(createRequire(import.meta.url).resolve('@kubernetes/client-node'));
const { loadAll } = requireFromClientNode('js-yaml') as { loadAll(text: string): unknown[] };

/** Parses every YAML document of a file (empty documents dropped). */
export function loadYamlDocuments(path: string): unknown[] {
  return loadAll(readFileSync(path, 'utf8')).filter((d) => d !== null && d !== undefined);
}

/** `spec.groups` of the PrometheusRule in `manifestPath`: what the Prometheus Operator hands to Prometheus. */
export function prometheusRuleGroups(manifestPath = MONITORING_MANIFEST): RuleGroup[] {
  const rules = loadYamlDocuments(manifestPath).filter(
    (d): d is { kind: string; spec: { groups: RuleGroup[] } } =>
      typeof d === 'object' && d !== null && (d as { kind?: unknown }).kind === 'PrometheusRule',
  );
  if (rules.length !== 1) throw new Error(`${manifestPath}: expected one PrometheusRule, found ${rules.length}`);
  return rules[0]?.spec.groups ?? [];
}

/** Writes a rule file Prometheus and promtool load (JSON is YAML). */
export function writeRuleFile(path: string, groups: RuleGroup[]): void {
  writeFileSync(path, `${JSON.stringify({ groups }, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// The server

export interface ScrapeJob {
  job: string;
  /** host:port of each /metrics endpoint. */
  targets: string[];
  /** Target labels, e.g. `pod` and `namespace`, which the Prometheus Operator adds from the endpoints. */
  labels?: Record<string, string>;
}

export interface PrometheusOptions {
  /** Directory with the `prometheus` binary. Default: prometheusBinDir(). */
  binDir?: string;
  scrape: ScrapeJob[];
  ruleFiles?: string[];
  /** Scrape and rule evaluation interval. Default 1 s. */
  intervalSeconds?: number;
  startTimeoutMs?: number;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RuleState {
  name: string;
  query: string;
  type: 'alerting' | 'recording';
  health: string;
  lastError?: string;
  lastEvaluation: string;
  state?: string;
}

/** A label matcher as Prometheus's parser reports it (`type` is `=`, `!=`, `=~` or `!~`). */
export interface Matcher {
  name: string;
  type: string;
  value: string;
}

/** One series selector of a PromQL expression (a matrix selector's range dropped). */
export interface Selector {
  name: string;
  matchers: Matcher[];
}

export class PrometheusApiError extends Error {
  override name = 'PrometheusApiError';
}

export interface Prometheus {
  url: string;
  dir: string;
  /**
   * Instant query at `time` (Unix seconds; default now). Throws PrometheusApiError with Prometheus's message
   * when invalid.
   */
  query(expr: string, time?: number): Promise<Sample[]>;
  /** Every series selector in `expr`, from Prometheus's own parser. Throws PrometheusApiError when invalid. */
  selectors(expr: string): Promise<Selector[]>;
  /** Values of `label` on the series matching `match`. */
  labelValues(label: string, match: string): Promise<string[]>;
  rules(): Promise<RuleState[]>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/** PromQL text of a selector: `x{a=~"b"}` (JSON string quoting is valid PromQL quoting). */
export function selectorText(s: Selector): string {
  const rest = s.matchers.filter((m) => !(s.name && m.name === '__name__' && m.type === '='));
  return `${s.name}{${rest.map((m) => `${m.name}${m.type}${JSON.stringify(m.value)}`).join(', ')}}`;
}

function collectSelectors(node: unknown, out: Selector[]): void {
  if (Array.isArray(node)) {
    for (const n of node) collectSelectors(n, out);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const n = node as { type?: unknown; name?: unknown; matchers?: unknown };
  if ((n.type === 'vectorSelector' || n.type === 'matrixSelector') && Array.isArray(n.matchers)) {
    out.push({ name: String(n.name ?? ''), matchers: n.matchers as Matcher[] });
    return;
  }
  for (const v of Object.values(node)) collectSelectors(v, out);
}

export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const binDir = opts.binDir ?? prometheusBinDir();
  const interval = `${opts.intervalSeconds ?? 1}s`;
  const dir = mkdtempSync(join(tmpdir(), 'fwc-prometheus-'));
  const configPath = join(dir, 'prometheus.yml');
  const logPath = join(dir, 'prometheus.log');
  writeFileSync(
    configPath,
    JSON.stringify({
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      rule_files: opts.ruleFiles ?? [],
      scrape_configs: opts.scrape.map((j) => ({
        job_name: j.job,
        static_configs: [{ targets: j.targets, labels: j.labels ?? {} }],
      })),
    }),
  );

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let url = '';
  const logTail = (lines = 40) => {
    try {
      return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  };
  const stopChild = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  try {
    // A port picked free can be taken before Prometheus binds it: then try another.
    for (let attempt = 1; ; attempt++) {
      const [port] = await freePorts(1);
      url = `http://127.0.0.1:${port}`;
      const log = openSync(logPath, 'a');
      const proc = spawn(
        join(binDir, 'prometheus'),
        [
          `--config.file=${configPath}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.format=json',
        ],
        { cwd: dir, stdio: ['ignore', log, log] },
      );
      closeSync(log);
      child = proc;
      let exitCode: number | null | undefined;
      exited = new Promise((resolve) => {
        proc.once('exit', (code) => {
          exitCode = code;
          resolve();
        });
        proc.once('error', () => {
          exitCode = -1;
          resolve();
        });
      });
      const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
      let ready = false;
      while (Date.now() < deadline && exitCode === undefined) {
        try {
          const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) });
          if (res.status === 200) {
            ready = true;
            break;
          }
        } catch {
          // not listening yet
        }
        await sleep(200);
      }
      if (ready) break;
      await stopChild();
      if (attempt < 3 && /address already in use/.test(logTail(20))) continue;
      throw new Error(`prometheus did not become ready (exit ${exitCode ?? 'none'}); log ${logPath}:\n${logTail()}`);
    }
  } catch (err) {
    await stopChild();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  async function api<T>(path: string, params: Record<string, string>): Promise<T> {
    const res = await fetch(`${url}/api/v1/${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (body.status !== 'success') throw new PrometheusApiError(`${body.errorType ?? res.status}: ${body.error}`);
    return body.data;
  }

  return {
    url,
    dir,
    async query(expr, time) {
      const params: Record<string, string> = { query: expr };
      if (time !== undefined) params.time = String(time);
      const data = await api<{ resultType: string; result: Sample[] }>('query', params);
      if (data.resultType !== 'vector') throw new PrometheusApiError(`${expr}: a ${data.resultType}, not a vector`);
      return data.result;
    },
    async selectors(expr) {
      const out: Selector[] = [];
      collectSelectors(await api<unknown>('parse_query', { query: expr }), out);
      return out;
    },
    async labelValues(label, match) {
      const res = await fetch(
        `${url}/api/v1/label/${encodeURIComponent(label)}/values?match[]=${encodeURIComponent(match)}`,
        {
          signal: AbortSignal.timeout(10_000),
        },
      );
      const body = (await res.json()) as { status: string; data: string[]; error?: string };
      if (body.status !== 'success') throw new PrometheusApiError(`label ${label} values: ${body.error}`);
      return body.data;
    },
    async rules() {
      const res = await fetch(`${url}/api/v1/rules`, { signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { data: { groups: { rules: RuleState[] }[] } };
      return body.data.groups.flatMap((g) => g.rules);
    },
    logTail,
    async stop() {
      await stopChild();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
