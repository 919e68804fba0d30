// Out-of-process daemons for the operability tests: `node dist/cli.js run` under the controller's
// ServiceAccount identity (its own kubeconfig file), against the shared control plane, moto and an
// in-process FlyteAdmin double. Each test environment has its own source namespace, Lease name, IAM role
// path and workspace ids, so test files never see each other's work.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { CallStats } from '../../src/adapters/call-stats.js';
import { HttpKubeApi, type KubeObject } from '../../src/adapters/kubernetes.js';
import { STATUS_ANNOTATION } from '../../src/config/config.js';
import { parseStatus, type WorkspaceStatus } from '../../src/reconcile/status.js';
import { CONTROLLER_USERNAME } from '../support/controlplane.js';
import { FlyteAdminDouble } from '../support/flyteadmin-double.js';
import { bindSourceNamespace, kubeConfigFor, uniqueName, waitFor } from '../support/kube.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'cli.js');
export const LEASE_NAMESPACE = 'flyte-workspace-controller';
export const AWS_ENV = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1' };

/** Short leader-election timings (lease 4 s, renew deadline 3 s, retry 0.5 s). */
export const LEASE = { leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 0.5 };
/** Longest wait between two attempts of a candidate: retry × (1 + jitter 1.2). */
export const MAX_JITTERED_RETRY_MS = LEASE.retryPeriodSeconds * 1000 * 2.2;

export interface DaemonEnv {
  dir: string;
  /** kubeconfig file of the controller identity (system:serviceaccount:flyte-workspace-controller:…). */
  kubeconfig: string;
  adminKc: KubeConfig;
  admin: HttpKubeApi;
  sourceNamespace: string;
  leaseName: string;
  rolePath: string;
  flyte: FlyteAdminDouble;
  motoEndpoint: string;
  /** The config every daemon of this env gets (before per-daemon overrides). */
  config: Record<string, unknown>;
  cleanup(): Promise<void>;
}

function controllerKubeconfig(): string {
  const conn = inject('kube');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fwc-test', cluster: { server: conn.server, 'certificate-authority-data': conn.caData } }],
    users: [{ name: CONTROLLER_USERNAME, user: { token: conn.controllerToken } }],
    contexts: [{ name: 'controller', context: { cluster: 'fwc-test', user: CONTROLLER_USERNAME } }],
    'current-context': 'controller',
  });
}

export async function daemonEnv(prefix: string, config: Record<string, unknown> = {}): Promise<DaemonEnv> {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (npm test does: npx tsc -p tsconfig.build.json)`);
  const dir = mkdtempSync(join(tmpdir(), `fwc-${prefix}-`));
  const kubeconfig = join(dir, 'controller.kubeconfig');
  writeFileSync(kubeconfig, controllerKubeconfig(), { mode: 0o600 });
  const adminKc = kubeConfigFor('admin');
  const admin = new HttpKubeApi(adminKc, { fieldManager: 'test-admin', stats: new CallStats('kubernetes') });
  const sourceNamespace = uniqueName(`${prefix}-src`);
  await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: sourceNamespace } });
  await bindSourceNamespace(adminKc, sourceNamespace);
  const leaseName = uniqueName(`${prefix}-lease`);
  const rolePath = `/${uniqueName(prefix)}/`;
  const flyte = await FlyteAdminDouble.start();
  const motoEndpoint = inject('motoEndpoint');
  const base = {
    sourceNamespaces: [sourceNamespace],
    flyte: { enabled: true, endpoint: flyte.url, insecure: true, callTimeoutMs: 5000, maxAttempts: 1 },
    aws: { enabled: true, endpoint: motoEndpoint, region: AWS_ENV.AWS_REGION, rolePath },
    leaderElection: { enabled: true, leaseName, namespace: LEASE_NAMESPACE, ...LEASE },
    server: { metricsPort: 0, healthPort: 0, bindAddress: '127.0.0.1' },
    reconcile: { baseBackoffMs: 200, maxBackoffMs: 3000 },
    shutdownGraceSeconds: 8,
    logLevel: 'info',
  };
  const daemons: Daemon[] = [];
  const env: DaemonEnv = {
    dir,
    kubeconfig,
    adminKc,
    admin,
    sourceNamespace,
    leaseName,
    rolePath,
    flyte,
    motoEndpoint,
    config: merge(base, config),
    cleanup: async () => {
      await Promise.all(daemons.map((d) => d.stop()));
      await flyte.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  trackedDaemons.set(env, daemons);
  return env;
}

const trackedDaemons = new WeakMap<DaemonEnv, Daemon[]>();

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      cur && typeof cur === 'object' && !Array.isArray(cur) && v && typeof v === 'object' && !Array.isArray(v)
        ? merge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export interface Daemon {
  name: string;
  child: ChildProcess;
  identity: string;
  metricsPort: number;
  healthPort: number;
  /** Every log line so far (JSON from pino, or raw text). */
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  configPath: string;
  scrape(): Promise<Samples>;
  http(port: 'metrics' | 'health', path: string): Promise<{ status: number; body: string; contentType: string }>;
  /** SIGTERM (if running) and wait; SIGKILL after `ms`. */
  stop(ms?: number): Promise<void>;
  logTail(n?: number): string;
}

/** Starts `node dist/cli.js run` with the env's config plus `overrides`; resolves once it logged its ports. */
export async function startDaemon(
  env: DaemonEnv,
  name: string,
  overrides: Record<string, unknown> = {},
): Promise<Daemon> {
  const configPath = join(env.dir, `${name}.config.json`);
  writeFileSync(configPath, JSON.stringify(merge(env.config, overrides), null, 2));
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...AWS_ENV, AWS_EC2_METADATA_DISABLED: 'true' };
  for (const k of Object.keys(childEnv)) if (k.startsWith('FWC_') || k === 'KUBECONFIG') delete childEnv[k];
  const child = spawn(process.execPath, [CLI, 'run', '--config', configPath, '--kubeconfig', env.kubeconfig], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let started: ((v: { identity: string; metricsPort: number; healthPort: number }) => void) | undefined;
  const startedP = new Promise<{ identity: string; metricsPort: number; healthPort: number }>((r) => {
    started = r;
  });
  const onData = (buf: string) => {
    for (const line of buf.split('\n')) {
      if (!line.trim()) continue;
      logs.push(line);
      if (line.includes('flyte-workspace-controller starting')) {
        try {
          const j = JSON.parse(line) as { identity: string; metricsPort: number; healthPort: number };
          started?.({ identity: j.identity, metricsPort: j.metricsPort, healthPort: j.healthPort });
        } catch {
          // not JSON
        }
      }
    }
  };
  let pendingOut = '';
  let pendingErr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    const text = pendingOut + c;
    const cut = text.lastIndexOf('\n');
    pendingOut = text.slice(cut + 1);
    onData(text.slice(0, cut + 1));
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    const text = pendingErr + c;
    const cut = text.lastIndexOf('\n');
    pendingErr = text.slice(cut + 1);
    onData(text.slice(0, cut + 1));
  });
  const d: Daemon = {
    name,
    child,
    identity: '',
    metricsPort: 0,
    healthPort: 0,
    logs,
    configPath,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        onData(`${pendingOut}\n${pendingErr}`);
        d.exit = { code, signal };
        resolve(d.exit);
      });
    }),
    logTail: (n = 40) => logs.slice(-n).join('\n'),
    async http(port, path) {
      const p = port === 'metrics' ? d.metricsPort : d.healthPort;
      const res = await fetch(`http://127.0.0.1:${p}${path}`, { signal: AbortSignal.timeout(5000) });
      return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
    },
    async scrape() {
      const r = await d.http('metrics', '/metrics');
      if (r.status !== 200) throw new Error(`${name} /metrics: HTTP ${r.status}`);
      return parseMetrics(r.body);
    },
    async stop(ms = 15_000) {
      if (d.exit || child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const done = await Promise.race([d.exited.then(() => true), sleep(ms).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await d.exited;
      }
    },
  };
  trackedDaemons.get(env)?.push(d);
  const info = await Promise.race([
    startedP,
    d.exited.then((e) => {
      throw new Error(`daemon ${name} exited at start (code ${e.code}, signal ${e.signal}):\n${d.logTail()}`);
    }),
    sleep(30_000).then(() => {
      throw new Error(`daemon ${name} did not log its ports within 30 s:\n${d.logTail()}`);
    }),
  ]);
  Object.assign(d, info);
  return d;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------------------
// Prometheus text format

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class Samples {
  constructor(
    readonly all: Sample[],
    readonly types: Map<string, string>,
  ) {}

  find(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample matching, or undefined. Throws if several match. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.find(name, labels);
    if (found.length > 1) throw new Error(`${name}${JSON.stringify(labels)} matches ${found.length} samples`);
    return found[0]?.value;
  }

  sum(name: string, labels: Record<string, string> = {}): number {
    return this.find(name, labels).reduce((a, s) => a + s.value, 0);
  }
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Samples {
  const all: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (name && type) types.set(name, type);
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const raw = m[3] as string;
    const value = raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? Number.NEGATIVE_INFINITY : Number(raw);
    all.push({ name: m[1] as string, labels, value });
  }
  return new Samples(all, types);
}

/**
 * Scrapes until the work queue is idle: nothing queued, nothing running. A status the test waits for is
 * written inside the reconcile, before the reconcile's counters move, so reading counters right after
 * seeing Ready races the end of the reconcile.
 */
export async function idleScrape(d: Daemon, controller = 'workspace'): Promise<Samples> {
  return waitFor(
    async () => {
      const s = await d.scrape();
      // Steps still in an external system's lane come back to the queue when they settle.
      const laneJobs = s.find('flyte_workspace_external_jobs').reduce((n, x) => n + x.value, 0);
      const busy =
        (s.get('workqueue_depth', { name: controller, controller }) ?? 1) +
        (s.get('controller_runtime_active_workers', { controller }) ?? 1) +
        laneJobs;
      return busy === 0 ? s : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 250, message: `an idle work queue in ${d.name}'s /metrics` },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Workspaces and Leases

export function workspaceDoc(id: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    workspace_id: id,
    workspace_name: `Workspace ${id}`,
    users: [
      { user_id: 'u1', email: `owner-${id}@example.com`, role: 'owner' },
      { user_id: 'u2', email: `dev-${id}@example.com`, role: 'contributor' },
    ],
    data_bucket: `${id}-data`,
    services: [{ service_type: 'flyte', config: {} }],
    ...overrides,
  };
}

export async function putWorkspace(env: DaemonEnv, name: string, doc: unknown): Promise<void> {
  const body: KubeObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: env.sourceNamespace, labels: { app: 'workspace-config' } },
    data: { 'workspace.json': typeof doc === 'string' ? doc : JSON.stringify(doc) },
  };
  await env.admin.apply(body, { fieldManager: 'workspace-platform' });
}

export async function workspaceStatus(env: DaemonEnv, name: string): Promise<WorkspaceStatus | undefined> {
  const cm = await env.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });
  return parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION]);
}

export async function waitReady(env: DaemonEnv, names: string[], timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      const phases = await Promise.all(names.map(async (n) => (await workspaceStatus(env, n))?.phase));
      return phases.every((p) => p === 'Ready') ? true : undefined;
    },
    { timeoutMs, intervalMs: 300, message: `workspaces ${names.join(', ')} Ready` },
  );
}

export async function readLease(env: DaemonEnv): Promise<V1Lease | undefined> {
  const api = env.adminKc.makeApiClient(CoordinationV1Api);
  try {
    return await api.readNamespacedLease({ namespace: LEASE_NAMESPACE, name: env.leaseName });
  } catch {
    return undefined;
  }
}

export async function leaseHolder(env: DaemonEnv): Promise<string | undefined> {
  return (await readLease(env))?.spec?.holderIdentity ?? undefined;
}
