// FlyteAdmin faults with the real controller (own RBAC), the FlyteAdmin double and moto: unavailable for
// ~20 s, slower than the call deadline, rate limiting (RESOURCE_EXHAUSTED) and lost answers. Kubernetes and
// IAM must proceed, the status must name the failing Flyte step, FlyteAdmin must not be hammered, and after
// recovery everything converges with exactly one project per workspace.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import type { WorkspaceStatus } from '../../src/reconcile/status.js';
import { putWorkspace, statusOf, waitForEvent, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkGone,
  checkProvisioned,
  type FaultEnv,
  type Problem,
  report,
  startFaultEnv,
  waitConverged,
} from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

let env: FaultEnv;
const totals = {
  faults: 0,
  workspacesChecked: 0,
  problems: [] as Problem[],
  maxFlyteCallsPerSecond: 0,
  callsInLast10sOfOutage: -1,
  otherWorkspaceLatencyMs: -1,
};

beforeAll(async () => {
  env = await startFaultEnv({ name: 'fflyte' });
});

afterAll(async () => {
  report('faults-flyte', {
    faultsInjected: totals.faults,
    workspacesChecked: totals.workspacesChecked,
    maxFlyteCallsPerSecond: totals.maxFlyteCallsPerSecond,
    callsInLast10sOfOutage: totals.callsInLast10sOfOutage,
    otherWorkspaceLatencyMs: totals.otherWorkspaceLatencyMs,
    problems: totals.problems.length,
  });
  await env?.close();
});

const cmRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });
const condition = (s: WorkspaceStatus, type: string) => s.conditions.find((c) => c.type === type);

async function converge(check: () => Promise<Problem[]>, what: string, timeoutMs = 60_000): Promise<void> {
  totals.workspacesChecked++;
  try {
    await waitConverged(check, timeoutMs, what);
  } catch (e) {
    totals.problems.push(...(await check()));
    throw e;
  }
}

/** Samples FlyteAdmin's call counter every 250 ms; `stop()` returns calls per 1 s sliding window (max). */
function rateMeter() {
  const samples: { t: number; calls: number }[] = [];
  const total = () => {
    const c = env.flyte.calls();
    return c.reads + c.writes;
  };
  const timer = setInterval(() => samples.push({ t: Date.now(), calls: total() }), 250);
  samples.push({ t: Date.now(), calls: total() });
  return {
    /** Calls between `from` and `to` (ms since epoch), from the samples. */
    between(from: number, to: number): number {
      const a = samples.find((s) => s.t >= from) ?? samples.at(-1);
      const b = [...samples].reverse().find((s) => s.t <= to) ?? samples.at(-1);
      return (b?.calls ?? 0) - (a?.calls ?? 0);
    },
    stop(): number {
      clearInterval(timer);
      let max = 0;
      for (const s of samples) {
        const later = samples.find((x) => x.t >= s.t + 1000);
        if (later) max = Math.max(max, later.calls - s.calls);
      }
      totals.maxFlyteCallsPerSecond = Math.max(totals.maxFlyteCallsPerSecond, max);
      return max;
    },
  };
}

/** Flyte failed, Kubernetes and IAM Ready, and the status says so in steps, conditions and lastError. */
function expectOnlyFlyteFailing(s: WorkspaceStatus, reason: string): void {
  expect(s.phase).toBe('Failed');
  expect(s.steps.kubernetes?.state).toBe('Ready');
  expect(s.steps.iam?.state).toBe('Ready');
  expect(s.steps.flyte?.state).toBe('Failed');
  expect(s.steps.flyte?.reason).toBe(reason);
  expect(condition(s, 'KubernetesReady')?.status).toBe('True');
  expect(condition(s, 'IAMReady')?.status).toBe('True');
  expect(condition(s, 'FlyteReady')?.status).toBe('False');
  expect(condition(s, 'Ready')?.reason).toBe(reason);
  expect(s.lastError).toMatch(/^flyte: /);
  expect(s.roleArn).toMatch(/^arn:aws:iam::123456789012:role\//);
}

describe('FlyteAdmin faults', () => {
  it('unavailable for 20 s: Kubernetes and IAM proceed, status names Flyte, no storm, one project each after', {
    tags: ['slow'],
  }, async () => {
    const toDelete = uniqueName('fd');
    await putWorkspace(env, toDelete, workspaceDoc(toDelete));
    await waitForStatus(env, toDelete, (s) => s.phase === 'Ready');

    const meter = rateMeter();
    const outageStart = Date.now();
    env.flyte.setDown(true);
    totals.faults++;
    const ids = [uniqueName('fu'), uniqueName('fu'), uniqueName('fu')];
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    await env.admin.delete(cmRef(toDelete));
    for (const id of ids) {
      const s = await waitForStatus(env, id, (st) => st.phase === 'Failed' && st.steps.flyte?.state === 'Failed');
      expectOnlyFlyteFailing(s, 'FlyteUnavailable');
      expect(s.steps.flyte?.message).toMatch(/UNAVAILABLE/);
      // Kubernetes and IAM really are there already (everything but the Flyte project).
      const problems = await checkProvisioned(env, id, workspaceDoc(id));
      expect(problems.every((p) => p.what.startsWith('Flyte project'))).toBe(true);
      await waitForEvent(env, id, (e) => e.type === 'Warning' && e.reason === 'FlyteUnavailable');
    }
    // The deleted workspace: Flyte teardown fails, the rest is removed, the finalizer stays.
    const deleting = await waitForStatus(
      env,
      toDelete,
      (s) => s.phase === 'Deleting' && s.steps.iam?.state === 'Deleted',
    );
    expect(deleting.steps.flyte?.state).toBe('Failed');
    expect((await env.admin.get(cmRef(toDelete)))?.metadata.finalizers).toContain('workspaces.flyte.org/cleanup');

    const remaining = 20_000 - (Date.now() - outageStart);
    if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));
    // Backoff, not a storm: over the last 10 s of the outage, a handful of attempts per workspace.
    const lastTen = meter.between(Date.now() - 10_000, Date.now());
    totals.callsInLast10sOfOutage = lastTen;
    env.flyte.setDown(false);
    const recovered = Date.now();

    for (const id of ids) await converge(() => checkProvisioned(env, id, workspaceDoc(id)), `${id} after recovery`);
    await waitFor(async () => ((await env.admin.get(cmRef(toDelete))) ? undefined : true), {
      timeoutMs: 60_000,
      message: 'deleted workspace released after recovery',
    });
    await converge(() => checkGone(env, toDelete), 'deleted workspace gone');
    expect(env.flyte.project(toDelete)?.state).toBe(Project_ProjectState.ARCHIVED);
    const peak = meter.stop();
    // 4 workspaces, max backoff 5 s, 3 attempts per call: at most ~8 reconciles and ~24 calls in 10 s.
    expect(lastTen).toBeLessThanOrEqual(40);
    expect(peak).toBeLessThanOrEqual(60);
    expect(Date.now() - recovered).toBeLessThan(30_000);
    for (const id of ids) {
      expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
      const s = await statusOf(env, id);
      expect(s?.phase).toBe('Ready');
      expect(s && condition(s, 'FlyteReady')?.status).toBe('True');
    }
  });

  it('slower than the call deadline: DeadlineExceeded in status, other workspaces keep being served', async () => {
    const other = uniqueName('fo');
    await putWorkspace(env, other, workspaceDoc(other));
    await waitForStatus(env, other, (s) => s.phase === 'Ready');
    await env.controller.waitIdle();

    env.flyte.setLatency(3_000); // callTimeoutMs is 2 s
    totals.faults++;
    const slow = [uniqueName('fs'), uniqueName('fs'), uniqueName('fs'), uniqueName('fs'), uniqueName('fs')];
    await Promise.all(slow.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    // A Kubernetes-only change to another workspace is applied while every worker could be waiting on Flyte.
    const doc = workspaceDoc(other);
    (doc.users as unknown[]).push({ user_id: 'u4', email: `slow-${other}@example.com`, role: 'contributor' });
    const t0 = Date.now();
    await putWorkspace(env, other, doc);
    await waitFor(
      async () =>
        (await env.admin.list('RoleBinding', { namespace: `flyte-${other}` })).length === 3 ? true : undefined,
      { timeoutMs: 30_000, message: 'binding of the other workspace' },
    );
    const otherLatencyMs = Date.now() - t0;
    totals.otherWorkspaceLatencyMs = otherLatencyMs;
    for (const id of slow) {
      const s = await waitForStatus(env, id, (st) => st.steps.flyte?.state === 'Failed', 60_000);
      expectOnlyFlyteFailing(s, 'FlyteUnavailable');
      expect(s.steps.flyte?.message).toMatch(/DEADLINE_EXCEEDED|deadline|budget/i);
    }
    // Slow but within the deadline: everything converges.
    env.flyte.setLatency(400);
    for (const id of slow) await converge(() => checkProvisioned(env, id, workspaceDoc(id)), `${id} when merely slow`);
    env.flyte.setLatency(0);
    await converge(() => checkProvisioned(env, other, doc), 'other workspace');
    for (const id of slow) expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
    expect(otherLatencyMs).toBeLessThan(30_000);
  });

  it('RESOURCE_EXHAUSTED for 60 calls: retried with backoff, converges, not a storm', async () => {
    const meter = rateMeter();
    env.flyte.resourceExhausted(60);
    totals.faults += 60;
    const ids = [uniqueName('fr'), uniqueName('fr'), uniqueName('fr')];
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    const s = await waitForStatus(env, ids[0] as string, (st) => st.steps.flyte?.state === 'Failed', 30_000);
    expect(s.steps.flyte?.message).toMatch(/RESOURCE_EXHAUSTED/);
    expect(s.steps.kubernetes?.state).toBe('Ready');
    expect(s.steps.iam?.state).toBe('Ready');
    for (const id of ids)
      await converge(() => checkProvisioned(env, id, workspaceDoc(id)), `${id} after rate limiting`);
    expect(meter.stop()).toBeLessThanOrEqual(60);
    for (const id of ids) expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
  });

  it('lost answers (registered, but the reply is UNAVAILABLE): still exactly one project', async () => {
    env.flyte.resetCounters();
    env.flyte.failNext(3, Code.Unavailable, ['RegisterProject'], { afterApplying: true });
    env.flyte.failNext(4, Code.Unavailable, ['UpdateProjectDomainAttributes'], { afterApplying: true });
    totals.faults += 7;
    const ids = [uniqueName('fl'), uniqueName('fl'), uniqueName('fl')];
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    for (const id of ids) await converge(() => checkProvisioned(env, id, workspaceDoc(id)), `${id} after lost answers`);
    for (const id of ids) {
      expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
      expect((await statusOf(env, id))?.phase).toBe('Ready');
    }
    // Every RegisterProject after the first for a project was answered AlreadyExists and not retried blindly.
    expect(env.flyte.requests('RegisterProject').length).toBeLessThanOrEqual(ids.length + 3);
    expect(totals.problems).toEqual([]);
  });
});
