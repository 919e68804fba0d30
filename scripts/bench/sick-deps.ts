// Sick-dependency scenarios (`npm run bench -- --sick-deps`): does a user's removal reach Kubernetes while
// FlyteAdmin or IAM is sick? One control plane, one controller process, N full workspaces (Kubernetes, IAM
// through moto behind the AWS fault proxy, Flyte through the FlyteAdmin double) converged first; then, in
// the same run, the same measurement under four conditions:
//
//   healthy          dependencies answer at once (the baseline)
//   flyte-slow       FlyteAdmin answers every call after 10 s (below the call deadline, so calls succeed)
//   flyte-blackhole  FlyteAdmin answers no call before the call deadline
//   iam-throttled    the AWS fault proxy answers every IAM request with Throttling
//   healthy-again    the baseline once more, at the end
//
// In each, new workspaces arrive at a fixed rate for the whole phase so the sick system's lane is full
// while users are removed (the removal itself needs no IAM or Flyte call). Measured per removal: ConfigMap
// write (time the request was sent) → the removed user's RoleBinding deleted, seen by a watch on
// RoleBindings. Between phases the fault is lifted and everything must converge again.
import type { KubeConfig } from '@kubernetes/client-node';
import type { FaultProxy } from '../../harness/aws-fault-proxy.js';
import type { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { Samples as Scrape } from '../../harness/metrics-text.js';
import { collectionPath, type HttpKubeApi, type KubeObject } from '../../src/adapters/kubernetes.js';
import { type ControllerConfig, MANAGED_BY_LABEL } from '../../src/config/config.js';
import { roleBindingName } from '../../src/desired/kubernetes.js';
import type { SystemName } from '../../src/kinds/step.js';
import { KubeClient } from '../../src/kube/client.js';
import { workspaceNames } from '../../src/spec/names.js';
import { parseWorkspace } from '../../src/spec/workspace.js';
import { Reflector } from '../../src/watch/reflector.js';

import { type CpuMeter, type CpuUsage, cpuBetween, round } from './proc.js';

import { latencySummary, percentile } from './stats.js';
import { StatusTracker } from './tracker.js';

export type ScenarioName = 'healthy' | 'flyte-slow' | 'flyte-blackhole' | 'iam-throttled' | 'healthy-again';
/** Healthy first and last: two baselines in one run show how much this shared machine alone moves the numbers. */
export const SCENARIOS: ScenarioName[] = ['healthy', 'flyte-slow', 'flyte-blackhole', 'iam-throttled', 'healthy-again'];
const isHealthy = (name: ScenarioName) => name === 'healthy' || name === 'healthy-again';

/** FlyteAdmin's answer delay in flyte-slow (the 10 s). */
export const FLYTE_SLOW_MS = 10_000;
/** In flyte-blackhole: far beyond any call deadline. */
const BLACKHOLE_MS = 10 * 60_000;
/**
 * The controller's FlyteAdmin call deadline in this scenario: above FLYTE_SLOW_MS so that "slow" means
 * slow answers, not the same deadline expiries as the black hole (with the default 10 s both would time out).
 */
export const SICK_FLYTE_CALL_TIMEOUT_MS = 15_000;

/** The workspace shape of bench.ts (docOf/configMapOf): removing a user drops one of its extra users. */
export interface SickWorkspace {
  name: string;
  id: string;
  extraUsers: number;
  nextUser: number;
  tier: 'default' | 'large';
}

export interface SickController {
  scrape(): Promise<Scrape>;
  stop(): Promise<unknown>;
  whenReady(timeoutMs: number): Promise<void>;
  readonly startedAt: number;
  errors: string[];
}

/** What bench.ts lends this scenario: its environment, workspace documents and controller launcher. */
export interface SickDepsKit {
  env: { adminKc: KubeConfig; admin: HttpKubeApi; cpu: CpuMeter };
  cfg: ControllerConfig;
  sourceNamespace: string;
  double: FlyteAdminDouble;
  awsProxy: FaultProxy;
  workspaces(prefix: string, n: number): SickWorkspace[];
  configMapOf(namespace: string, ws: SickWorkspace): KubeObject;
  hashOf(cfg: ControllerConfig, ws: SickWorkspace): string;
  createConfigMaps(namespace: string, list: SickWorkspace[]): Promise<number>;
  /** Starts the controller process with the scenario's configuration (already written for it). */
  startController(logName: string): SickController;
  settle(maxMs: number): Promise<void>;
  say(msg: string): void;
}

export interface SickDepsOptions {
  n: number;
  /** Removals per scenario (each on its own workspace). */
  removals: number;
  /** Removals per second. */
  removalRate: number;
  /** New workspaces per second during each phase (what keeps the sick system's lane full). */
  loadRate: number;
  /** Seconds of load before the first removal. */
  warmupSeconds: number;
}

interface LaneSample {
  at: number;
  jobs: Record<string, { running: number; waiting: number }>;
  /** Work queue: keys waiting for a worker, busy workers, longest-running reconcile (s). */
  depth: number;
  activeWorkers: number;
  longestRunningSeconds: number;
}

export interface HistogramSummary {
  count: number;
  meanMs: number;
  /** Upper bound of the bucket holding the quantile, ms (Infinity when beyond the last bucket). */
  p50LeMs: number;
  p99LeMs: number;
}

export interface ScenarioResult {
  name: ScenarioName;
  removals: number;
  completed: number;
  timedOut: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** ConfigMap write request → response, p50 (part of every latency above). */
  writeP50Ms: number;
  /** New workspaces created during the phase (the load). */
  loadWorkspaces: number;
  phaseSeconds: number;
  /** flyte_workspace_external_jobs while removals ran: mean and max per system of running and waiting. */
  lanes: Record<string, { runningMean: number; runningMax: number; waitingMean: number; waitingMax: number }>;
  /** Evidence the dependency was sick while removals ran. */
  dependency: {
    flyteDoubleCalls: number;
    flyteCallsByOutcome: Record<string, number>;
    flyteCallMeanMs: number;
    iamRequestsSeen: number;
    iamThrottled: number;
    iamCallsByOutcome: Record<string, number>;
  };
  queue: HistogramSummary;
  reconcile: HistogramSummary;
  /** Work queue sampled once a second while removals ran. */
  workers: { depthMean: number; depthMax: number; activeMean: number; longestRunningMaxSeconds: number };
  /** Seconds from lifting the fault until every workspace of the run was Ready again. */
  recoverySeconds: number;
  cpu: CpuUsage;
}

export interface SickDepsResult {
  n: number;
  setup: {
    createConfigMapsSeconds: number;
    coldStartSeconds: number;
    controllerConfig: Record<string, unknown>;
  };
  options: SickDepsOptions;
  scenarios: ScenarioResult[];
  /** Against the better of the two healthy runs' p99 (the stricter reference). */
  targets: {
    healthyP99Ms: number[];
    referenceP99Ms: number;
    worstSickP99Ms: number;
    ratio: number;
    within2x: boolean;
    under1s: boolean;
  };
  totalWorkspacesAtEnd: number;
  controllerErrors: string[];
}

/** Watches the controller's RoleBindings (one list + watch, all namespaces) and times their deletions. */
class RoleBindingDeletions {
  private readonly reflector: Reflector;
  private readonly waiters = new Map<string, (at: number) => void>();
  private readonly present = new Set<string>();

  constructor(kc: KubeConfig, cfg: ControllerConfig) {
    this.reflector = new Reflector({
      client: KubeClient.forConfig(kc, { listTimeoutMs: 60_000 }),
      path: collectionPath('RoleBinding'),
      resource: 'rolebindings',
      labelSelector: `${MANAGED_BY_LABEL}=${cfg.fieldManager}`,
    });
    const key = (o: KubeObject) => `${o.metadata.namespace}/${o.metadata.name}`;
    this.reflector.onAdd((o) => this.present.add(key(o)));
    this.reflector.onDelete((o) => {
      const at = performance.now();
      const k = key(o);
      this.present.delete(k);
      const w = this.waiters.get(k);
      if (w) {
        this.waiters.delete(k);
        w(at);
      }
    });
  }

  start(): Promise<void> {
    return this.reflector.start();
  }

  stop(): Promise<void> {
    return this.reflector.stop();
  }

  exists(key: string): boolean {
    return this.present.has(key);
  }

  /** Resolves with the time the RoleBinding `namespace/name` is seen deleted. */
  deleted(key: string): Promise<number> {
    return new Promise((resolve) => this.waiters.set(key, resolve));
  }

  cancel(key: string): void {
    this.waiters.delete(key);
  }
}

/** RoleBindings (namespace/name) that `after` no longer asks for but `before` did. */
function removedBindings(kit: SickDepsKit, before: SickWorkspace, after: SickWorkspace): string[] {
  const bindings = (ws: SickWorkspace) => {
    const doc = (kit.configMapOf(kit.sourceNamespace, ws).data as Record<string, string>)['workspace.json'] as string;
    const parsed = parseWorkspace(doc, kit.cfg);
    if (!parsed.ok) throw new Error(`sick-deps workspace ${ws.id} is invalid`);
    const ns = workspaceNames(kit.cfg, ws.id).namespaces[0] as string;
    return parsed.spec.users.map((u) => {
      const subject = kit.cfg.rbac.subjectField === 'email' ? u.email : u.userId;
      return `${ns}/${roleBindingName(u.role, subject)}`;
    });
  };
  const kept = new Set(bindings(after));
  return bindings(before).filter((b) => !kept.has(b));
}

/** Count, mean and bucket-bounded p50/p99 of a histogram between two scrapes. */
function histogram(before: Scrape, after: Scrape, name: string, match: Record<string, string>): HistogramSummary {
  const count = after.sum(`${name}_count`, match) - before.sum(`${name}_count`, match);
  const sum = after.sum(`${name}_sum`, match) - before.sum(`${name}_sum`, match);
  const buckets = after
    .find(`${name}_bucket`)
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .map((s) => {
      const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      return { le, n: s.value - before.sum(`${name}_bucket`, { ...match, le: s.labels.le as string }) };
    })
    .sort((a, b) => a.le - b.le);
  const quantile = (q: number) => {
    const want = q * count;
    const b = buckets.find((x) => x.n >= want);
    return b ? (Number.isFinite(b.le) ? round(b.le * 1000, 1) : Number.POSITIVE_INFINITY) : 0;
  };
  return {
    count,
    meanMs: round((sum / Math.max(1, count)) * 1000, 1),
    p50LeMs: quantile(0.5),
    p99LeMs: quantile(0.99),
  };
}

function laneJobs(s: Scrape): LaneSample['jobs'] {
  const jobs: LaneSample['jobs'] = {};
  for (const x of s.find('flyte_workspace_external_jobs')) {
    const system = x.labels.system as string;
    jobs[system] ??= { running: 0, waiting: 0 };
    if (x.labels.state === 'running') jobs[system].running = x.value;
    if (x.labels.state === 'waiting') jobs[system].waiting = x.value;
  }
  return jobs;
}

function byOutcome(before: Scrape, after: Scrape, system: SystemName): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of after.find('flyte_workspace_external_requests_total')) {
    if (s.labels.system !== system) continue;
    const d = s.value - before.sum('flyte_workspace_external_requests_total', s.labels);
    if (d > 0) out[s.labels.outcome as string] = (out[s.labels.outcome as string] ?? 0) + d;
  }
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function shuffled<T>(xs: T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export async function runSickDeps(kit: SickDepsKit, o: SickDepsOptions): Promise<SickDepsResult> {
  const { env, cfg, say } = kit;
  // Every workspace starts with enough extra users that each scenario removes one from a workspace of its own.
  const perWorkspace = Math.ceil((o.removals * SCENARIOS.length) / o.n);
  const list = kit.workspaces('sd', o.n).map((ws) => ({ ...ws, extraUsers: perWorkspace, nextUser: perWorkspace }));
  const all = new Map(list.map((ws) => [ws.name, ws]));
  const createConfigMapsSeconds = await kit.createConfigMaps(kit.sourceNamespace, list);
  say(
    `sick-deps: created ${o.n} workspace ConfigMaps (${perWorkspace} extra user(s) each) in ${round(createConfigMapsSeconds, 1)} s`,
  );

  const tracker = new StatusTracker(env.adminKc, kit.sourceNamespace);
  await tracker.start();
  const bindings = new RoleBindingDeletions(env.adminKc, cfg);
  await bindings.start();
  const cleanups: (() => Promise<unknown>)[] = [() => tracker.stop(), () => bindings.stop()];
  try {
    const expectAllReady = () =>
      tracker.expectAll(new Map([...all.values()].map((ws) => [ws.name, kit.hashOf(cfg, ws)])));
    expectAllReady();
    const controller = kit.startController('controller-sick-deps');
    cleanups.push(() => controller.stop());
    await controller.whenReady(120_000);
    await tracker.waitAllReady(600_000);
    const coldStartSeconds = round((performance.now() - controller.startedAt) / 1000, 1);
    say(`sick-deps: ${o.n} full workspaces Ready ${coldStartSeconds} s after the controller started`);
    await waitLanesIdle(controller, 120_000);

    // Removal targets: each scenario takes its own slice of a shuffled order (spread across the workspaces).
    const order = shuffled(list);
    const scenarios: ScenarioResult[] = [];
    for (const [i, name] of SCENARIOS.entries()) {
      await kit.settle(15_000);
      const start = i * o.removals;
      const targets = Array.from({ length: o.removals }, (_, k) => order[(start + k) % order.length] as SickWorkspace);
      const r = await runScenario(kit, o, name, i, controller, tracker, bindings, targets, all, expectAllReady);
      scenarios.push(r);
      say(
        `sick-deps ${name}: ${r.completed}/${r.removals} removals, p50 ${r.p50Ms} ms, p95 ${r.p95Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms; ` +
          `lanes ${JSON.stringify(r.lanes)}; dependency ${JSON.stringify(r.dependency)}; recovered in ${r.recoverySeconds} s`,
      );
    }
    const healthyP99Ms = scenarios.filter((s) => isHealthy(s.name)).map((s) => s.p99Ms);
    const reference = Math.min(...healthyP99Ms);
    const worst = Math.max(...scenarios.filter((s) => !isHealthy(s.name)).map((s) => s.p99Ms));
    const incomplete = scenarios.some((s) => s.timedOut > 0);
    const ratio = round(worst / Math.max(1, reference), 2);
    return {
      n: o.n,
      setup: {
        createConfigMapsSeconds: round(createConfigMapsSeconds, 1),
        coldStartSeconds,
        controllerConfig: {
          reconcileConcurrency: cfg.reconcile.concurrency,
          flyteMaxConcurrentCalls: cfg.flyte.maxConcurrentCalls,
          flyteCallTimeoutMs: cfg.flyte.callTimeoutMs,
          flyteMaxAttempts: cfg.flyte.maxAttempts,
          awsMaxConcurrentCalls: cfg.aws.maxConcurrentCalls,
          awsRequestsPerSecond: cfg.aws.requestsPerSecond,
          awsRequestBurst: cfg.aws.requestBurst,
          awsMaxAttempts: cfg.aws.maxAttempts,
        },
      },
      options: o,
      scenarios,
      targets: {
        healthyP99Ms,
        referenceP99Ms: reference,
        worstSickP99Ms: worst,
        ratio,
        within2x: !incomplete && worst <= 2 * reference,
        under1s: !incomplete && worst < 1000,
      },
      totalWorkspacesAtEnd: all.size,
      controllerErrors: controller.errors,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup: ${(e as Error).message}`));
  }
}

async function waitLanesIdle(controller: SickController, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let quiet = 0;
  while (performance.now() < deadline) {
    const s = await controller.scrape();
    const busy =
      s.sum('flyte_workspace_external_jobs') + s.sum('workqueue_depth') + s.sum('controller_runtime_active_workers');
    quiet = busy === 0 ? quiet + 1 : 0;
    if (quiet >= 3) return;
    await sleep(500);
  }
  throw new Error('controller queue and lanes did not become idle');
}

function injectFault(kit: SickDepsKit, name: ScenarioName): void {
  if (name === 'flyte-slow') kit.double.setLatency(FLYTE_SLOW_MS);
  if (name === 'flyte-blackhole') kit.double.setLatency(BLACKHOLE_MS);
  if (name === 'iam-throttled') kit.awsProxy.inject({ error: 'Throttling', times: 10_000_000 });
}

function liftFault(kit: SickDepsKit): void {
  kit.double.setLatency(0);
  kit.awsProxy.clearFaults();
}

async function runScenario(
  kit: SickDepsKit,
  o: SickDepsOptions,
  name: ScenarioName,
  index: number,
  controller: SickController,
  tracker: StatusTracker,
  bindings: RoleBindingDeletions,
  targets: SickWorkspace[],
  all: Map<string, SickWorkspace>,
  expectAllReady: () => void,
): Promise<ScenarioResult> {
  const { env, cfg, say } = kit;
  const s0 = await controller.scrape();
  const flyte0 = kit.double.calls();
  kit.awsProxy.resetCounts();
  const c0 = env.cpu.snapshot();
  const t0 = performance.now();
  injectFault(kit, name);

  // Load: new workspaces at a fixed rate until the removals are done.
  let loading = true;
  const loadWrites: Promise<unknown>[] = [];
  let loadCount = 0;
  const load = (async () => {
    const width = 4;
    for (let k = 0; loading; k++) {
      const due = t0 + (k * 1000) / o.loadRate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (!loading) break;
      const ws: SickWorkspace = {
        name: `sl${index}-${String(k).padStart(width, '0')}`,
        id: `sl${index}-${String(k).padStart(width, '0')}`,
        extraUsers: 0,
        nextUser: 0,
        tier: 'default',
      };
      all.set(ws.name, ws);
      loadCount++;
      loadWrites.push(
        env.admin.apply(kit.configMapOf(kit.sourceNamespace, ws), { fieldManager: 'workspace-platform' }).catch((e) => {
          say(`sick-deps load write ${ws.name}: ${(e as Error).message}`);
        }),
      );
    }
  })();

  // Lane occupancy, once a second, from the warm-up on.
  const samples: LaneSample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const s = await controller.scrape();
        samples.push({
          at: s.at,
          jobs: laneJobs(s),
          depth: s.sum('workqueue_depth'),
          activeWorkers: s.sum('controller_runtime_active_workers'),
          longestRunningSeconds: s.sum('workqueue_longest_running_processor_seconds'),
        });
      } catch {
        // a missed sample
      }
      await sleep(1000);
    }
  })();

  await sleep(o.warmupSeconds * 1000);
  const sMeasure = await controller.scrape();
  const tMeasure = performance.now();
  const firstSample = samples.length;
  const results: Promise<{ latencyMs?: number; writeMs: number }>[] = [];
  for (const [k, ws] of targets.entries()) {
    const wait = tMeasure + (k * 1000) / o.removalRate - performance.now();
    if (wait > 0) await sleep(wait);
    results.push(removeOne(kit, bindings, ws, 30_000));
  }
  const done = await Promise.all(results);
  const sDone = await controller.scrape();
  const inWindow = samples.slice(firstSample);
  loading = false;
  sampling = false;
  await load;
  await sampler;
  await Promise.all(loadWrites);
  const flyte1 = kit.double.calls();
  const iamSeen = kit.awsProxy.total();
  const iamThrottled = Object.values(kit.awsProxy.injectedCounts()).reduce((a, b) => a + b, 0);
  const cpu = cpuBetween(c0, env.cpu.snapshot());
  const phaseSeconds = round((performance.now() - t0) / 1000, 1);

  // Recovery: lift the fault; every workspace of the run (old ones with their new users, the load) Ready.
  liftFault(kit);
  const tLift = performance.now();
  expectAllReady();
  try {
    await tracker.waitAllReady(300_000);
    await waitLanesIdle(controller, 120_000);
  } catch (err) {
    say(`sick-deps ${name}: not recovered: ${(err as Error).message}`);
  }
  const recoverySeconds = round((performance.now() - tLift) / 1000, 1);

  const lat = done
    .map((r) => r.latencyMs)
    .filter((x): x is number => x !== undefined)
    .sort((a, b) => a - b);
  const writes = done.map((r) => r.writeMs).sort((a, b) => a - b);
  const mean = (xs: number[]) => round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), 1);
  const lanes: ScenarioResult['lanes'] = {};
  for (const system of ['iam', 'flyte']) {
    const run = inWindow.map((s) => s.jobs[system]?.running ?? 0);
    const wait = inWindow.map((s) => s.jobs[system]?.waiting ?? 0);
    lanes[system] = {
      runningMean: mean(run),
      runningMax: Math.max(0, ...run),
      waitingMean: mean(wait),
      waitingMax: Math.max(0, ...wait),
    };
  }
  const queueMatch = { name: cfg.controllerName };
  const flyteCount =
    sDone.sum('flyte_workspace_external_request_duration_seconds_count', { system: 'flyte' }) -
    s0.sum('flyte_workspace_external_request_duration_seconds_count', { system: 'flyte' });
  const flyteSum =
    sDone.sum('flyte_workspace_external_request_duration_seconds_sum', { system: 'flyte' }) -
    s0.sum('flyte_workspace_external_request_duration_seconds_sum', { system: 'flyte' });
  return {
    name,
    removals: targets.length,
    completed: lat.length,
    timedOut: done.length - lat.length,
    ...latencySummary(lat),
    writeP50Ms: percentile(writes, 50),
    loadWorkspaces: loadCount,
    phaseSeconds,
    lanes,
    dependency: {
      flyteDoubleCalls: flyte1.reads + flyte1.writes - (flyte0.reads + flyte0.writes),
      flyteCallsByOutcome: byOutcome(s0, sDone, 'flyte'),
      flyteCallMeanMs: round((flyteSum / Math.max(1, flyteCount)) * 1000, 0),
      iamRequestsSeen: iamSeen,
      iamThrottled,
      iamCallsByOutcome: byOutcome(s0, sDone, 'iam'),
    },
    queue: histogram(sMeasure, sDone, 'workqueue_queue_duration_seconds', queueMatch),
    reconcile: histogram(sMeasure, sDone, 'controller_runtime_reconcile_time_seconds', {}),
    workers: {
      depthMean: mean(inWindow.map((x) => x.depth)),
      depthMax: Math.max(0, ...inWindow.map((x) => x.depth)),
      activeMean: mean(inWindow.map((x) => x.activeWorkers)),
      longestRunningMaxSeconds: round(Math.max(0, ...inWindow.map((x) => x.longestRunningSeconds)), 2),
    },
    recoverySeconds,
    cpu,
  };
}

/** Removes one extra user of `ws`; resolves with write → RoleBinding-deleted latency (undefined on timeout). */
async function removeOne(
  kit: SickDepsKit,
  bindings: RoleBindingDeletions,
  ws: SickWorkspace,
  timeoutMs: number,
): Promise<{ latencyMs?: number; writeMs: number }> {
  const before = { ...ws };
  if (ws.extraUsers === 0) throw new Error(`sick-deps: ${ws.name} has no extra user left to remove`);
  ws.extraUsers--;
  const gone = removedBindings(kit, before, ws);
  if (gone.length !== 1) throw new Error(`sick-deps: removing a user of ${ws.name} drops ${gone.length} RoleBindings`);
  const key = gone[0] as string;
  if (!bindings.exists(key)) throw new Error(`sick-deps: RoleBinding ${key} is not there before its removal`);
  const seen = bindings.deleted(key);
  const t0 = performance.now();
  await kit.env.admin.apply(kit.configMapOf(kit.sourceNamespace, ws), { fieldManager: 'workspace-platform' });
  const writeMs = performance.now() - t0;
  const at = await Promise.race([seen, sleep(timeoutMs).then(() => undefined)]);
  if (at === undefined) bindings.cancel(key);
  return { latencyMs: at === undefined ? undefined : at - t0, writeMs };
}

const LABELS: Record<ScenarioName, string> = {
  healthy: '(0) healthy dependencies',
  'flyte-slow': `(a) FlyteAdmin answers every call after ${FLYTE_SLOW_MS / 1000} s`,
  'flyte-blackhole': '(b) FlyteAdmin black-holed (no answer before the call deadline)',
  'iam-throttled': '(c) IAM throttles every call',
  'healthy-again': '(0′) healthy dependencies, again at the end',
};

function fmtLe(ms: number): string {
  return Number.isFinite(ms) ? `≤ ${ms}` : '> last bucket';
}

export function renderSickDeps(r: SickDepsResult): string {
  const out: string[] = [];
  out.push('## Access removal while a dependency is sick', '');
  out.push(
    `N = ${r.n} full workspaces (Kubernetes, IAM via moto behind the AWS fault proxy, FlyteAdmin double), converged ` +
      `${r.setup.coldStartSeconds} s after the controller started. Per scenario ${r.options.removals} removals at ` +
      `${r.options.removalRate}/s (each on its own workspace), while new workspaces arrive at ${r.options.loadRate}/s ` +
      `from ${r.options.warmupSeconds} s before the first removal. Latency: ConfigMap write sent → the removed user's ` +
      'RoleBinding deleted (RoleBinding watch). Controller settings: ' +
      `\`${JSON.stringify(r.setup.controllerConfig)}\`.`,
    '',
  );
  out.push(
    '| scenario | removals done | p50 ms | p95 ms | p99 ms | max ms | IAM lane running/waiting (mean, max) | Flyte lane running/waiting (mean, max) | dependency during removals | recovery s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const s of r.scenarios) {
    const lane = (x: ScenarioResult['lanes'][string] | undefined) =>
      x ? `${x.runningMean}/${x.waitingMean} (${x.runningMax}/${x.waitingMax})` : '—';
    const d = s.dependency;
    const dep =
      s.name === 'iam-throttled'
        ? `IAM: ${d.iamThrottled} of ${d.iamRequestsSeen} requests throttled`
        : isHealthy(s.name)
          ? `Flyte: ${d.flyteDoubleCalls} calls, mean ${d.flyteCallMeanMs} ms; IAM: ${d.iamRequestsSeen} requests, ${d.iamThrottled} throttled`
          : `Flyte: ${d.flyteDoubleCalls} calls, mean ${d.flyteCallMeanMs} ms, outcomes ${JSON.stringify(d.flyteCallsByOutcome)}`;
    out.push(
      `| ${LABELS[s.name]} | ${s.completed}/${s.removals} | ${s.p50Ms} | ${s.p95Ms} | ${s.p99Ms} | ${s.maxMs} | ${lane(s.lanes.iam)} | ${lane(s.lanes.flyte)} | ${dep} | ${s.recoverySeconds} |`,
    );
  }
  const t = r.targets;
  out.push(
    '',
    `Target: p99 of every sick scenario within 2× of the healthy run (healthy p99 ${t.healthyP99Ms.join(' and ')} ms, ` +
      `reference the lower, ${t.referenceP99Ms} ms; worst sick ${t.worstSickP99Ms} ms, ` +
      `${t.ratio}×): ${t.within2x ? 'met' : '**not met**'}; under 1 s: ${t.under1s ? 'met' : '**not met**'}.`,
    '',
    'Where the time goes while removals ran, over every reconcile (removals and the load alike): the ' +
      "controller's histograms (p50/p99 are bucket upper bounds, ms; the work queue's buckets are decades) and " +
      'its work queue sampled once a second:',
    '',
    '| scenario | queue wait mean / p50 / p99 | reconcile time mean / p50 / p99 | queue depth mean (max) | busy workers mean | longest reconcile s | ConfigMap write p50 ms | machine busy |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const s of r.scenarios) {
    const w = s.workers;
    out.push(
      `| ${s.name} | ${s.queue.meanMs} / ${fmtLe(s.queue.p50LeMs)} / ${fmtLe(s.queue.p99LeMs)} | ${s.reconcile.meanMs} / ${fmtLe(s.reconcile.p50LeMs)} / ${fmtLe(s.reconcile.p99LeMs)} | ${w.depthMean} (${w.depthMax}) | ${w.activeMean} | ${w.longestRunningMaxSeconds} | ${s.writeP50Ms} | ${Math.round(s.cpu.machineBusy * 100)}% |`,
    );
  }
  if (r.controllerErrors.length > 0) {
    out.push('', `Controller error log lines (first ${r.controllerErrors.length}): see the controller log.`);
  }
  return `${out.join('\n')}\n`;
}
