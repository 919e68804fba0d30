// IAM faults, injected by the AWS fault proxy in front of moto, under the real controller (own RBAC) with
// FlyteAdmin (double) on: throttling and 5xx are retried with backoff (inside the SDK, then by the work
// queue), while a terminal error (MalformedPolicyDocument, LimitExceeded) is reported once, with the AWS code,
// in status and as one Warning Event, and is not retried until the input changes: requests are counted at
// the proxy over a window.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RECONCILE_REQUEST_ANNOTATION } from '../../src/config/config.js';
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
const totals = { faults: 0, workspacesChecked: 0, problems: [] as Problem[], terminalRetriesInWindow: 0 };

beforeAll(async () => {
  env = await startFaultEnv({ name: 'fiam' });
});

afterAll(async () => {
  report('faults-iam', {
    faultsInjected: totals.faults,
    workspacesChecked: totals.workspacesChecked,
    terminalRetriesInWindow: totals.terminalRetriesInWindow,
    problems: totals.problems.length,
  });
  await env?.close();
});

beforeEach(async () => {
  await env.controller.waitIdle();
  env.aws.clearFaults();
  env.aws.resetCounts();
});

const cmRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });

async function terminalReconcileErrors(): Promise<number> {
  return (await env.metrics.terminalReconcileErrors.get()).values.reduce((sum, v) => sum + v.value, 0);
}

async function converge(check: () => Promise<Problem[]>, what: string, timeoutMs = 60_000): Promise<void> {
  totals.workspacesChecked++;
  try {
    await waitConverged(check, timeoutMs, what);
  } catch (e) {
    totals.problems.push(...(await check()));
    throw e;
  }
}

/**
 * IAM failed and the Flyte step has answered too: the Flyte step runs in its own lane after IAM's answer,
 * so a status in between shows it Progressing for a moment.
 */
const iamFailedFlyteSettled = (st: WorkspaceStatus) =>
  st.steps.iam?.state === 'Failed' && st.steps.flyte?.state === 'Ready';

function expectOnlyIamFailing(s: WorkspaceStatus, reason: string, code: string): void {
  expect(s.phase).toBe('Failed');
  expect(s.steps.kubernetes?.state).toBe('Ready');
  expect(s.steps.flyte?.state).toBe('Ready');
  expect(s.steps.iam?.state).toBe('Failed');
  expect(s.steps.iam?.reason).toBe(reason);
  expect(s.steps.iam?.message).toContain(code);
  expect(s.lastError).toContain(code);
  expect(s.conditions.find((c) => c.type === 'IAMReady')?.status).toBe('False');
}

describe('IAM faults', () => {
  it('throttling and 503 within the SDK retry budget are invisible: Ready, each call repeated exactly as injected', async () => {
    env.aws.inject({ error: 'Throttling', times: 2, action: 'CreateRole' });
    env.aws.inject({ error: 'ServiceUnavailable', times: 2, action: 'PutRolePolicy' });
    totals.faults += 4;
    const id = uniqueName('it');
    await putWorkspace(env, id, workspaceDoc(id));
    await converge(() => checkProvisioned(env, id, workspaceDoc(id)), 'after transient IAM errors');
    expect((await statusOf(env, id))?.phase).toBe('Ready');
    expect(env.aws.count('CreateRole')).toBe(3);
    expect(env.aws.count('PutRolePolicy')).toBe(3);
    expect(env.aws.injectedCounts()).toEqual({ CreateRole: 2, PutRolePolicy: 2 });
  });

  it('throttling beyond the SDK attempts: step Failed (IamThrottled), work-queue backoff, then Ready', async () => {
    env.aws.inject({ error: 'Throttling', times: 10, action: 'CreateRole' });
    totals.faults += 10;
    const id = uniqueName('ith');
    const samples: { t: number; n: number }[] = [];
    const timer = setInterval(() => samples.push({ t: Date.now(), n: env.aws.count('CreateRole') }), 100);
    try {
      await putWorkspace(env, id, workspaceDoc(id));
      const s = await waitForStatus(env, id, iamFailedFlyteSettled, 30_000);
      expectOnlyIamFailing(s, 'IamThrottled', 'Throttling');
      await converge(() => checkProvisioned(env, id, workspaceDoc(id)), 'after persistent throttling');
    } finally {
      clearInterval(timer);
    }
    // 10 throttled answers and one success: nothing beyond what the injected errors forced.
    expect(env.aws.count('CreateRole')).toBe(11);
    // Spread out by backoff: the 10 throttled attempts took seconds, not a burst.
    const first = samples.find((x) => x.n >= 1)?.t ?? 0;
    const last = samples.find((x) => x.n >= 11)?.t ?? 0;
    expect(last - first).toBeGreaterThan(1_000);
    expect((await statusOf(env, id))?.phase).toBe('Ready');
  });

  it('MalformedPolicyDocument: reported once with the AWS code, no retry storm, fixed by a rerun', async () => {
    env.aws.inject({ error: 'MalformedPolicyDocument', times: 1_000, action: 'PutRolePolicy' });
    totals.faults++;
    const terminalBefore = await terminalReconcileErrors();
    const id = uniqueName('im');
    await putWorkspace(env, id, workspaceDoc(id));
    const s = await waitForStatus(env, id, iamFailedFlyteSettled, 30_000);
    expectOnlyIamFailing(s, 'IamRejected', 'MalformedPolicyDocument');
    await env.controller.waitIdle();
    const afterFirst = env.aws.count('PutRolePolicy');
    // Never retried by the SDK (terminal) nor by the work queue. A new workspace is reconciled a second time
    // because its own new Kubernetes objects are events too; that pass may send the call once more (the IAM
    // step keeps no memory of failures, by design, so a resync can heal it), but nothing after that.
    expect(afterFirst).toBeGreaterThanOrEqual(1);
    expect(afterFirst).toBeLessThanOrEqual(2);
    expect(env.aws.injectedCounts()).toEqual({ PutRolePolicy: afterFirst });
    // Each reconcile that ended on the rejection is a terminal reconcile error (controller-runtime's metric).
    expect((await terminalReconcileErrors()) - terminalBefore).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 12_000));
    totals.terminalRetriesInWindow += env.aws.count('PutRolePolicy') - afterFirst;
    expect(env.aws.count('PutRolePolicy')).toBe(afterFirst);
    // One Warning Event, aggregated (its count is the number of reconciles that saw the failure).
    const warnings = (await env.admin.list('Event', { namespace: env.sourceNamespace })).filter(
      (e) => (e.involvedObject as { name?: string }).name === id && e.type === 'Warning',
    );
    expect(warnings.map((e) => e.reason)).toEqual(['IamRejected']);
    expect(Number(warnings[0]?.count)).toBeLessThanOrEqual(afterFirst);
    expect(String(warnings[0]?.message)).toContain('MalformedPolicyDocument');
    expect((await statusOf(env, id))?.steps.iam?.message).toMatch(/^MalformedPolicyDocument: /);

    // The fault is gone (someone fixed the account policy); a rerun request converges it.
    env.aws.clearFaults();
    await putWorkspace(env, id, workspaceDoc(id), { [RECONCILE_REQUEST_ANNOTATION]: 'fixed-1' });
    await converge(() => checkProvisioned(env, id, workspaceDoc(id)), 'after the rerun');
    const done = await waitForStatus(env, id, (st) => st.lastHandledReconcileAt === 'fixed-1' && st.phase === 'Ready');
    expect(done.steps.iam?.state).toBe('Ready');
    await waitForEvent(env, id, (e) => e.type === 'Normal' && e.reason === 'Provisioned');
  });

  it('LimitExceeded on CreateRole is terminal: not retried, status says so, nothing else created in IAM', async () => {
    env.aws.inject({ error: 'LimitExceeded', times: 1_000, action: 'CreateRole' });
    totals.faults++;
    const id = uniqueName('il');
    await putWorkspace(env, id, workspaceDoc(id));
    const s = await waitForStatus(env, id, iamFailedFlyteSettled, 30_000);
    expectOnlyIamFailing(s, 'IamRejected', 'LimitExceeded');
    await env.controller.waitIdle();
    const afterFirst = env.aws.count('CreateRole');
    expect(afterFirst).toBeLessThanOrEqual(2); // see the MalformedPolicyDocument case
    await new Promise((r) => setTimeout(r, 8_000));
    totals.terminalRetriesInWindow += env.aws.count('CreateRole') - afterFirst;
    expect(env.aws.count('CreateRole')).toBe(afterFirst);
    expect(env.aws.count('PutRolePolicy')).toBe(0);
    env.aws.clearFaults();
    // Deleting it works although IAM never had a role: nothing to delete there.
    await env.admin.delete(cmRef(id));
    await waitFor(async () => ((await env.admin.get(cmRef(id))) ? undefined : true), {
      timeoutMs: 60_000,
      message: 'released',
    });
    await converge(() => checkGone(env, id), 'deleted after LimitExceeded');
  });

  it('IAM unavailable (503) for 15 s, including during a teardown: retried with backoff, converges after', {
    tags: ['slow'],
  }, async () => {
    const doomed = uniqueName('iu');
    await putWorkspace(env, doomed, workspaceDoc(doomed));
    await waitForStatus(env, doomed, (s) => s.phase === 'Ready');
    await env.controller.waitIdle();
    env.aws.resetCounts();
    env.aws.inject({ error: 'ServiceUnavailable', times: 100_000 });
    totals.faults++;
    const created = uniqueName('iu');
    await putWorkspace(env, created, workspaceDoc(created));
    await env.admin.delete(cmRef(doomed));
    const s = await waitForStatus(env, created, iamFailedFlyteSettled, 30_000);
    expectOnlyIamFailing(s, 'IamUnavailable', 'ServiceUnavailable');
    await new Promise((r) => setTimeout(r, 15_000));
    const during = env.aws.total();
    env.aws.clearFaults();
    await converge(() => checkProvisioned(env, created, workspaceDoc(created)), 'created during the IAM outage');
    await waitFor(async () => ((await env.admin.get(cmRef(doomed))) ? undefined : true), {
      timeoutMs: 60_000,
      message: 'deleted during the IAM outage, released after',
    });
    await converge(() => checkGone(env, doomed), 'deleted during the IAM outage');
    // Two workspaces, 3 SDK attempts per call, work-queue backoff up to 5 s: tens of requests, not hundreds.
    expect(during).toBeLessThan(60);
    expect(totals.problems).toEqual([]);
  });
});
