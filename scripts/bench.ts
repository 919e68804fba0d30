// Scale benchmark (run through scripts/bench.sh). For each pass, on a fresh local control plane:
//   1. cold start: N workspace ConfigMaps exist, then the controller process starts; time until every one
//      reports Ready with its specHash (watched as admin), compared with a baseline that creates the same
//      Kubernetes objects + one status write per workspace with the same client and concurrency;
//   2. no-op resync (SIGHUP): wall time until the queue is idle, controller CPU, writes per system;
//   3. churn: user added/removed and tier changed at a fixed rate; write → Ready latency percentiles;
//   4. memory after convergence; 5. API cost per workspace per system on create, resync and change.
// Pass "kubernetes" has Flyte and IAM off (the ratio to the baseline is about the Kubernetes part); pass
// "full" adds the FlyteAdmin double and moto (IAM) and reports the external calls separately.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import pino from 'pino';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { startFaultProxy } from '../harness/aws-fault-proxy.js';
import { ControllerProcess } from '../harness/controller-process.js';
import { type ControlPlane, startControlPlane } from '../harness/controlplane.js';
import { controllerNodeInvocationOf } from '../harness/deployment-manifest.js';
import { type FlyteAdminDouble, startFlyteAdminDouble } from '../harness/flyteadmin-double.js';
import { applyManifestFile, bindSourceNamespace, kubeConfigFor } from '../harness/kube.js';
import { parseMetrics, Samples } from '../harness/metrics-text.js';
import { type Moto, startMoto } from '../harness/moto.js';
import { workspaceConfigMap, workspaceDoc } from '../harness/workspaces.js';
import { CallStats } from '../src/adapters/call-stats.js';
import { HttpKubeApi, type KubeObject } from '../src/adapters/kubernetes.js';
import {
  type ControllerConfig,
  defaultConfig,
  FINALIZER,
  mergeConfig,
  STATUS_ANNOTATION,
  validateConfig,
} from '../src/config/config.js';
import { roleArnFor } from '../src/desired/iam-arn.js';
import { desiredKubernetesObjects } from '../src/desired/kubernetes.js';
import type { SystemName } from '../src/kinds/step.js';
import { KubeEventRecorder } from '../src/reconcile/events.js';
import {
  serializeStatus,
  setCondition,
  stepConditions,
  stepStatus,
  type WorkspaceStatus,
} from '../src/reconcile/status.js';
import { workspaceNames } from '../src/spec/names.js';
import { parseWorkspace } from '../src/spec/workspace.js';
import { CpuMeter, type CpuUsage, controlPlanePids, cpuBetween, processRssBytes, round } from './bench/proc.js';
import { reconcileDelta, requestDelta, SYSTEMS } from './bench/prom.js';
import { renderMarkdown } from './bench/report.js';
import type {
  ApiCost,
  ApiserverLoad,
  BaselineResult,
  ChurnResult,
  ColdStartTrial,
  MemoryReading,
  PassResult,
} from './bench/results.js';
import {
  renderSickDeps,
  runSickDeps,
  SICK_FLYTE_CALL_TIMEOUT_MS,
  type SickDepsOptions,
  type SickDepsResult,
} from './bench/sick-deps.js';
import { latencySummary, percentile } from './bench/stats.js';
import { StatusTracker } from './bench/tracker.js';
import { medianOf, type TrialKind, trialOrder } from './bench/trials.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const SRC = 'bench-src';
const BASE_SRC = 'bench-baseline-src';
const BASELINE_MANAGER = 'fwc-bench-baseline';
const MANIFESTS = ['manifests/rbac.yaml', 'manifests/workspace-roles.yaml', 'manifests/admission-policy.yaml'];
const LARGE_TIER = {
  'requests.cpu': '64',
  'requests.memory': '128Gi',
  'limits.cpu': '128',
  'limits.memory': '256Gi',
  pods: '400',
  persistentvolumeclaims: '50',
};

// ---------------------------------------------------------------------------------------------------------
// Options

export interface BenchOptions {
  n: number;
  externalN: number;
  concurrency: number;
  churnRate: number;
  churnSeconds: number;
  skipExternal: boolean;
  skipBaseline: boolean;
  /** Cold-start rounds (baseline, protocol baseline, controller), each trial on a fresh control plane. */
  rounds: number;
  changeSamples: number;
  controllerNodeArgs: string[];
  /** Seconds of kube-apiserver CPU profile to take during the baseline and the cold start (0 = none). */
  profileApiserverSeconds: number;
  /** Run the sick-dependency scenarios (scripts/bench/sick-deps.ts) instead of the passes. */
  sickDeps?: Omit<SickDepsOptions, 'n'> & { awsRequestsPerSecond: number };
  out: string;
}

function options(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: 'string', default: '100' },
      'external-n': { type: 'string' },
      concurrency: { type: 'string', default: String(defaultConfig().reconcile.concurrency) },
      'churn-rate': { type: 'string', default: '10' },
      'churn-seconds': { type: 'string', default: '30' },
      'skip-external': { type: 'boolean', default: false },
      'skip-baseline': { type: 'boolean', default: false },
      rounds: { type: 'string', default: '2' },
      'change-samples': { type: 'string', default: '100' },
      'controller-node-args': { type: 'string' },
      'profile-apiserver': { type: 'string', default: '0' },
      'sick-deps': { type: 'boolean', default: false },
      'sick-removals': { type: 'string', default: '120' },
      'sick-removal-rate': { type: 'string', default: '4' },
      'sick-load-rate': { type: 'string', default: '1' },
      'sick-warmup': { type: 'string', default: '12' },
      'sick-aws-rps': { type: 'string', default: '50' },
      out: { type: 'string', default: 'bench-results' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(`Usage: npm run bench -- [options]
  --n N               workspaces (default 100; 1000 and 5000 are the scale points)
  --concurrency C     controller reconcile.concurrency, also the baseline's (default ${defaultConfig().reconcile.concurrency})
  --churn-rate R      changes per second during churn (default 10)
  --churn-seconds S   churn duration (default 30)
  --skip-external     Kubernetes-only pass only (no Flyte double, no moto)
  --external-n M      workspaces in the full pass (default N); its cold start is bound by the IAM request budget
  --skip-baseline     no baseline (cold start reported without a ratio)
  --rounds R          cold-start rounds in the Kubernetes pass (default 2): each round is a baseline, a
                      baseline with the controller's protocol requests and a controller cold start, each on
                      a fresh control plane; rounds alternate their order (ABBA), the ratio is of medians
  --change-samples K  changes of each kind for the per-change API cost (default 100, at most N)
  --controller-node-args="ARGS"  node flags for the controller process instead of those the container
                      command of manifests/deployment.yaml ships (what runs in production, the default)
  --profile-apiserver S  take an S-second CPU profile of kube-apiserver during the baseline and during
                      the cold start (logs dir, apiserver-*.pprof; read with \`go tool pprof -top\`)
  --sick-deps         instead of the passes: N full workspaces converged, then user removals (write →
                      RoleBinding deleted) with healthy dependencies, FlyteAdmin slow (10 s per call),
                      FlyteAdmin black-holed, IAM throttling every call and healthy again, in one run
                      (scripts/bench/sick-deps.ts)
  --sick-removals K   removals per scenario (default 120)
  --sick-removal-rate R  removals per second (default 4)
  --sick-load-rate R  new workspaces per second during each scenario, to keep the sick lane full (default 1)
  --sick-warmup S     seconds of that load before the first removal (default 12)
  --sick-aws-rps R    aws.requestsPerSecond (and burst) for this scenario (default 50: N new roles at the
                      shipped 5/s would take minutes; the budget is spent inside the IAM lane either way)
  --out DIR           where reports go (default bench-results)`);
    process.exit(0);
  }
  const int = (name: string, v: string | undefined, min: number) => {
    const x = Number(v);
    if (!Number.isFinite(x) || x < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return x;
  };
  const n = int('n', values.n, 1);
  return {
    n,
    externalN: int('external-n', values['external-n'] ?? String(n), 1),
    concurrency: int('concurrency', values.concurrency, 1),
    churnRate: int('churn-rate', values['churn-rate'], 0),
    churnSeconds: int('churn-seconds', values['churn-seconds'], 0),
    skipExternal: values['skip-external'] ?? false,
    skipBaseline: values['skip-baseline'] ?? false,
    rounds: int('rounds', values.rounds, 1),
    changeSamples: int('change-samples', values['change-samples'], 0),
    profileApiserverSeconds: int('profile-apiserver', values['profile-apiserver'], 0),
    controllerNodeArgs: (values['controller-node-args'] ?? deploymentNodeFlags()).split(/\s+/).filter(Boolean),
    ...(values['sick-deps']
      ? {
          sickDeps: {
            removals: int('sick-removals', values['sick-removals'], 1),
            removalRate: int('sick-removal-rate', values['sick-removal-rate'], 0.1),
            loadRate: int('sick-load-rate', values['sick-load-rate'], 0.1),
            warmupSeconds: int('sick-warmup', values['sick-warmup'], 0),
            awsRequestsPerSecond: int('sick-aws-rps', values['sick-aws-rps'], 1),
          },
        }
      : {}),
    out: values.out ?? 'bench-results',
  };
}

/** Node's flags as manifests/deployment.yaml starts the controller (command line, plus any NODE_OPTIONS). */
function deploymentNodeFlags(): string {
  const shipped = controllerNodeInvocationOf(join(root, 'manifests/deployment.yaml'));
  return [...shipped.nodeFlags, shipped.nodeOptions ?? ''].join(' ');
}

const say = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------------------------------
// Workspaces

interface WorkspaceState {
  name: string;
  id: string;
  extraUsers: number;
  nextUser: number;
  tier: 'default' | 'large';
}

function docOf(ws: WorkspaceState): Record<string, unknown> {
  const users = [
    { user_id: 'u1', email: `owner-${ws.id}@example.com`, role: 'owner' },
    { user_id: 'u2', email: `dev-${ws.id}@example.com`, role: 'contributor' },
  ];
  for (let i = 0; i < ws.extraUsers; i++) {
    const k = ws.nextUser - ws.extraUsers + i;
    users.push({ user_id: `x${k}`, email: `user${k}-${ws.id}@example.com`, role: 'contributor' });
  }
  return workspaceDoc(ws.id, { users, tier: ws.tier });
}

function configMapOf(namespace: string, ws: WorkspaceState): KubeObject {
  return workspaceConfigMap(namespace, ws.name, docOf(ws));
}

function hashOf(cfg: ControllerConfig, ws: WorkspaceState): string {
  const parsed = parseWorkspace(JSON.stringify(docOf(ws)), cfg);
  if (!parsed.ok) throw new Error(`bench workspace ${ws.id} is invalid: ${JSON.stringify(parsed.errors)}`);
  return parsed.specHash;
}

function workspaces(prefix: string, n: number): WorkspaceState[] {
  const width = String(n).length;
  return Array.from({ length: n }, (_, i) => {
    const id = `${prefix}-${String(i).padStart(width, '0')}`;
    return { name: id, id, extraUsers: 0, nextUser: 0, tier: 'default' as const };
  });
}

/** Runs `fn` over `items` with `concurrency` workers. */
async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Environment: control plane, identities, namespaces

interface Env {
  cp: ControlPlane;
  adminKc: KubeConfig;
  controllerKc: KubeConfig;
  admin: HttpKubeApi;
  cpu: CpuMeter;
  controllerPid?: number;
}

async function startEnv(binDir: string): Promise<Env> {
  const t0 = Date.now();
  const cp = await startControlPlane({ binDir });
  say(`control plane up at ${cp.server} in ${Date.now() - t0} ms`);
  const adminKc = kubeConfigFor('admin', cp);
  const controllerKc = kubeConfigFor('controller', cp);
  const admin = new HttpKubeApi(adminKc, { fieldManager: 'bench-admin', stats: new CallStats('kubernetes') });
  for (const name of ['flyte-workspace-controller', 'workspace-platform', 'flyte', SRC, BASE_SRC]) {
    await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }
  for (const m of MANIFESTS) await applyManifestFile(adminKc, join(root, m));
  await admitBaselineManager(adminKc);
  await bindSourceNamespace(adminKc, SRC);
  await bindSourceNamespace(adminKc, BASE_SRC);
  const env: Env = { cp, adminKc, controllerKc, admin, cpu: new CpuMeter(() => ({})) };
  env.cpu = new CpuMeter(() => {
    const pids: Record<string, number> = {};
    for (const [name, pid] of controlPlanePids(cp)) pids[name] = pid;
    if (env.controllerPid) pids.controller = env.controllerPid;
    return pids;
  });
  return env;
}

/** Waits until the control plane has worked off earlier load (< 0.15 cores for 2 s), at most `maxMs`. */
async function settle(env: Env, maxMs = 30_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let quiet = 0;
  let prev = env.cpu.snapshot();
  while (Date.now() < deadline && quiet < 2) {
    await sleep(1000);
    const now = env.cpu.snapshot();
    const used = ['kube-apiserver', 'etcd', 'kube-controller-manager'].reduce(
      (a, k) => a + ((now.byName[k] ?? 0) - (prev.byName[k] ?? 0)),
      0,
    );
    quiet = used / ((now.at - prev.at) / 1000) < 0.15 ? quiet + 1 : 0;
    prev = now;
  }
}

/** GET a kube-apiserver URL as admin (its own endpoints: /metrics, /debug/pprof). */
async function adminGet(env: Env, url: string, timeoutMs?: number): Promise<Dispatcher.ResponseData> {
  const ctx = new RequestContext(url, HttpMethod.GET);
  await env.adminKc.applySecurityAuthentication(ctx);
  return undiciRequest(url, {
    method: 'GET',
    headers: ctx.getHeaders(),
    dispatcher: ctx.getDispatcher() as Dispatcher | undefined,
    ...(timeoutMs ? { bodyTimeout: timeoutMs, headersTimeout: timeoutMs } : {}),
  });
}

/**
 * A CPU profile of kube-apiserver (its /debug/pprof, as admin), started now and written to `file` when done,
 * to see where the API server spends the CPU that bounds the cold start.
 */
function profileApiserver(env: Env, seconds: number, file: string): Promise<void> {
  if (seconds <= 0) return Promise.resolve();
  const url = `${env.cp.server}/debug/pprof/profile?seconds=${seconds}`;
  return (async () => {
    const res = await adminGet(env, url, (seconds + 30) * 1000);
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`kube-apiserver profile: HTTP ${res.statusCode}`);
    writeFileSync(file, body);
    say(`kube-apiserver CPU profile (${seconds} s) in ${file}`);
  })().catch((err) => {
    say(`kube-apiserver profile failed: ${(err as Error).message}`);
  });
}

/** kube-apiserver's own /metrics, read as admin (request counts by verb and resource, watch events sent). */
async function apiserverScrape(env: Env): Promise<Samples> {
  const url = `${env.cp.server}/metrics`;
  const res = await adminGet(env, url);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /metrics of kube-apiserver: HTTP ${res.statusCode}`);
  return parseMetrics(text);
}

function apiserverLoad(before: Samples, after: Samples): ApiserverLoad {
  const requests: Record<string, number> = {};
  let totalRequests = 0;
  for (const x of after.find('apiserver_request_total')) {
    const d = x.value - before.sum('apiserver_request_total', x.labels);
    if (d <= 0) continue;
    const key = `${x.labels.verb} ${x.labels.resource}${x.labels.subresource ? `/${x.labels.subresource}` : ''}`;
    requests[key] = (requests[key] ?? 0) + d;
    totalRequests += d;
  }
  const top = Object.fromEntries(
    Object.entries(requests)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 14),
  );
  const delta = (name: string) => after.sum(name) - before.sum(name);
  return {
    requests: top,
    totalRequests,
    watchEvents: delta('apiserver_watch_events_total'),
    watchEventMiB: round(delta('apiserver_watch_events_sizes_sum') / 2 ** 20, 1),
  };
}

async function createConfigMaps(env: Env, namespace: string, list: WorkspaceState[]): Promise<number> {
  const t0 = performance.now();
  await pool(list, 16, async (ws) => {
    await env.admin.apply(configMapOf(namespace, ws), { fieldManager: 'workspace-platform' });
  });
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------------------
// Baseline: the same Kubernetes objects, created by a plain loop with the controller's client and identity

/**
 * The admission policy lets the controller's identity create ConfigMaps (the users' context ConfigMap) only
 * in namespaces labelled as managed by the controller. The baseline's objects carry its own managed-by
 * value, so the bench re-applies the shipped policy accepting both values: same identity, same policy and
 * the same checks for both loops.
 */
async function admitBaselineManager(adminKc: KubeConfig): Promise<void> {
  const shipped = await readFile(join(root, 'manifests/admission-policy.yaml'), 'utf8');
  const exact = /\] == 'flyte-workspace-controller'/g;
  const matches = shipped.match(exact)?.length ?? 0;
  if (matches === 0) throw new Error('admission-policy.yaml: no managed-by check found to extend for the baseline');
  const both = shipped.replace(exact, `] in ['flyte-workspace-controller', '${BASELINE_MANAGER}']`);
  const file = join(await mkdtemp(join(tmpdir(), 'fwc-bench-policy-')), 'admission-policy.yaml');
  await writeFile(file, both);
  await applyManifestFile(adminKc, file);
}

async function runBaseline(
  env: Env,
  cfg: ControllerConfig,
  n: number,
  concurrency: number,
  profile: { seconds: number; file: string },
  protocol = false,
): Promise<BaselineResult> {
  // Another field manager (and so another managed-by label): the controller under test neither watches nor
  // caches these objects. Same kinds, same sizes, same identity, same admission path.
  // With `protocol`, each workspace also gets what the controller's protocol adds around the objects: the
  // namespace ownership read, the finalizer + Provisioning write before creating, and the Event after. The
  // difference to the controller is then its watches and its own CPU.
  const bcfg = mergeConfig(cfg, { fieldManager: BASELINE_MANAGER });
  const list = workspaces(protocol ? 'bp' : 'bb', n);
  const events = new KubeEventRecorder(
    new HttpKubeApi(env.controllerKc, { fieldManager: BASELINE_MANAGER, stats: new CallStats('kubernetes') }),
    BASELINE_MANAGER,
    'bench-baseline',
    pino({ level: 'silent' }),
  );
  await createConfigMaps(env, BASE_SRC, list);
  await settle(env);
  const kube = new HttpKubeApi(env.controllerKc, {
    fieldManager: BASELINE_MANAGER,
    stats: new CallStats('kubernetes'),
  });
  const api0 = await apiserverScrape(env);
  const before = env.cpu.snapshot();
  const t0 = performance.now();
  const profiled = profileApiserver(env, profile.seconds, profile.file);
  await pool(list, concurrency, async (ws) => {
    const parsed = parseWorkspace(JSON.stringify(docOf(ws)), bcfg);
    if (!parsed.ok) throw new Error('invalid baseline workspace');
    const names = workspaceNames(bcfg, ws.id);
    const source = `${BASE_SRC}/${ws.name}`;
    const objects = desiredKubernetesObjects({
      cfg: bcfg,
      spec: parsed.spec,
      names,
      source,
      roleArn: roleArnFor(bcfg, names.iamRole),
    });
    if (protocol) {
      await kube.get({ apiVersion: 'v1', kind: 'Namespace', name: names.namespaces[0] as string });
      await kube.apply(statusBody(ws, parsed.specHash, names.namespaces, 'Provisioning'));
    }
    for (const obj of objects) await kube.apply(obj);
    const done = await kube.apply(statusBody(ws, parsed.specHash, names.namespaces));
    if (protocol) await events.emit(done, 'Normal', 'Provisioned', `workspace ${ws.id} ready (6 change(s))`);
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuBetween(before, env.cpu.snapshot());
  const api1 = await apiserverScrape(env);
  await profiled;
  return {
    n,
    concurrency,
    seconds: round(seconds, 2),
    workspacesPerSecond: round(n / seconds, 1),
    writesPerWorkspace: round(kube.stats.writes / n, 2),
    cpu,
    apiserver: apiserverLoad(api0, api1),
  };
}

/** A status annotation shaped like the controller's Ready status for a Kubernetes-only workspace. */
function statusBody(
  ws: WorkspaceState,
  specHash: string,
  namespaces: string[],
  phase: 'Ready' | 'Provisioning' = 'Ready',
): KubeObject {
  const now = new Date().toISOString();
  const steps = {
    kubernetes: stepStatus(
      undefined,
      {
        state: 'Ready',
        reason: 'Applied',
        message: 'applied 6 change(s)',
        writes: 6,
        result: { namespaces, serviceAccount: `flyte-${ws.id}-runner`, roleBindings: 2 },
      },
      now,
    ),
  };
  const status: WorkspaceStatus = {
    phase,
    workspaceId: ws.id,
    specHash,
    owner: true,
    conditions: [
      setCondition(
        undefined,
        { type: 'Ready', status: 'True', reason: 'Provisioned', message: 'workspace provisioned' },
        now,
      ),
      ...stepConditions(undefined, steps, now),
    ],
    steps,
    observedSpecHash: specHash,
    namespaces,
  };
  if (phase === 'Provisioning') {
    status.conditions = [
      setCondition(
        undefined,
        { type: 'Ready', status: 'False', reason: 'Provisioning', message: 'provisioning started' },
        now,
      ),
    ];
    status.steps = {};
    delete status.observedSpecHash;
    delete status.namespaces;
  }
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: ws.name,
      namespace: BASE_SRC,
      annotations: { [STATUS_ANNOTATION]: serializeStatus(status) },
      finalizers: [FINALIZER],
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The controller process

/** The controller under test, with what the benchmark reads off its log as the lines arrive. */
type BenchController = ControllerProcess & { syncedAt: number; errors: string[] };

/** The built controller with the heap flags that ship and a container's bare environment. */
function startController(cfgFile: string, kubeconfig: string, logFile: string, nodeArgs: string[]): BenchController {
  const proc = ControllerProcess.spawn({
    name: 'bench',
    config: cfgFile,
    kubeconfig,
    logFile,
    nodeArgs,
    baseEnv: 'minimal',
    watchdog: true,
    keepLines: 1000,
    onLog: (rec, line) => {
      // Lines arrive asynchronously, after `bench` below is initialised.
      if (rec.msg === SYNCED_MESSAGE && bench.syncedAt === 0) bench.syncedAt = performance.now();
      if ((rec.level === 'error' || rec.level === 50) && bench.errors.length < 20)
        bench.errors.push(line.slice(0, 400));
    },
  });
  const bench: BenchController = Object.assign(proc, { syncedAt: 0, errors: [] as string[] });
  return bench;
}

const SYNCED_MESSAGE = 'caches synced; reconciling';

/** Resolves once the controller synced its caches and started reconciling. */
async function whenReady(c: ControllerProcess, timeoutMs: number): Promise<void> {
  await c.started(timeoutMs);
  await c.waitForLog((l) => l.msg === SYNCED_MESSAGE, timeoutMs);
}

const QUEUE = { name: 'workspace' };
/** V8 shrinks its heap (memory reducer) some seconds after allocation stops; converged memory is read after this. */
const IDLE_SETTLE_MS = 30_000;

/**
 * Waits until the controller's queue is idle — workqueue_depth 0 and no active worker — on two scrapes in a
 * row, after at least `minAdds` adds since `base`. Returns the first idle scrape of that pair.
 */
async function waitQueueIdle(
  c: ControllerProcess,
  base: Samples,
  minAdds: number,
  timeoutMs: number,
): Promise<Samples> {
  const deadline = performance.now() + timeoutMs;
  let candidate: Samples | undefined;
  let lastAdds = 0;
  let addsStuckSince = performance.now();
  while (performance.now() < deadline) {
    const s = await c.scrape();
    const adds = s.sum('workqueue_adds_total', QUEUE) - base.sum('workqueue_adds_total', QUEUE);
    if (adds !== lastAdds) {
      lastAdds = adds;
      addsStuckSince = s.at;
    }
    const idle =
      s.sum('workqueue_depth', QUEUE) === 0 &&
      s.sum('controller_runtime_active_workers') === 0 &&
      // Coalesced adds are not counted; accept fewer once nothing was added for 2 s.
      (adds >= minAdds || s.at - addsStuckSince > 2000);
    if (idle) {
      if (candidate) return candidate;
      candidate = s;
    } else candidate = undefined;
    await sleep(100);
  }
  throw new Error('controller queue did not become idle in time');
}

// ---------------------------------------------------------------------------------------------------------
// One pass

interface PassContext {
  opts: BenchOptions;
  binDir: string;
  logDir: string;
  name: 'kubernetes' | 'full';
}

function costOf(before: Samples, after: Samples, units: number): ApiCost {
  const totals = requestDelta(before, after);
  const perUnit = {} as ApiCost['perUnit'];
  for (const s of SYSTEMS) {
    perUnit[s] = {
      reads: round((totals[s]?.reads ?? 0) / Math.max(1, units), 2),
      writes: round((totals[s]?.writes ?? 0) / Math.max(1, units), 2),
    };
  }
  return { perUnit, totals, units, reconciles: reconcileDelta(before, after) };
}

function memoryOf(s: Samples, pid: number | undefined): MemoryReading {
  const rss = s.sum('process_resident_memory_bytes') || (pid ? processRssBytes(pid) : 0);
  return {
    rssMiB: round(rss / 2 ** 20, 1),
    peakRssMiB: round((pid ? processRssBytes(pid, 'VmHWM') : 0) / 2 ** 20, 1),
    heapUsedMiB: round(s.sum('nodejs_heap_size_used_bytes') / 2 ** 20, 1),
    heapTotalMiB: round(s.sum('nodejs_heap_size_total_bytes') / 2 ** 20, 1),
    externalMiB: round(s.sum('nodejs_external_memory_bytes') / 2 ** 20, 1),
    spaces: Object.fromEntries(
      s
        .find('nodejs_heap_space_size_total_bytes')
        .map((x) => [
          x.labels.space as string,
          [
            round(x.value / 2 ** 20, 1),
            round(s.sum('nodejs_heap_space_size_used_bytes', { space: x.labels.space as string }) / 2 ** 20, 1),
          ],
        ]),
    ),
  };
}

function trialOf(roundIndex: number, kind: TrialKind, n: number, seconds: number, cpu: CpuUsage): ColdStartTrial {
  return {
    round: roundIndex,
    kind,
    seconds: round(seconds, 2),
    workspacesPerSecond: round(n / seconds, 1),
    cpuMsPerWorkspace: round((ourCpu(cpu) / n) * 1000, 1),
  };
}

interface ControllerColdStart {
  controller: BenchController;
  tracker: StatusTracker;
  coldStart: PassResult['coldStart'];
}

/** Starts the controller over the N workspace ConfigMaps of `list` and measures until all are Ready. */
async function controllerColdStart(
  env: Env,
  ctx: PassContext,
  cfg: ControllerConfig,
  cfgFile: string,
  list: WorkspaceState[],
  logName: string,
  cleanups: (() => Promise<unknown>)[],
  profileFile?: string,
): Promise<ControllerColdStart> {
  const { opts } = ctx;
  const external = ctx.name === 'full';
  const n = list.length;
  const tracker = new StatusTracker(env.adminKc, SRC);
  await tracker.start();
  cleanups.push(() => tracker.stop());
  tracker.expectAll(new Map(list.map((ws) => [ws.name, hashOf(cfg, ws)])));
  await settle(env);

  const api0 = await apiserverScrape(env);
  const cpu0 = env.cpu.snapshot();
  const controller = startController(
    cfgFile,
    env.cp.kubeconfigPath('controller'),
    join(ctx.logDir, `${logName}.log`),
    opts.controllerNodeArgs,
  );
  env.controllerPid = controller.child.pid;
  cleanups.push(() => controller.stop(30_000));
  await whenReady(controller, 120_000);
  const profiled = profileFile ? profileApiserver(env, opts.profileApiserverSeconds, profileFile) : undefined;
  const base = await controller.scrape(); // counters start at zero; this scrape is only a label template
  const zero = parseZero(base);
  const coldTimeout = 120_000 + n * (external ? 1500 : 200);
  await tracker.waitAllReady(coldTimeout);
  const tReady = performance.now();
  const cpuReady = env.cpu.snapshot();
  const apiReady = await apiserverScrape(env);
  const idle = await waitQueueIdle(controller, zero, n, 120_000);
  await profiled;
  const secondsFromSpawn = (tReady - controller.startedAt) / 1000;
  const secondsFromSynced = (tReady - controller.syncedAt) / 1000;
  const readyTimes = [...tracker.readyAt.values()].map((t) => (t - controller.startedAt) / 1000).sort((a, b) => a - b);
  const coldStart: PassResult['coldStart'] = {
    secondsFromSpawn: round(secondsFromSpawn, 2),
    secondsFromSynced: round(secondsFromSynced, 2),
    cacheSyncSeconds: round((controller.syncedAt - controller.startedAt) / 1000, 2),
    workspacesPerSecond: round(n / secondsFromSpawn, 1),
    workspacesPerSecondFromSynced: round(n / secondsFromSynced, 1),
    halfReadySeconds: round(readyTimes[Math.floor(n / 2)] ?? 0, 2),
    ninetyReadySeconds: round(readyTimes[Math.floor(n * 0.9)] ?? 0, 2),
    secondsToIdle: round((idle.at - controller.startedAt) / 1000, 2),
    controllerCpuSeconds: round(idle.sum('process_cpu_seconds_total'), 2),
    controllerGcSeconds: round(idle.sum('nodejs_gc_duration_seconds_sum'), 2),
    cpu: cpuBetween(cpu0, cpuReady),
    apiserver: apiserverLoad(api0, apiReady),
    cost: costOf(zero, idle, n),
  };
  return { controller, tracker, coldStart };
}

/**
 * One cold-start trial on a control plane of its own holding the same N workspace ConfigMaps, torn down
 * after: no trial runs on a cluster grown by an earlier one (a later trial on a shared cluster ran up to
 * 2× slower for the same requests).
 */
async function isolatedTrial(
  ctx: PassContext,
  cfg: ControllerConfig,
  cfgFile: string,
  n: number,
  round: number,
  kind: TrialKind,
  profile: boolean,
): Promise<{ trial: ColdStartTrial; baseline?: BaselineResult }> {
  say(`round ${round + 1}: ${kind} on a fresh control plane`);
  const env = await startEnv(ctx.binDir);
  const cleanups: (() => Promise<unknown>)[] = [() => env.cp.stop()];
  try {
    const list = workspaces('bw', n);
    await createConfigMaps(env, SRC, list);
    if (kind === 'controller') {
      const logName = `controller-${ctx.name}-round${round + 1}`;
      const { coldStart } = await controllerColdStart(env, ctx, cfg, cfgFile, list, logName, cleanups);
      say(`round ${round + 1}: controller ${n} workspaces in ${coldStart.secondsFromSpawn} s from spawn`);
      return { trial: trialOf(round, kind, n, coldStart.secondsFromSpawn, coldStart.cpu) };
    }
    await settle(env);
    const file = join(ctx.logDir, `apiserver-baseline-${ctx.name}.pprof`);
    const seconds = profile ? ctx.opts.profileApiserverSeconds : 0;
    const b = await runBaseline(env, cfg, n, ctx.opts.concurrency, { seconds, file }, kind === 'protocol');
    say(`round ${round + 1}: ${kind} ${n} workspaces in ${b.seconds} s (${b.workspacesPerSecond}/s)`);
    return { trial: trialOf(round, kind, n, b.seconds, b.cpu), baseline: b };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup: ${(e as Error).message}`));
  }
}

/** Controller settings every benchmark controller shares; each pass adds its Flyte and AWS settings. */
function benchOverrides(opts: BenchOptions) {
  return {
    sourceNamespaces: [SRC],
    leaderElection: { enabled: false },
    server: { metricsPort: 0, healthPort: 0, bindAddress: '127.0.0.1' },
    // Long resync period: the periodic resync is not under test (SIGHUP is). The drift-check intervals
    // (IAM 1 h, Flyte 30 min by default) are longer than a pass, so the resync measures the no-op path.
    reconcile: { concurrency: opts.concurrency, resyncPeriodSeconds: 3600 },
    tiers: { large: LARGE_TIER },
  };
}

async function runPass(ctx: PassContext): Promise<PassResult> {
  const { opts, name } = ctx;
  const external = name === 'full';
  const n = external ? opts.externalN : opts.n;
  const cleanups: (() => Promise<unknown>)[] = [];
  say(`pass "${name}": N=${n}, concurrency ${opts.concurrency}${external ? ', with FlyteAdmin double and moto' : ''}`);
  try {
    let double: FlyteAdminDouble | undefined;
    let moto: Moto | undefined;
    if (external) {
      double = await startFlyteAdminDouble();
      cleanups.push(() => (double as FlyteAdminDouble).close());
      moto = await startMoto();
      cleanups.push(() => (moto as Moto).stop());
    }
    const overrides = {
      ...benchOverrides(opts),
      flyte: double ? { enabled: true, endpoint: double.url, insecure: true } : { enabled: false },
      aws: moto ? { enabled: true, endpoint: moto.endpoint } : { enabled: false },
      logLevel: 'info',
    };
    const cfg = mergeConfig(defaultConfig(), overrides);
    validateConfig(cfg);
    const cfgFile = join(ctx.logDir, `config-${name}.json`);
    writeFileSync(cfgFile, JSON.stringify(overrides, null, 2));

    // ---- 1. cold start: the trials before the main one, each on a fresh control plane of its own
    const withBaseline = !external && !opts.skipBaseline;
    const order = withBaseline ? trialOrder(opts.rounds) : [{ round: 0, kind: 'controller' as const }];
    const trials: ColdStartTrial[] = [];
    let baseline: BaselineResult | undefined;
    let protocolBaseline: BaselineResult | undefined;
    for (const t of order.slice(0, -1)) {
      const last = t.round === opts.rounds - 1;
      const r = await isolatedTrial(ctx, cfg, cfgFile, n, t.round, t.kind, last && t.kind === 'baseline');
      trials.push(r.trial);
      if (last && t.kind === 'baseline') baseline = r.baseline;
      if (last && t.kind === 'protocol') protocolBaseline = r.baseline;
    }

    // The main controller trial: the pass goes on with this control plane and this controller process.
    const env = await startEnv(ctx.binDir);
    cleanups.push(() => env.cp.stop());
    const list = workspaces('bw', n);
    const createConfigMapsSeconds = await createConfigMaps(env, SRC, list);
    say(`created ${n} workspace ConfigMaps in ${createConfigMapsSeconds.toFixed(1)} s`);
    const { controller, tracker, coldStart } = await controllerColdStart(
      env,
      ctx,
      cfg,
      cfgFile,
      list,
      `controller-${name}`,
      cleanups,
      join(ctx.logDir, `apiserver-controller-${name}.pprof`),
    );
    trials.push(trialOf(order.at(-1)?.round ?? 0, 'controller', n, coldStart.secondsFromSpawn, coldStart.cpu));
    if (baseline) {
      const median = (kind: TrialKind, of: (t: ColdStartTrial) => number) =>
        medianOf(trials.filter((t) => t.kind === kind).map(of));
      const baselineRate = median('baseline', (t) => t.workspacesPerSecond);
      coldStart.ratioToBaseline = round(median('controller', (t) => t.workspacesPerSecond) / baselineRate, 2);
      coldStart.ratioToBaselineFromSynced = round(coldStart.workspacesPerSecondFromSynced / baselineRate, 2);
      coldStart.cpuCostRatioToBaseline = round(
        median('baseline', (t) => t.cpuMsPerWorkspace) / median('controller', (t) => t.cpuMsPerWorkspace),
        2,
      );
      const perRound = [...new Set(trials.map((t) => t.round))].map((r) => {
        const of = (kind: TrialKind) => trials.find((t) => t.round === r && t.kind === kind)?.workspacesPerSecond ?? 0;
        return of('controller') / of('baseline');
      });
      coldStart.ratioRange = [round(Math.min(...perRound), 2), round(Math.max(...perRound), 2)];
    }
    say(
      `cold start: ${n} Ready in ${coldStart.secondsFromSpawn} s from spawn (${coldStart.workspacesPerSecond}/s${
        baseline ? `; median of ${opts.rounds} round(s): ${coldStart.ratioToBaseline} of baseline` : ''
      })`,
    );

    // ---- 5. memory after convergence
    await sleep(3000);
    const memoryAfterColdStart = memoryOf(await controller.scrape(), env.controllerPid);
    await sleep(IDLE_SETTLE_MS);
    const memoryConverged = memoryOf(await controller.scrape(), env.controllerPid);
    say(
      `memory after convergence: RSS ${memoryAfterColdStart.rssMiB} MiB (+3 s), ${memoryConverged.rssMiB} MiB (idle ${IDLE_SETTLE_MS / 1000} s), peak ${memoryConverged.peakRssMiB} MiB; heap used ${memoryConverged.heapUsedMiB} MiB`,
    );

    // ---- 2. no-op resync
    await settle(env, 15_000);
    const r0 = await controller.scrape();
    const rc0 = env.cpu.snapshot();
    controller.child.kill('SIGHUP');
    const tHup = performance.now();
    const r1 = await waitQueueIdle(controller, r0, n, 300_000);
    const rcost = costOf(r0, r1, n);
    const resync: PassResult['resync'] = {
      wallSeconds: round((r1.at - tHup) / 1000, 2),
      controllerCpuSeconds: round(r1.sum('process_cpu_seconds_total') - r0.sum('process_cpu_seconds_total'), 2),
      controllerGcSeconds: round(
        r1.sum('nodejs_gc_duration_seconds_sum') - r0.sum('nodejs_gc_duration_seconds_sum'),
        2,
      ),
      writes: Object.fromEntries(SYSTEMS.map((s) => [s, rcost.totals[s]?.writes ?? 0])) as Record<SystemName, number>,
      cpu: cpuBetween(rc0, env.cpu.snapshot()),
      cost: rcost,
    };
    say(
      `resync: idle after ${resync.wallSeconds} s, controller CPU ${resync.controllerCpuSeconds} s, writes ${JSON.stringify(resync.writes)}`,
    );

    // ---- 4. churn
    let churn: ChurnResult | undefined;
    if (opts.churnRate > 0 && opts.churnSeconds > 0) {
      await settle(env, 15_000);
      churn = await runChurn(env, controller, tracker, cfg, list, opts.churnRate, opts.churnSeconds);
      say(
        `churn: ${churn.completed}/${churn.issued} changes, p50 ${churn.p50Ms} ms, p95 ${churn.p95Ms} ms, p99 ${churn.p99Ms} ms`,
      );
    }

    // ---- 6. per-change API cost
    const changeCost: PassResult['changeCost'] = {};
    const samples = Math.min(opts.changeSamples, n);
    if (samples > 0) {
      for (const kind of ['add-user', 'remove-user', 'tier'] as const) {
        await settle(env, 15_000);
        changeCost[kind] = await measureChange(env, controller, tracker, cfg, list, kind, samples);
        say(`change cost ${kind}: ${JSON.stringify(changeCost[kind].perUnit)}`);
      }
    }

    const end = await controller.scrape();
    const memoryAtEnd = memoryOf(end, env.controllerPid); // reads /proc: before the process stops

    // ---- 7. restart: a new process replays every converged workspace (rollout, failover)
    await controller.stop(30_000);
    await settle(env, 15_000);
    const restarted = startController(
      cfgFile,
      env.cp.kubeconfigPath('controller'),
      join(ctx.logDir, `controller-${name}-restart.log`),
      opts.controllerNodeArgs,
    );
    cleanups.push(() => restarted.stop(30_000));
    await whenReady(restarted, 120_000);
    const restartZero = parseZero(await restarted.scrape());
    const restartIdle = await waitQueueIdle(restarted, restartZero, n, 600_000 + n * (external ? 1500 : 50));
    const restart: PassResult['restart'] = {
      secondsFromSpawn: round((restartIdle.at - restarted.startedAt) / 1000, 2),
      cacheSyncSeconds: round((restarted.syncedAt - restarted.startedAt) / 1000, 2),
      controllerCpuSeconds: round(restartIdle.sum('process_cpu_seconds_total'), 2),
      cost: costOf(restartZero, restartIdle, n),
    };
    say(
      `restart: queue idle ${restart.secondsFromSpawn} s after spawn, controller CPU ${restart.controllerCpuSeconds} s, ` +
        `per workspace ${JSON.stringify(restart.cost.perUnit)}`,
    );
    await restarted.stop(30_000);

    const result: PassResult = {
      name,
      n,
      concurrency: opts.concurrency,
      external,
      createConfigMapsSeconds: round(createConfigMapsSeconds, 1),
      coldStart,
      memoryAfterColdStart,
      memoryConverged,
      resync,
      changeCost,
      restart,
      memoryAtEnd,
      controllerErrors: controller.errors,
    };
    if (baseline) result.baseline = baseline;
    if (protocolBaseline) result.protocolBaseline = protocolBaseline;
    if (trials.length > 1) result.coldStartTrials = trials;
    if (churn) result.churn = churn;
    if (double) {
      const c = double.calls();
      result.flyteDouble = { reads: c.reads, writes: c.writes };
    }
    return result;
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup: ${(e as Error).message}`));
  }
}

/** CPU seconds used by the processes of the benchmark setup (control plane, controller, benchmark). */
function ourCpu(c: CpuUsage): number {
  return Object.values(c.seconds).reduce((a, b) => a + b, 0);
}

/** A scrape with every counter at zero (the controller process starts from zero). */
function parseZero(s: Samples): Samples {
  return new Samples(
    s.all.map((x) => ({ ...x, value: 0 })),
    s.types,
    s.at,
  );
}

type ChangeKind = 'add-user' | 'remove-user' | 'tier';

function applyChange(ws: WorkspaceState, kind: ChangeKind): ChangeKind {
  if (kind === 'remove-user' && ws.extraUsers === 0) kind = 'add-user';
  if (kind === 'add-user') {
    ws.extraUsers++;
    ws.nextUser++;
  } else if (kind === 'remove-user') {
    ws.extraUsers--;
  } else {
    ws.tier = ws.tier === 'default' ? 'large' : 'default';
  }
  return kind;
}

/** Writes one change; resolves with the write → Ready latency (ms), or undefined on timeout. */
async function change(
  env: Env,
  tracker: StatusTracker,
  cfg: ControllerConfig,
  ws: WorkspaceState,
  kind: ChangeKind,
  timeoutMs: number,
): Promise<{ latencyMs?: number; writeMs: number; kind: ChangeKind }> {
  const done = applyChange(ws, kind);
  const hash = hashOf(cfg, ws);
  const t0 = performance.now();
  const seen = tracker.expect(ws.name, hash, t0);
  await env.admin.apply(configMapOf(SRC, ws), { fieldManager: 'workspace-platform' });
  const writeMs = performance.now() - t0;
  const at = await Promise.race([seen, sleep(timeoutMs).then(() => undefined)]);
  if (at === undefined) tracker.cancel(ws.name);
  return { latencyMs: at === undefined ? undefined : at - t0, writeMs, kind: done };
}

async function runChurn(
  env: Env,
  controller: ControllerProcess,
  tracker: StatusTracker,
  cfg: ControllerConfig,
  list: WorkspaceState[],
  rate: number,
  seconds: number,
): Promise<ChurnResult> {
  const kinds: ChangeKind[] = ['add-user', 'remove-user', 'tier'];
  const total = Math.round(rate * seconds);
  const inFlight = new Set<string>();
  const pending: Promise<{ latencyMs?: number; writeMs: number; kind: ChangeKind }>[] = [];
  const s0 = await controller.scrape();
  const c0 = env.cpu.snapshot();
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    let ws = list[Math.floor(Math.random() * list.length)] as WorkspaceState;
    for (let tries = 0; inFlight.has(ws.name) && tries < 100; tries++) {
      ws = list[Math.floor(Math.random() * list.length)] as WorkspaceState;
    }
    if (inFlight.has(ws.name)) continue;
    inFlight.add(ws.name);
    const w = ws;
    pending.push(
      change(env, tracker, cfg, w, kinds[i % kinds.length] as ChangeKind, 30_000).finally(() =>
        inFlight.delete(w.name),
      ),
    );
  }
  const results = await Promise.all(pending);
  const cpu = cpuBetween(c0, env.cpu.snapshot());
  const s1 = await waitQueueIdle(controller, s0, 0, 120_000);
  const lat = results
    .map((r) => r.latencyMs)
    .filter((x): x is number => x !== undefined)
    .sort((a, b) => a - b);
  const writes = results.map((r) => r.writeMs).sort((a, b) => a - b);
  const byKind: Record<string, number> = {};
  for (const r of results) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
  return {
    rate,
    seconds,
    issued: results.length,
    completed: lat.length,
    timedOut: results.length - lat.length,
    byKind,
    ...latencySummary(lat),
    writeMsP50: percentile(writes, 50),
    cpu,
    cost: costOf(s0, s1, results.length),
  };
}

/** `samples` changes of one kind on distinct workspaces (10/s), then the calls they caused, per change. */
async function measureChange(
  env: Env,
  controller: ControllerProcess,
  tracker: StatusTracker,
  cfg: ControllerConfig,
  list: WorkspaceState[],
  kind: ChangeKind,
  samples: number,
): Promise<ApiCost & { p50Ms: number; p99Ms: number }> {
  // For remove-user, pick workspaces that have an extra user (the add-user round gave `samples` of them).
  const eligible = kind === 'remove-user' ? list.filter((w) => w.extraUsers > 0) : list;
  const chosen = [...eligible].sort(() => Math.random() - 0.5).slice(0, samples);
  const s0 = await controller.scrape();
  const pending: Promise<{ latencyMs?: number }>[] = [];
  const t0 = performance.now();
  for (const [i, ws] of chosen.entries()) {
    const wait = t0 + i * 100 - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(change(env, tracker, cfg, ws, kind, 30_000));
  }
  const lat = (await Promise.all(pending))
    .map((r) => r.latencyMs)
    .filter((x): x is number => x !== undefined)
    .sort((a, b) => a - b);
  const s1 = await waitQueueIdle(controller, s0, 0, 120_000);
  return { ...costOf(s0, s1, chosen.length), p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99) };
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const binDir = process.env.KUBEBUILDER_ASSETS;
  if (!binDir) throw new Error('KUBEBUILDER_ASSETS is not set: run through scripts/bench.sh');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const outDir = join(root, opts.out);
  const logDir = join(outDir, `${stamp}-logs`);
  mkdirSync(logDir, { recursive: true });
  const git = (args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
  const commit = git(['rev-parse', '--short=12', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--untracked-files=no', 'src']) !== '';
  const meta = {
    date: new Date().toISOString(),
    commit,
    srcDirty: dirty,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memGiB: round(totalmem() / 2 ** 30, 0),
    options: opts,
  };
  say(`commit ${commit}${dirty ? ' (src has uncommitted changes)' : ''}; logs in ${logDir}`);
  const base = join(outDir, stamp);
  if (opts.sickDeps) {
    const sickDeps = await sickDepsPass(opts, binDir, logDir);
    const report = { meta, sickDeps };
    const md =
      `# Controller benchmark, ${meta.date.slice(0, 16).replace('T', ' ')} UTC\n\nCommit \`${commit}\`${dirty ? ' (with uncommitted changes in src/)' : ''}, ` +
      `Node ${meta.node}, ${meta.cpus} × ${meta.cpuModel}, ${meta.memGiB} GiB. Options: \`${JSON.stringify(opts)}\`.\n\n${renderSickDeps(sickDeps)}`;
    writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(`${base}.md`, md);
    say(`wrote ${base}.md and ${base}.json`);
    process.stdout.write(md);
    return;
  }
  const passes: PassResult[] = [];
  passes.push(await runPass({ opts, binDir, logDir, name: 'kubernetes' }));
  if (!opts.skipExternal) passes.push(await runPass({ opts, binDir, logDir, name: 'full' }));
  const report = { meta, passes };
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, renderMarkdown(report));
  say(`wrote ${base}.md and ${base}.json`);
  process.stdout.write(renderMarkdown(report));
}

/**
 * The sick-dependency scenarios on a control plane of their own: FlyteAdmin double, moto behind the AWS
 * fault proxy, one controller process with the shipped lane widths and worker count.
 */
async function sickDepsPass(opts: BenchOptions, binDir: string, logDir: string): Promise<SickDepsResult> {
  const sick = opts.sickDeps as NonNullable<BenchOptions['sickDeps']>;
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const double = await startFlyteAdminDouble();
    cleanups.push(() => double.close());
    const moto = await startMoto();
    cleanups.push(() => moto.stop());
    const awsProxy = await startFaultProxy(moto.endpoint);
    cleanups.push(() => awsProxy.stop());
    const env = await startEnv(binDir);
    cleanups.push(() => env.cp.stop());
    const overrides = {
      ...benchOverrides(opts),
      flyte: { enabled: true, endpoint: double.url, insecure: true, callTimeoutMs: SICK_FLYTE_CALL_TIMEOUT_MS },
      aws: {
        enabled: true,
        endpoint: awsProxy.endpoint,
        requestsPerSecond: sick.awsRequestsPerSecond,
        requestBurst: sick.awsRequestsPerSecond,
      },
      logLevel: 'info',
    };
    const cfg = mergeConfig(defaultConfig(), overrides);
    validateConfig(cfg);
    const cfgFile = join(logDir, 'config-sick-deps.json');
    writeFileSync(cfgFile, JSON.stringify(overrides, null, 2));
    return await runSickDeps(
      {
        env,
        cfg,
        sourceNamespace: SRC,
        double,
        awsProxy,
        workspaces,
        configMapOf,
        hashOf,
        createConfigMaps: (namespace, list) => createConfigMaps(env, namespace, list as WorkspaceState[]),
        startController: (logName) => {
          const c = startController(
            cfgFile,
            env.cp.kubeconfigPath('controller'),
            join(logDir, `${logName}.log`),
            opts.controllerNodeArgs,
          );
          env.controllerPid = c.child.pid;
          return {
            scrape: () => c.scrape(),
            stop: () => c.stop(30_000),
            whenReady: (ms) => whenReady(c, ms),
            startedAt: c.startedAt,
            errors: c.errors,
          };
        },
        settle: (maxMs) => settle(env, maxMs),
        say,
      },
      {
        n: opts.n,
        removals: sick.removals,
        removalRate: sick.removalRate,
        loadRate: sick.loadRate,
        warmupSeconds: sick.warmupSeconds,
      },
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => say(`cleanup: ${(e as Error).message}`));
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    say(`FAILED: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
