// Fault-injection support for the reliability suites (test/integration/faults-*.test.ts, hostile-input,
// tenant-safety):
//
//   * KubeProxy: a plain-HTTP proxy between the controller and kube-apiserver that can kill, stall (black-hole)
//     or expire (410) watch streams, refuse every connection, and logs every request with a timestamp;
//   * FaultEnv: the real controller in-process under its own RBAC identity, with the FlyteAdmin double and
//     moto (behind the AWS fault proxy) enabled, a source namespace and an IAM role path of its own, and a
//     controller that can be stopped and started again against the same state;
//   * world checks: compare what exists in Kubernetes, moto and the double with what a workspace document
//     asks for, returning a list of problems (lost / drifted / leaked / wrongly kept) instead of throwing,
//     so tests can count and report them;
//   * own control planes for tests that restart kube-apiserver, so parallel test files are not disturbed.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  GetRoleCommand,
  IAMClient,
  ListRolePoliciesCommand,
  ListRolesCommand,
  ListRoleTagsCommand,
} from '@aws-sdk/client-iam';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { inject } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../../harness/aws-fault-proxy.js';
import {
  type ControlPlane,
  type Identity,
  type KubeConnection,
  startControlPlane,
} from '../../harness/controlplane.js';
import { type FlyteAdminDouble, startFlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { credentialsOf } from '../../harness/kube.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { SdkIamApi } from '../../src/adapters/iam.js';
import { HttpKubeApi, type KubeObject, MANAGED_KINDS, refOf } from '../../src/adapters/kubernetes.js';
import {
  type ControllerConfig,
  defaultConfig,
  MANAGED_BY_LABEL,
  mergeConfig,
  validateConfig,
  WORKSPACE_ID_LABEL,
} from '../../src/config/config.js';
import { WorkspaceController } from '../../src/controller/controller.js';
import type { ExternalClients } from '../../src/controller/steps.js';
import { desiredFlyteState, ownsProject } from '../../src/desired/flyte.js';
import { desiredIamRole, IAM_TAG_WORKSPACE_ID } from '../../src/desired/iam.js';
import { roleArnFor } from '../../src/desired/iam-arn.js';
import { desiredKubernetesObjects, workspaceSelector } from '../../src/desired/kubernetes.js';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { containsDesired } from '../../src/reconcile/diff.js';
import { workspaceNames } from '../../src/spec/names.js';
import { parseWorkspace } from '../../src/spec/workspace.js';
import type { WatchTuning } from '../../src/watch/sources.js';
import type { Fixture } from './controller-fixture.js';
import { applyManifestFile, bindSourceNamespace, kubeConfigFor, uniqueName, waitFor } from './kube.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
export const AWS_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

// =========================================================================================================
// Kube proxy

export interface ProxiedRequest {
  method: string;
  path: string;
  watch: boolean;
  at: number;
  status?: number;
}

interface OpenWatch {
  path: string;
  res: ServerResponse;
  upstream?: IncomingMessage;
  stalled: boolean;
}

type PathMatch = (path: string) => boolean;
const any: PathMatch = () => true;

export interface KubeProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** A KubeConfig for `identity` that goes through this proxy (plain HTTP on loopback). */
  kubeConfig(identity: Identity): KubeConfig;
  /** Writes a kubeconfig file for `identity` through this proxy; returns its path. */
  kubeconfigFile(identity: Identity, dir: string): string;
  /** Resets the connection of every open watch stream whose path matches; returns how many. */
  killWatches(match?: PathMatch): number;
  /**
   * Black-holes matching watch streams: open ones and, while `on`, new ones too. A stalled stream never
   * delivers another byte, not even the server's end of stream (a half-dead connection), so only the
   * client's own stall detection can get it out. Returns how many open streams were stalled.
   */
  stallWatches(on: boolean, match?: PathMatch): number;
  /**
   * Delivers every byte of matching watch streams `ms` later than it arrives (order kept), so watch events
   * reach the controller after the responses to the writes that caused them. 0 turns it off.
   */
  delayWatches(ms: number, match?: PathMatch): void;
  /** The next `n` matching watch requests get 410 Expired: an ERROR event (what the apiserver does) or HTTP 410. */
  expireWatches(n: number, opts?: { match?: PathMatch; how?: 'event' | 'http' }): void;
  /** While down, every connection is reset at once (an unreachable apiserver). */
  setDown(down: boolean): void;
  openWatches(match?: PathMatch): number;
  /** Every request seen, in arrival order. */
  requests(): ProxiedRequest[];
  /** Non-GET requests (writes), optionally since a time. */
  writes(since?: number): ProxiedRequest[];
  counts(): { watches: number; lists: number; writes: number; expired: number; killed: number; stalled: number };
  close(): Promise<void>;
}

const isWatchRequest = (u: URL) =>
  u.searchParams.get('watch') === 'true' || u.searchParams.get('watch') === '1' || u.pathname.includes('/watch/');

export async function startKubeProxy(conn: KubeConnection): Promise<KubeProxy> {
  const upstream = new URL(conn.server);
  const ca = Buffer.from(conn.caData, 'base64').toString('utf8');
  const agent = new HttpsAgent({ ca, keepAlive: true });
  const watches = new Set<OpenWatch>();
  const log: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let stallMatch: PathMatch | undefined;
  let delay: { ms: number; match: PathMatch } | undefined;
  const expiries: { left: number; match: PathMatch; how: 'event' | 'http' }[] = [];
  let down = false;
  const n = { watches: 0, lists: 0, writes: 0, expired: 0, killed: 0, stalled: 0 };

  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://proxy');
    const watch = isWatchRequest(u);
    const entry: ProxiedRequest = { method: req.method ?? 'GET', path: u.pathname, watch, at: Date.now() };
    log.push(entry);
    if (down) {
      req.socket.destroy();
      return;
    }
    if (watch) n.watches++;
    else if (req.method === 'GET') n.lists++;
    else n.writes++;

    if (watch) {
      const i = expiries.findIndex((e) => e.left > 0 && e.match(u.pathname));
      if (i >= 0) {
        const e = expiries[i] as (typeof expiries)[number];
        e.left--;
        if (e.left === 0) expiries.splice(i, 1);
        n.expired++;
        const status = {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `too old resource version: ${u.searchParams.get('resourceVersion') ?? '0'} (injected by test proxy)`,
          reason: 'Expired',
          code: 410,
        };
        entry.status = e.how === 'http' ? 410 : 200;
        req.resume();
        if (e.how === 'http') {
          res.writeHead(410, { 'content-type': 'application/json' });
          res.end(JSON.stringify(status));
        } else {
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
          res.end(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
        }
        return;
      }
    }

    const headers = { ...req.headers, host: upstream.host };
    const up = httpsRequest(
      { hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (upRes) => {
        entry.status = upRes.statusCode;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!watch) {
          upRes.pipe(res);
          return;
        }
        const w: OpenWatch = { path: u.pathname, res, upstream: upRes, stalled: !!stallMatch?.(u.pathname) };
        if (w.stalled) n.stalled++;
        watches.add(w);
        res.flushHeaders();
        // Timers of equal duration fire in the order they were set, so a delayed stream keeps its order.
        const later = (fn: () => void) =>
          delay && delay.ms > 0 && delay.match(w.path) ? setTimeout(fn, delay.ms) : fn();
        upRes.on('data', (chunk: Buffer) => {
          if (!w.stalled) later(() => res.write(chunk));
        });
        upRes.on('end', () => {
          if (!w.stalled) later(() => res.end());
        });
        upRes.on('error', () => {
          if (!w.stalled) res.destroy();
        });
      },
    );
    up.on('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${err.message}`);
      } else res.destroy();
    });
    res.on('close', () => {
      for (const w of watches) if (w.res === res) watches.delete(w);
      up.destroy();
    });
    req.pipe(up);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const kubeConfig = (identity: Identity) => {
    const { user, token } = credentialsOf(identity, conn);
    const kc = new KubeConfig();
    // client-node accepts plain HTTP only with skipTLSVerify (there is no TLS to verify on loopback).
    kc.loadFromOptions({
      clusters: [{ name: 'fwc-proxy', server: url, skipTLSVerify: true }],
      users: [{ name: user, token }],
      contexts: [{ name: identity, cluster: 'fwc-proxy', user }],
      currentContext: identity,
    });
    return kc;
  };

  return {
    url,
    kubeConfig,
    kubeconfigFile(identity, dir) {
      const { user, token } = credentialsOf(identity, conn);
      const file = join(dir, `${identity}-via-proxy.kubeconfig`);
      writeFileSync(
        file,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'fwc-proxy', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
          users: [{ name: user, user: { token } }],
          contexts: [{ name: user, context: { cluster: 'fwc-proxy', user } }],
          'current-context': user,
        }),
        { mode: 0o600 },
      );
      return file;
    },
    killWatches(match = any) {
      let k = 0;
      for (const w of [...watches]) {
        if (!match(w.path)) continue;
        watches.delete(w);
        w.upstream?.destroy();
        w.res.socket?.destroy();
        k++;
      }
      n.killed += k;
      return k;
    },
    stallWatches(on, match = any) {
      stallMatch = on ? match : undefined;
      if (!on) return 0;
      let k = 0;
      for (const w of watches) {
        if (!w.stalled && match(w.path)) {
          w.stalled = true;
          k++;
        }
      }
      n.stalled += k;
      return k;
    },
    delayWatches(ms, match = any) {
      delay = ms > 0 ? { ms, match } : undefined;
    },
    expireWatches(count, opts = {}) {
      expiries.push({ left: count, match: opts.match ?? any, how: opts.how ?? 'event' });
    },
    setDown(d) {
      down = d;
      if (d) for (const s of sockets) s.destroy();
    },
    openWatches: (match = any) => [...watches].filter((w) => match(w.path)).length,
    requests: () => [...log],
    writes: (since = 0) => log.filter((r) => r.method !== 'GET' && r.at >= since),
    counts: () => ({ ...n }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}

// =========================================================================================================
// Own control plane (for kube-apiserver restarts)

let binDirPromise: Promise<string> | undefined;

/** Directory with kube-apiserver, etcd, kube-controller-manager: $KUBEBUILDER_ASSETS or the build script's cache. */
export function controlPlaneBinDir(): Promise<string> {
  if (process.env.KUBEBUILDER_ASSETS) return Promise.resolve(process.env.KUBEBUILDER_ASSETS);
  binDirPromise ??= new Promise((resolve, reject) => {
    execFile('bash', [`${root}scripts/build-control-plane.sh`], { cwd: root }, (err, stdout) => {
      const dir = stdout.trim().split('\n').pop() ?? '';
      if (err || !dir) reject(new Error(`scripts/build-control-plane.sh failed: ${err?.message ?? 'no output'}`));
      else resolve(dir);
    });
  });
  return binDirPromise;
}

/** A control plane of this test file's own, with the namespaces and manifests the global setup applies. */
export async function startOwnControlPlane(): Promise<ControlPlane> {
  const cp = await startControlPlane({ binDir: await controlPlaneBinDir() });
  try {
    const admin = new HttpKubeApi(kubeConfigFor('admin', cp), {
      fieldManager: 'test-admin',
      stats: new CallStats('kubernetes'),
    });
    for (const name of ['flyte-workspace-controller', 'workspace-platform', 'flyte']) {
      await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    }
    for (const m of ['manifests/rbac.yaml', 'manifests/workspace-roles.yaml', 'manifests/admission-policy.yaml']) {
      await applyManifestFile(kubeConfigFor('admin', cp), `${root}${m}`);
    }
    return cp;
  } catch (e) {
    await cp.stop().catch(() => {});
    throw e;
  }
}

// =========================================================================================================
// FaultEnv: the in-process controller with Flyte (double) and IAM (moto behind the fault proxy)

export interface FaultEnvOptions {
  /** Short DNS-label prefix for the source namespace and the IAM role path. */
  name: string;
  /** Control plane; default the shared one of the global setup. */
  conn?: KubeConnection;
  /** Start the FlyteAdmin double (default true). */
  flyte?: boolean;
  /** IAM via moto behind the AWS fault proxy (default true). */
  iam?: boolean;
  /** Route the controller's Kubernetes traffic through a KubeProxy (default false). */
  kubeProxy?: boolean;
  /** Config overrides on top of the test defaults. */
  config?: Record<string, unknown>;
  watch?: WatchTuning;
  /** IAM request budget per second (default 50: tests are not about the budget unless they say so). */
  iamRequestsPerSecond?: number;
  /** Do not start the controller yet (startController() later). */
  deferStart?: boolean;
}

export interface FaultEnv extends Fixture {
  conn: KubeConnection;
  flyte: FlyteAdminDouble;
  aws: FaultProxy;
  /** Straight to moto (not counted by the fault proxy). */
  iamRaw: IAMClient;
  rolePath: string;
  kubeProxy?: KubeProxy;
  /** Starts a new controller (after stopController) on the same config, clients and state. */
  startController(): Promise<WorkspaceController>;
  stopController(): Promise<void>;
  close(): Promise<void>;
}

export function faultConfig(
  sourceNamespace: string,
  rolePath: string,
  flyteUrl: string,
  awsEndpoint: string,
  o: Pick<FaultEnvOptions, 'flyte' | 'iam' | 'config'> = {},
): ControllerConfig {
  const cfg = mergeConfig(
    mergeConfig(defaultConfig(), {
      sourceNamespaces: [sourceNamespace],
      flyte: {
        enabled: o.flyte ?? true,
        endpoint: flyteUrl,
        insecure: true,
        callTimeoutMs: 2_000,
        maxAttempts: 3,
        consoleBaseUrl: 'http://console.local',
      },
      aws: { enabled: o.iam ?? true, endpoint: awsEndpoint, rolePath, maxAttempts: 3 },
      leaderElection: { enabled: false },
      server: { metricsPort: 0, healthPort: 0, bindAddress: '127.0.0.1' },
      reconcile: { baseBackoffMs: 200, maxBackoffMs: 5000, resyncPeriodSeconds: 3600 },
      logLevel: 'silent',
    }),
    o.config ?? {},
  );
  validateConfig(cfg);
  return cfg;
}

export async function startFaultEnv(o: FaultEnvOptions): Promise<FaultEnv> {
  const conn = o.conn ?? inject('kube');
  const motoEndpoint = inject('motoEndpoint');
  const adminKc = kubeConfigFor('admin', conn);
  const admin = new HttpKubeApi(adminKc, { fieldManager: 'test-admin', stats: new CallStats('kubernetes') });
  const sourceNamespace = uniqueName(o.name);
  await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: sourceNamespace } });
  await bindSourceNamespace(adminKc, sourceNamespace);
  const flyte = await startFlyteAdminDouble();
  const aws = await startFaultProxy(motoEndpoint);
  const iamRaw = new IAMClient({ region: 'us-east-1', endpoint: motoEndpoint, credentials: AWS_CREDENTIALS });
  const rolePath = `/fwc-${sourceNamespace}/`;
  const cfg = faultConfig(sourceNamespace, rolePath, flyte.url, aws.endpoint, o);
  const kubeProxy = o.kubeProxy ? await startKubeProxy(conn) : undefined;
  const controllerKc = kubeProxy ? kubeProxy.kubeConfig('controller') : kubeConfigFor('controller', conn);
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let metrics = new Metrics(cfg.controllerName, { defaultMetrics: false });
  let iamApi: SdkIamApi | undefined;

  const env = {
    cfg,
    metrics,
    admin,
    adminKc,
    sourceNamespace,
    conn,
    flyte,
    aws,
    iamRaw,
    rolePath,
    kubeProxy,
    controller: undefined as unknown as WorkspaceController,
    async startController() {
      metrics = new Metrics(cfg.controllerName, { defaultMetrics: false });
      env.metrics = metrics;
      iamApi?.destroy();
      const clients: Partial<ExternalClients> = {};
      if (cfg.aws.enabled) {
        iamApi = new SdkIamApi({
          cfg,
          credentials: AWS_CREDENTIALS,
          metrics,
          requestsPerSecond: o.iamRequestsPerSecond ?? 50,
          burst: o.iamRequestsPerSecond ?? 50,
        });
        clients.iam = iamApi;
      }
      env.controller = await WorkspaceController.start({
        cfg,
        kc: controllerKc,
        log,
        metrics,
        clients,
        watch: o.watch,
      });
      return env.controller;
    },
    async stopController() {
      await env.controller?.stop(2_000);
    },
    async stop() {
      await env.stopController();
    },
    async close() {
      await env.stopController().catch(() => {});
      (env.controller?.clients.flyte as { close?: () => void } | undefined)?.close?.();
      iamApi?.destroy();
      iamRaw.destroy();
      await kubeProxy?.close();
      await aws.stop();
      await flyte.close();
    },
  };
  if (!o.deferStart) await env.startController();
  return env as FaultEnv;
}

// =========================================================================================================
// World checks

/** What a problem is, for the report: a resource that should exist and does not, one that should not and does, … */
export type ProblemKind = 'lost' | 'drifted' | 'leaked' | 'wrongly-deleted' | 'unexpected';

export interface Problem {
  kind: ProblemKind;
  what: string;
}

export interface WorldRefs {
  cfg: ControllerConfig;
  admin: HttpKubeApi;
  iamRaw: IAMClient;
  flyte: FlyteAdminDouble;
  sourceNamespace: string;
}

async function getRole(iam: IAMClient, name: string) {
  try {
    return (await iam.send(new GetRoleCommand({ RoleName: name }))).Role;
  } catch (e) {
    if ((e as { name?: string }).name === 'NoSuchEntityException' || /NoSuchEntity/.test(String(e))) return undefined;
    throw e;
  }
}

/**
 * Everything a workspace document asks for exists, matches, and nothing else carries its workspace label:
 * Kubernetes objects (exact set), the IAM role with its one inline policy, the Flyte project ACTIVE with
 * every per-domain attribute. Returns the problems found (empty = converged).
 */
export async function checkProvisioned(w: WorldRefs, cmName: string, doc: unknown): Promise<Problem[]> {
  const { cfg } = w;
  const parsed = parseWorkspace(typeof doc === 'string' ? doc : JSON.stringify(doc), cfg);
  if (!parsed.ok)
    throw new Error(`checkProvisioned: the expected document is invalid: ${JSON.stringify(parsed.errors)}`);
  const { spec } = parsed;
  const id = spec.workspaceId;
  const problems: Problem[] = [];
  const names = workspaceNames(cfg, id);
  const source = `${w.sourceNamespace}/${cmName}`;

  let roleArn = roleArnFor(cfg, names.iamRole);
  if (cfg.aws.enabled) {
    const role = await getRole(w.iamRaw, names.iamRole);
    if (!role) problems.push({ kind: 'lost', what: `IAM role ${names.iamRole}` });
    else {
      roleArn = role.Arn ?? roleArn;
      const want = desiredIamRole(cfg, spec, names);
      const tags = Object.fromEntries((role.Tags ?? []).map((t) => [t.Key, t.Value]));
      for (const [k, v] of Object.entries(want.tags)) {
        if (tags[k] !== v) problems.push({ kind: 'drifted', what: `IAM role ${names.iamRole} tag ${k}=${tags[k]}` });
      }
      const policies = (await w.iamRaw.send(new ListRolePoliciesCommand({ RoleName: names.iamRole }))).PolicyNames;
      if (JSON.stringify(policies ?? []) !== JSON.stringify(Object.keys(want.inlinePolicies))) {
        problems.push({
          kind: 'drifted',
          what: `IAM role ${names.iamRole} inline policies ${JSON.stringify(policies)}`,
        });
      }
    }
  }

  const desired = desiredKubernetesObjects({ cfg, spec, names, source, roleArn });
  const wanted = new Set<string>();
  for (const obj of desired) {
    const ref = refOf(obj);
    const label = `${obj.kind} ${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}`;
    wanted.add(label);
    const live = await w.admin.get(ref);
    if (!live) problems.push({ kind: 'lost', what: label });
    else if (live.metadata.deletionTimestamp) problems.push({ kind: 'lost', what: `${label} (terminating)` });
    else if (!containsDesired(live, obj)) problems.push({ kind: 'drifted', what: label });
  }
  for (const kind of MANAGED_KINDS) {
    for (const o of await w.admin.list(kind, { labelSelector: workspaceSelector(cfg, id) })) {
      const label = `${kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
      if (!wanted.has(label)) problems.push({ kind: 'leaked', what: label });
    }
  }

  if (cfg.flyte.enabled) {
    const project = w.flyte.project(names.flyteProject);
    if (!project) problems.push({ kind: 'lost', what: `Flyte project ${id}` });
    else {
      if (project.state !== Project_ProjectState.ACTIVE) {
        problems.push({ kind: 'lost', what: `Flyte project ${id} is ${Project_ProjectState[project.state]}` });
      }
      if (!ownsProject(project, cfg, id)) problems.push({ kind: 'drifted', what: `Flyte project ${id} labels` });
      const want = desiredFlyteState({ cfg, spec, names, roleArn, domains: cfg.domains });
      if (project.name !== want.project.name) problems.push({ kind: 'drifted', what: `Flyte project ${id} name` });
      // Our project-domain rows only (users may have rows at project, workflow and launch-plan level).
      const rows = w.flyte
        .inspect()
        .attributes.filter((a) => a.project === id && a.domain !== '' && a.workflow === '' && a.launchPlan === '');
      for (const a of want.attributes) {
        if (!rows.some((r) => r.domain === a.domain && r.resourceType === a.resourceType)) {
          problems.push({ kind: 'lost', what: `Flyte attributes ${id}/${a.domain}/${a.resourceType}` });
        }
      }
      if (rows.length !== want.attributes.length) {
        problems.push({ kind: 'leaked', what: `Flyte attributes of ${id}: ${rows.length} rows` });
      }
    }
  }
  return problems;
}

/**
 * Nothing of workspace `id` remains: no labelled Kubernetes object, no IAM role, no active project. The
 * archived project keeps its attribute rows by design (FlyteAdmin's attribute delete would also take the
 * users' own overrides).
 */
export async function checkGone(w: WorldRefs, id: string): Promise<Problem[]> {
  const { cfg } = w;
  const names = workspaceNames(cfg, id);
  const problems: Problem[] = [];
  for (const kind of MANAGED_KINDS) {
    for (const o of await w.admin.list(kind, { labelSelector: workspaceSelector(cfg, id) })) {
      problems.push({
        kind: 'leaked',
        what: `${kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`,
      });
    }
  }
  for (const ns of names.namespaces) {
    const live = await w.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    if (live && live.metadata.labels?.[MANAGED_BY_LABEL] === cfg.fieldManager) {
      problems.push({ kind: 'leaked', what: `Namespace ${ns}` });
    }
  }
  if (cfg.aws.enabled && (await getRole(w.iamRaw, names.iamRole))) {
    problems.push({ kind: 'leaked', what: `IAM role ${names.iamRole}` });
  }
  if (cfg.flyte.enabled) {
    const p = w.flyte.project(id);
    if (p && p.state === Project_ProjectState.ACTIVE)
      problems.push({ kind: 'leaked', what: `active Flyte project ${id}` });
  }
  return problems;
}

/** Roles under the env's role path (straight from moto). */
export async function rolesUnder(iam: IAMClient, rolePath: string): Promise<{ name: string; workspaceId?: string }[]> {
  const out: { name: string; workspaceId?: string }[] = [];
  let marker: string | undefined;
  do {
    const page = await iam.send(new ListRolesCommand({ PathPrefix: rolePath, Marker: marker }));
    for (const r of page.Roles ?? []) {
      const tags = await iam.send(new ListRoleTagsCommand({ RoleName: r.RoleName }));
      const ws = tags.Tags?.find((t) => t.Key === IAM_TAG_WORKSPACE_ID)?.Value;
      out.push(ws ? { name: r.RoleName as string, workspaceId: ws } : { name: r.RoleName as string });
    }
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  return out;
}

/** Workspace ids that have a managed Namespace (any source), from the label. */
export async function managedNamespaceIds(admin: HttpKubeApi, cfg: ControllerConfig): Promise<Map<string, KubeObject>> {
  const out = new Map<string, KubeObject>();
  for (const ns of await admin.list('Namespace', { labelSelector: `${MANAGED_BY_LABEL}=${cfg.fieldManager}` })) {
    const id = ns.metadata.labels?.[WORKSPACE_ID_LABEL];
    if (id) out.set(id, ns);
  }
  return out;
}

/** Waits until `check` reports no problems; on timeout fails with the last problems. */
export async function waitConverged(check: () => Promise<Problem[]>, timeoutMs: number, what: string): Promise<void> {
  let last: Problem[] = [];
  try {
    await waitFor(
      async () => {
        last = await check();
        return last.length === 0;
      },
      { timeoutMs, intervalMs: 300, message: what },
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\nproblems: ${JSON.stringify(last, null, 1)}`);
  }
}

// =========================================================================================================
// Reporting: one JSON line per suite on stderr, collected into the final report.

export function report(suite: string, facts: Record<string, unknown>): void {
  process.stderr.write(`[fault-report] ${JSON.stringify({ suite, ...facts })}\n`);
}

// =========================================================================================================
// The built controller, for tests that run it as a child process (harness/controller-process.ts)

export { sumSeries } from '../../harness/metrics-text.js';

/** Rebuilds dist/ when any src file is newer than dist/cli.js (serialised across test workers by a lock dir). */
export async function ensureDistBuilt(): Promise<void> {
  const lock = join(root, 'dist', '.fwc-test-build-lock');
  mkdirSync(join(root, 'dist'), { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another worker builds; a lock older than 3 minutes is stale.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 180_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for the dist build lock');
      await sleep(250);
    }
  }
  try {
    const cli = join(root, 'dist', 'cli.js');
    const built = existsSync(cli) ? statSync(cli).mtimeMs : 0;
    const newest = newestMtime(join(root, 'src'));
    if (built >= newest) return;
    await new Promise<void>((resolve, reject) => {
      execFile(
        process.execPath,
        [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
        { cwd: root },
        (err, stdout, stderr) => (err ? reject(new Error(`build failed:\n${stdout}${stderr}`)) : resolve()),
      );
    });
    // tsc leaves an unchanged output file alone; make the freshness check see this build.
    const now = new Date();
    writeFileSync(join(root, 'dist', '.fwc-test-built'), now.toISOString());
    if (statSync(cli).mtimeMs < newest) {
      const { utimesSync } = await import('node:fs');
      utimesSync(cli, now, now);
    }
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

/** A random integer in [min, max]. */
export function randomBetween(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}
