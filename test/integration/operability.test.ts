// Operability of the daemon as it runs in production (`node dist/cli.js run`, out of process, under the
// controller's ServiceAccount identity, Lease election on): what /metrics exposes after real reconciles
// through Kubernetes, IAM (moto) and FlyteAdmin (the double). The failover, shutdown and probe tests are
// in operability-failover.test.ts; manifests in operability-manifests.test.ts; plan in operability-plan.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../harness/controller-process.js';
import { uniqueName, waitFor } from '../support/kube.js';
import {
  type DaemonEnv,
  daemonEnv,
  idleScrape,
  leaseHolder,
  putWorkspace,
  type Samples,
  startDaemon,
  waitReady,
  workspaceDoc,
  workspaceStatus,
} from './daemon-helpers.js';

const CONTROLLER = 'workspace';
const Q = { name: CONTROLLER, controller: CONTROLLER };

let env: DaemonEnv;
let daemon: ControllerProcess;
const ids: string[] = [];

beforeAll(async () => {
  env = await daemonEnv('opm', { reconcile: { concurrency: 3 } });
  daemon = await startDaemon(env, 'a');
  await waitFor(async () => (await leaseHolder(env)) === daemon.identity, {
    timeoutMs: 20_000,
    message: 'the daemon to hold the Lease',
  });
});

afterAll(async () => {
  await env?.cleanup();
});

describe('/metrics of a running daemon', () => {
  it('after reconciles (one retried through a FlyteAdmin outage) shows the controller-runtime, workqueue and leader-election series with consistent values, and ours with bounded labels', async () => {
    // 1. One workspace while FlyteAdmin is down: its reconcile fails and is retried with backoff.
    env.flyte.setDown(true);
    const first = uniqueName('opm');
    ids.push(first);
    await putWorkspace(env, first, workspaceDoc(first));
    await waitFor(
      async () =>
        ((await daemon.scrape()).get('controller_runtime_reconcile_total', {
          controller: CONTROLLER,
          result: 'error',
        }) ?? 0) >= 1,
      { timeoutMs: 30_000, message: 'a failed reconcile while FlyteAdmin is down' },
    );
    expect((await workspaceStatus(env, first))?.phase).not.toBe('Ready');
    env.flyte.setDown(false);

    // 2. Three more; all four become Ready.
    for (let i = 0; i < 3; i++) {
      const id = uniqueName('opm');
      ids.push(id);
      await putWorkspace(env, id, workspaceDoc(id));
    }
    await waitReady(env, ids, 90_000);
    const s = await idleScrape(daemon);

    // controller-runtime
    const success = s.get('controller_runtime_reconcile_total', { controller: CONTROLLER, result: 'success' }) ?? 0;
    const errors = s.get('controller_runtime_reconcile_total', { controller: CONTROLLER, result: 'error' }) ?? 0;
    expect(success).toBeGreaterThanOrEqual(ids.length);
    expect(errors).toBeGreaterThanOrEqual(1);
    expect(s.get('controller_runtime_reconcile_errors_total', { controller: CONTROLLER })).toBe(errors);
    const reconciles = s.sum('controller_runtime_reconcile_total', { controller: CONTROLLER });
    const timeCount = s.get('controller_runtime_reconcile_time_seconds_count', { controller: CONTROLLER }) ?? 0;
    expect(timeCount).toBe(reconciles);
    expect(s.get('controller_runtime_reconcile_time_seconds_sum', { controller: CONTROLLER })).toBeGreaterThan(0);
    expectHistogram(s, 'controller_runtime_reconcile_time_seconds', { controller: CONTROLLER });
    expect(s.get('controller_runtime_active_workers', { controller: CONTROLLER })).toBe(0);
    expect(s.get('controller_runtime_max_concurrent_reconciles', { controller: CONTROLLER })).toBe(3);

    // workqueue (client-go names, labels name + controller)
    expect(s.get('workqueue_depth', Q)).toBe(0);
    const adds = s.get('workqueue_adds_total', Q) ?? 0;
    expect(adds).toBeGreaterThanOrEqual(ids.length);
    const retries = s.get('workqueue_retries_total', Q) ?? 0;
    expect(retries).toBeGreaterThanOrEqual(1);
    expect(retries).toBeLessThanOrEqual(errors);
    const queued = s.get('workqueue_queue_duration_seconds_count', Q) ?? 0;
    const worked = s.get('workqueue_work_duration_seconds_count', Q) ?? 0;
    expect(queued).toBeGreaterThanOrEqual(ids.length);
    expect(worked).toBe(reconciles);
    expect(s.get('workqueue_work_duration_seconds_sum', Q)).toBeGreaterThan(0);
    expectHistogram(s, 'workqueue_queue_duration_seconds', Q);
    expectHistogram(s, 'workqueue_work_duration_seconds', Q);
    expect(s.get('workqueue_unfinished_work_seconds', Q)).toBe(0);
    expect(s.get('workqueue_longest_running_processor_seconds', Q)).toBe(0);

    // leader election
    expect(s.get('leader_election_master_status', { name: env.leaseName })).toBe(1);

    // ours
    expect(s.get('flyte_workspace_workspaces', { phase: 'Ready' })).toBe(ids.length);
    for (const system of ['kubernetes', 'iam', 'flyte']) {
      expect(s.sum('flyte_workspace_external_requests_total', { system, access: 'read' }), system).toBeGreaterThan(0);
      expect(s.sum('flyte_workspace_external_requests_total', { system, access: 'write' }), system).toBeGreaterThan(0);
    }
    // gRPC results are labelled with gRPC code names: the outage shows as `unavailable` Flyte calls.
    expect(s.sum('flyte_workspace_external_requests_total', { system: 'flyte', outcome: 'ok' })).toBeGreaterThan(0);
    expect(
      s.sum('flyte_workspace_external_requests_total', { system: 'flyte', outcome: 'unavailable' }),
      'the outage shows as failed Flyte calls',
    ).toBeGreaterThan(0);
    const flyteOutcomes = new Set(
      s.find('flyte_workspace_external_requests_total', { system: 'flyte' }).map((x) => x.labels.outcome),
    );
    for (const o of flyteOutcomes) expect(o).toMatch(/^[a-z_]+$/);
    expect([...flyteOutcomes].filter((o) => o?.startsWith('http_'))).toEqual([]);
    expect(
      s.sum('flyte_workspace_external_requests_total', { system: 'kubernetes', outcome: 'success' }),
    ).toBeGreaterThan(0);
    expect(s.sum('flyte_workspace_external_request_duration_seconds_count')).toBeGreaterThan(0);
    const watched = s.find('flyte_workspace_last_watch_event_timestamp_seconds');
    expect(watched.map((w) => w.labels.resource)).toEqual(expect.arrayContaining(['configmaps']));
    for (const w of watched) {
      expect(w.value, w.labels.resource).toBeGreaterThan(Date.now() / 1000 - 3600);
      expect(w.value, w.labels.resource).toBeLessThanOrEqual(Date.now() / 1000 + 5);
    }
    const since = s.find('flyte_workspace_seconds_since_last_watch_event');
    expect(since.length).toBe(watched.length);
    for (const w of since) expect(w.value).toBeGreaterThanOrEqual(0);
    expect(s.types.get('flyte_workspace_watch_restarts_total')).toBe('counter');

    // Process metrics from prom-client's defaults.
    expect(s.get('process_start_time_seconds')).toBeGreaterThan(0);

    // Bounded labels: no label value anywhere carries a workspace id (or its namespace).
    const offending = s.all.filter((x) =>
      Object.values(x.labels).some((v) => ids.some((id) => v.includes(id)) || v.includes(env.sourceNamespace)),
    );
    expect(offending.map((x) => `${x.name}${JSON.stringify(x.labels)}`)).toEqual([]);
  });

  it('serves the Prometheus text format, and a converged daemon stays quiet (no requeue loop from its own writes)', async () => {
    const r = await daemon.http('metrics', '/metrics');
    expect(r.status).toBe(200);
    expect(r.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    await idleScrape(daemon);
    await new Promise((res) => setTimeout(res, 1000));
    const before = await daemon.scrape();
    await new Promise((res) => setTimeout(res, 2000));
    const after = await daemon.scrape();
    expect(after.get('workqueue_adds_total', Q)).toBe(before.get('workqueue_adds_total', Q));
    expect(after.sum('controller_runtime_reconcile_total')).toBe(before.sum('controller_runtime_reconcile_total'));
    expect(after.sum('flyte_workspace_external_requests_total', { access: 'write' })).toBe(
      before.sum('flyte_workspace_external_requests_total', { access: 'write' }),
    );
  });
});

/** Buckets are cumulative, +Inf equals _count. */
function expectHistogram(s: Samples, name: string, labels: Record<string, string>): void {
  const buckets = s
    .find(`${name}_bucket`, labels)
    .map((b) => ({ le: b.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(b.labels.le), v: b.value }))
    .sort((a, b) => a.le - b.le);
  expect(buckets.length, name).toBeGreaterThan(1);
  for (let i = 1; i < buckets.length; i++) {
    expect((buckets[i] as { v: number }).v, `${name} buckets cumulative`).toBeGreaterThanOrEqual(
      (buckets[i - 1] as { v: number }).v,
    );
  }
  expect(buckets.at(-1)?.le).toBe(Number.POSITIVE_INFINITY);
  expect(buckets.at(-1)?.v).toBe(s.get(`${name}_count`, labels));
}
