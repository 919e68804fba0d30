// What a controller restart and a periodic resync cost at scale, and who goes first.
//
// After a restart the steps' in-memory "verified" records are empty. A status that records a step as
// Ready for the same desired state is trusted and re-read at a random point within one drift-check
// interval, so a restart of thousands of converged workspaces costs no IAM or FlyteAdmin calls at once.
// When re-reads do pile up (a resync after the interval, paced by the IAM request budget), a change made
// meanwhile goes ahead of them (controller-runtime's priority queue: the initial list and resyncs are
// Low, events Normal). One worker and a small IAM budget make the order observable.
import { UntagRoleCommand } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putWorkspace, statusOf, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import { checkProvisioned, type FaultEnv, startFaultEnv, waitConverged } from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

const N = 10;
const DRIFT_CHECK_S = 2;
let env: FaultEnv;
const ids = Array.from({ length: N }, () => uniqueName('wp'));

beforeAll(async () => {
  env = await startFaultEnv({
    name: 'prio',
    iamRequestsPerSecond: 4,
    config: {
      reconcile: { concurrency: 1 },
      // The budget that sizes the drift-check interval is high enough not to stretch it; the client's
      // actual budget is iamRequestsPerSecond.
      aws: { driftCheckIntervalSeconds: DRIFT_CHECK_S, requestsPerSecond: 100 },
      flyte: { driftCheckIntervalSeconds: DRIFT_CHECK_S },
    },
  });
  await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
  await Promise.all(ids.map((id) => waitForStatus(env, id, (s) => s.phase === 'Ready', 90_000)));
  await env.controller.waitIdle();
});

afterAll(async () => {
  await env?.close();
});

async function reconcilesSinceStart(): Promise<number> {
  return (await env.metrics.reconcileTotal.get()).values.reduce((sum, v) => sum + v.value, 0);
}

describe('restart and resync', () => {
  it('a restart trusts the recorded status: no IAM or FlyteAdmin call per workspace, and drift made while down is found within one interval', async () => {
    await env.stopController();
    const victim = ids[0] as string;
    const roleName = (await statusOf(env, victim))?.roleArn?.split('/').at(-1) as string;
    await env.iamRaw.send(new UntagRoleCommand({ RoleName: roleName, TagKeys: ['data-bucket'] }));
    env.aws.resetCounts();
    env.flyte.resetCounters();

    await env.startController();
    await env.controller.waitIdle();
    expect(await reconcilesSinceStart()).toBe(N);
    expect(env.aws.counts()).toEqual({});
    // One GetDomains for the whole process (the desired state depends on the domains), nothing per workspace.
    const flyteCalls = Object.entries(env.flyte.calls().byMethod).filter(([, n]) => n > 0);
    expect(flyteCalls).toEqual([['GetDomains', 1]]);

    // Every record now expires within DRIFT_CHECK_S; the next resync re-reads all and repairs the tag.
    await new Promise((r) => setTimeout(r, DRIFT_CHECK_S * 1000 + 100));
    await env.controller.resyncAll();
    await waitConverged(() => checkProvisioned(env, victim, workspaceDoc(victim)), 60_000, 'tag restored');
    await env.controller.waitIdle(60_000);
    expect(env.aws.count('GetRole')).toBe(N);
    expect(env.aws.writeCounts()).toEqual({ TagRole: 1 });
    expect((await env.metrics.driftCheckInterval.get()).values).toEqual([
      expect.objectContaining({ labels: { system: 'iam' }, value: DRIFT_CHECK_S }),
    ]);
  });

  it('a change made while a resync re-reads every workspace in IAM is handled ahead of the resync', async () => {
    await new Promise((r) => setTimeout(r, DRIFT_CHECK_S * 1000 + 100));
    // The resync queues keys in name order; under FIFO the last name would be handled last.
    const changed = [...ids].sort().at(-1) as string;
    const before = (await statusOf(env, changed))?.specHash;
    const doc = workspaceDoc(changed);
    (doc.users as unknown[]).push({ user_id: 'u7', email: `late-${changed}@example.com`, role: 'contributor' });
    const reconcilesBefore = await reconcilesSinceStart();
    const getRolesBefore = env.aws.count('GetRole');
    const requestsBefore = env.aws.requests().length;
    const changedRole = (await statusOf(env, changed))?.roleArn?.split('/').at(-1) as string;
    expect(changedRole).toBeTruthy();

    await env.controller.resyncAll();
    await putWorkspace(env, changed, doc);
    await waitForStatus(env, changed, (s) => s.phase === 'Ready' && s.specHash !== before, 60_000);
    const doneWhenChangeReady = (await reconcilesSinceStart()) - reconcilesBefore;

    // Each reconcile re-reads its role (3 reads at 4/s) and its Flyte project.
    await waitFor(async () => ((await reconcilesSinceStart()) - reconcilesBefore >= N ? true : undefined), {
      timeoutMs: 60_000,
      message: `${N} reconciles after the resync`,
    });
    await env.controller.waitIdle();
    // The resync's reconciles hand their IAM re-reads to the IAM lane as background work and end at once,
    // so they may all be done before the change is Ready. What must not happen is the change's own IAM
    // check waiting behind those re-reads: at most the ones already running in the lane (its width,
    // aws.maxConcurrentCalls) and the one started before the change's event arrived read a role first
    // (FIFO would give N).
    // The proxy's log gives the exact order; a count sampled when status shows the change would also
    // include reads made between the check and the status poll.
    expect(doneWhenChangeReady).toBeGreaterThanOrEqual(1);
    const roleReads = env.aws
      .requests()
      .slice(requestsBefore)
      .filter((r) => r.action === 'GetRole');
    const changeRead = roleReads.findIndex((r) => r.roleName === changedRole);
    expect(changeRead, 'the change read its role').toBeGreaterThanOrEqual(0);
    expect(changeRead, 'role reads ahead of the change').toBeLessThanOrEqual(env.cfg.aws.maxConcurrentCalls + 1);
    // One reconcile per workspace, plus the change's own when its lane job brings news.
    const reconciles = (await reconcilesSinceStart()) - reconcilesBefore;
    expect(reconciles).toBeGreaterThanOrEqual(N);
    expect(reconciles).toBeLessThanOrEqual(N + 2);
    expect(env.aws.count('GetRole') - getRolesBefore, 'the resync re-read every role').toBeGreaterThanOrEqual(N);
  });
});
