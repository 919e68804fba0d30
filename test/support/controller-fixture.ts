// Starts the real controller in-process under the controller's own RBAC identity, against the shared
// control plane, with a source namespace of its own so test files do not see each other's workspaces.
import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { inject } from 'vitest';
import { workspaceStatus } from '../../harness/workspaces.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { SdkIamApi } from '../../src/adapters/iam.js';
import { HttpKubeApi } from '../../src/adapters/kubernetes.js';
import { type ControllerConfig, defaultConfig, mergeConfig } from '../../src/config/config.js';
import { WorkspaceController } from '../../src/controller/controller.js';
import type { ExternalClients } from '../../src/controller/steps.js';
import { Metrics } from '../../src/metrics/metrics.js';
import type { WorkspaceStatus } from '../../src/reconcile/status.js';
import { bindSourceNamespace, kubeConfigFor, uniqueName, waitFor } from './kube.js';

export { putWorkspace, workspaceDoc, workspaceStatus as statusOf } from '../../harness/workspaces.js';

export interface Fixture {
  cfg: ControllerConfig;
  controller: WorkspaceController;
  metrics: Metrics;
  admin: HttpKubeApi;
  adminKc: KubeConfig;
  sourceNamespace: string;
  stop(): Promise<void>;
}

/** Config for a test: its own source namespace, Flyte and IAM off unless the test turns them on. */
export async function startFixture(
  overrides: Record<string, unknown> = {},
  clients?: Partial<ExternalClients>,
): Promise<Fixture> {
  const adminKc = kubeConfigFor('admin');
  const admin = new HttpKubeApi(adminKc, { fieldManager: 'test-admin', stats: new CallStats('kubernetes') });
  const sourceNamespace = uniqueName('src');
  await admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: sourceNamespace } });
  await bindSourceNamespace(adminKc, sourceNamespace);
  const cfg = mergeConfig(
    mergeConfig(defaultConfig(), {
      sourceNamespaces: [sourceNamespace],
      flyte: { enabled: false },
      aws: { enabled: false },
      leaderElection: { enabled: false },
      server: { metricsPort: 0, healthPort: 0, bindAddress: '127.0.0.1' },
      reconcile: { baseBackoffMs: 200, maxBackoffMs: 5000, resyncPeriodSeconds: 3600 },
      logLevel: 'silent',
    }),
    overrides,
  );
  const metrics = new Metrics(cfg.controllerName, { defaultMetrics: false });
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const controller = await WorkspaceController.start({ cfg, kc: kubeConfigFor('controller'), log, metrics, clients });
  return {
    cfg,
    controller,
    metrics,
    admin,
    adminKc,
    sourceNamespace,
    stop: async () => {
      await controller.stop();
    },
  };
}

export async function waitForStatus(
  f: Fixture,
  name: string,
  pred: (s: WorkspaceStatus) => boolean,
  timeoutMs = 60_000,
): Promise<WorkspaceStatus> {
  return waitFor(
    async () => {
      const s = await workspaceStatus(f, name);
      return s && pred(s) ? s : undefined;
    },
    { timeoutMs, message: `status of ${name}` },
  );
}

/** Deletes a workspace ConfigMap and waits until the finalizer has released it. */
export async function deleteWorkspaceAndWait(f: Fixture, name: string, timeoutMs = 90_000): Promise<void> {
  const ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace: f.sourceNamespace, name };
  await f.admin.delete(ref);
  await waitFor(async () => ((await f.admin.get(ref)) ? undefined : true), {
    timeoutMs,
    message: `ConfigMap ${name} released by the finalizer`,
  });
}

/** A fixture with IAM pointed at the run's moto server (and any other overrides). */
export async function startFixtureWithIam(overrides: Record<string, unknown> = {}): Promise<Fixture> {
  const endpoint = inject('motoEndpoint');
  const all = { ...overrides, aws: { enabled: true, endpoint, ...(overrides.aws as object | undefined) } };
  const iam = new SdkIamApi({ cfg: mergeConfig(defaultConfig(), all), credentials: MOTO_CREDENTIALS });
  return startFixture(all, { iam });
}

export const MOTO_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

export async function eventsFor(
  f: Fixture,
  name: string,
): Promise<{ type: string; reason: string; message: string }[]> {
  const events = await f.admin.list('Event', { namespace: f.sourceNamespace });
  return events
    .filter((e) => (e.involvedObject as { name?: string })?.name === name)
    .map((e) => ({ type: String(e.type), reason: String(e.reason), message: String(e.message) }));
}

/**
 * Waits for an Event on the named source ConfigMap that matches. Events are posted after the status write
 * they accompany, so a test that saw the status must wait for the Event, not list once.
 */
export async function waitForEvent(
  f: Fixture,
  name: string,
  match: (e: { type: string; reason: string; message: string }) => boolean,
  timeoutMs = 15_000,
): Promise<{ type: string; reason: string; message: string }> {
  let seen: { type: string; reason: string; message: string }[] = [];
  try {
    return await waitFor(
      async () => {
        seen = await eventsFor(f, name);
        return seen.find(match);
      },
      { timeoutMs, message: `a matching Event on ${name}` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; Events seen: ${JSON.stringify(seen)}`);
  }
}

export { inject };
