// Out-of-process daemons for the operability tests: `node dist/cli.js run` under the controller's
// ServiceAccount identity (its own kubeconfig file), against the shared control plane, moto and an
// in-process FlyteAdmin double. Each test environment has its own source namespace, Lease name, IAM role
// path and workspace ids, so test files never see each other's work.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { CLI, ControllerProcess, FAKE_AWS_ENV, REPO_ROOT } from '../../harness/controller-process.js';
import { writeKubeconfigFile } from '../../harness/controlplane.js';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { Samples } from '../../harness/metrics-text.js';
import { workspaceStatus } from '../../harness/workspaces.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { HttpKubeApi } from '../../src/adapters/kubernetes.js';
import { bindSourceNamespace, kubeConfigFor, uniqueName, waitFor } from '../support/kube.js';

export type { ControllerProcess as Daemon } from '../../harness/controller-process.js';
export type { Samples } from '../../harness/metrics-text.js';
export { putWorkspace, workspaceDoc, workspaceStatus } from '../../harness/workspaces.js';

export const ROOT = REPO_ROOT;
export const LEASE_NAMESPACE = 'flyte-workspace-controller';

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

export async function daemonEnv(prefix: string, config: Record<string, unknown> = {}): Promise<DaemonEnv> {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: build first (npm test does: npx tsc -p tsconfig.build.json)`);
  const dir = mkdtempSync(join(tmpdir(), `fwc-${prefix}-`));
  const kubeconfig = writeKubeconfigFile(inject('kube'), 'controller', dir);
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
    aws: { enabled: true, endpoint: motoEndpoint, region: FAKE_AWS_ENV.AWS_REGION, rolePath },
    leaderElection: { enabled: true, leaseName, namespace: LEASE_NAMESPACE, ...LEASE },
    server: { metricsPort: 0, healthPort: 0, bindAddress: '127.0.0.1' },
    reconcile: { baseBackoffMs: 200, maxBackoffMs: 3000 },
    shutdownGraceSeconds: 8,
    logLevel: 'info',
  };
  const daemons: ControllerProcess[] = [];
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

const trackedDaemons = new WeakMap<DaemonEnv, ControllerProcess[]>();

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

/** Starts `node dist/cli.js run` with the env's config plus `overrides`; resolves once it logged its ports. */
export async function startDaemon(
  env: DaemonEnv,
  name: string,
  overrides: Record<string, unknown> = {},
): Promise<ControllerProcess> {
  const d = ControllerProcess.spawn({
    name,
    config: merge(env.config, overrides),
    dir: env.dir,
    kubeconfig: env.kubeconfig,
  });
  trackedDaemons.get(env)?.push(d);
  return d.started();
}

/**
 * Scrapes until the work queue is idle: nothing queued, nothing running. A status the test waits for is
 * written inside the reconcile, before the reconcile's counters move, so reading counters right after
 * seeing Ready races the end of the reconcile.
 */
export async function idleScrape(d: ControllerProcess, controller = 'workspace'): Promise<Samples> {
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
