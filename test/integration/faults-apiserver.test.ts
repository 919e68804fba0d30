// kube-apiserver restarted under a running controller (on a control plane of this file's own, so parallel
// test files are not disturbed): watches fail and reconnect, reconciles in flight fail their status write and
// are retried, and every change made right after the restart, while the controller is still reconnecting
// (backing off), converges. Flyte (double) and IAM (moto) are on, so reconciles span all three systems.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../harness/controlplane.js';
import type { KubeObject } from '../../src/adapters/kubernetes.js';
import { putWorkspace, statusOf, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkGone,
  checkProvisioned,
  type FaultEnv,
  type Problem,
  report,
  startFaultEnv,
  startOwnControlPlane,
  sumSeries,
  waitConverged,
} from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

let cp: ControlPlane;
let env: FaultEnv;
const totals = { restarts: 0, downtimeMs: 0, workspacesChecked: 0, problems: [] as Problem[] };

beforeAll(async () => {
  cp = await startOwnControlPlane();
  // Default watch backoff (800 ms → 30 s): the controller reconnects the way it would in production.
  env = await startFaultEnv({ name: 'fapi', conn: cp });
}, 120_000);

afterAll(async () => {
  report('faults-apiserver', {
    apiserverRestarts: totals.restarts,
    downtimeMs: totals.downtimeMs,
    workspacesChecked: totals.workspacesChecked,
    problems: totals.problems.length,
  });
  await env?.close();
  await cp?.stop();
});

const cmRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });
const nsOf = (id: string) => env.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: `flyte-${id}` });

async function restarts(reason: string): Promise<number> {
  return sumSeries(
    await env.metrics.render(),
    'flyte_workspace_watch_restarts_total',
    new RegExp(`reason="${reason}"`),
  );
}

async function converge(check: () => Promise<Problem[]>, what: string, timeoutMs = 120_000): Promise<void> {
  totals.workspacesChecked++;
  try {
    await waitConverged(check, timeoutMs, what);
  } catch (e) {
    totals.problems.push(...(await check()));
    throw e;
  }
}

async function readyWorkspaces(ids: string[]): Promise<Map<string, KubeObject>> {
  await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
  await Promise.all(ids.map((id) => waitForStatus(env, id, (s) => s.phase === 'Ready', 60_000)));
  const namespaces = new Map<string, KubeObject>();
  for (const id of ids) namespaces.set(id, (await nsOf(id)) as KubeObject);
  return namespaces;
}

describe('kube-apiserver restarted mid-run', { tags: ['slow'] }, () => {
  it('reconciles in flight and changes made while the controller reconnects all converge', async () => {
    const stable = uniqueName('ws');
    const modified = uniqueName('wm');
    const deleted = uniqueName('wd');
    const before = await readyWorkspaces([stable, modified, deleted]);
    const errorsBefore = await restarts('error');

    // A reconcile in flight when the apiserver goes away: FlyteAdmin is slow, so provisioning takes seconds
    // and its final status write lands in the outage.
    env.flyte.setLatency(700);
    const inflight = uniqueName('wf');
    await putWorkspace(env, inflight, workspaceDoc(inflight));
    await waitForStatus(env, inflight, (s) => s.phase === 'Provisioning', 30_000);
    const restart = cp.restartApiServer({ downtimeMs: 4_000 });
    totals.restarts++;
    totals.downtimeMs += 4_000;
    await restart;
    env.flyte.setLatency(0);

    // Straight after the restart, while the controller's watches are still failing or backing off.
    const added = uniqueName('wa');
    await putWorkspace(env, added, workspaceDoc(added));
    const doc = workspaceDoc(modified);
    (doc.users as unknown[]).push({ user_id: 'u5', email: `after-${modified}@example.com`, role: 'owner' });
    await putWorkspace(env, modified, doc);
    await env.admin.delete(cmRef(deleted));

    await converge(() => checkProvisioned(env, inflight, workspaceDoc(inflight)), 'in-flight workspace');
    await converge(() => checkProvisioned(env, added, workspaceDoc(added)), 'workspace added after the restart');
    await converge(() => checkProvisioned(env, modified, doc), 'workspace modified after the restart');
    await waitFor(async () => ((await env.admin.get(cmRef(deleted))) ? undefined : true), {
      timeoutMs: 120_000,
      message: 'deleted workspace released',
    });
    await converge(() => checkGone(env, deleted), 'workspace deleted after the restart');
    await converge(() => checkProvisioned(env, stable, workspaceDoc(stable)), 'untouched workspace');
    // Nothing that should stay was deleted and re-created behind our back.
    expect((await nsOf(stable))?.metadata.uid).toBe(before.get(stable)?.metadata.uid);
    expect((await nsOf(modified))?.metadata.uid).toBe(before.get(modified)?.metadata.uid);
    for (const id of [inflight, added, modified, stable]) expect((await statusOf(env, id))?.phase).toBe('Ready');
    // The watches did fail and come back.
    expect(await restarts('error')).toBeGreaterThan(errorsBefore);
    await waitFor(() => (env.controller.ready().ok ? true : undefined), { message: 'controller ready' });
    expect(env.flyte.inspect().projects.filter((p) => p.id === inflight)).toHaveLength(1);
  });

  // Slow by nature: kube-controller-manager's namespace controller backs off (per-item exponential) while
  // the apiserver is away, so the namespace being deleted stays Terminating for a while after the restart;
  // the controller keeps polling for it and only then releases the finalizer.
  it('a longer outage (12 s) during a teardown and a provisioning: both finish after it', async () => {
    const tornDown = uniqueName('wt');
    await readyWorkspaces([tornDown]);
    await env.admin.delete(cmRef(tornDown));
    const created = uniqueName('wc');
    await putWorkspace(env, created, workspaceDoc(created));
    await waitForStatus(env, created, (s) => s.phase === 'Provisioning' || s.phase === 'Ready', 30_000);
    await cp.restartApiServer({ downtimeMs: 12_000 });
    totals.restarts++;
    totals.downtimeMs += 12_000;
    await converge(() => checkProvisioned(env, created, workspaceDoc(created)), 'workspace created before the outage');
    await waitFor(async () => ((await env.admin.get(cmRef(tornDown))) ? undefined : true), {
      timeoutMs: 120_000,
      message: 'torn-down workspace released',
    });
    await converge(() => checkGone(env, tornDown), 'workspace deleted before the outage');
    expect(totals.problems).toEqual([]);
  });
});
