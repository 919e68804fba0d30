// After a restart the controller replays its initial list: every workspace is reconciled again, and with
// an empty in-memory IAM record each one re-reads its role, paced by the IAM request budget. A change made
// meanwhile must not wait behind that replay (controller-runtime's priority queue: the initial list and
// resyncs are Low, events Normal). One worker and a small budget make the order observable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putWorkspace, statusOf, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import { type FaultEnv, startFaultEnv } from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

const N = 10;
let env: FaultEnv;

beforeAll(async () => {
  env = await startFaultEnv({
    name: 'prio',
    flyte: false,
    iamRequestsPerSecond: 4,
    config: { reconcile: { concurrency: 1 } },
  });
});

afterAll(async () => {
  await env?.close();
});

async function reconcilesSinceStart(): Promise<number> {
  return (await env.metrics.reconcileTotal.get()).values.reduce((sum, v) => sum + v.value, 0);
}

describe('work queue priority in the running controller', () => {
  it('a change made while a restart replays every workspace (IAM re-reads) is handled ahead of the replay', async () => {
    const ids = Array.from({ length: N }, () => uniqueName('wp'));
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    await Promise.all(ids.map((id) => waitForStatus(env, id, (s) => s.phase === 'Ready', 90_000)));
    await env.controller.waitIdle();

    // The initial list comes back in name order; under FIFO the last name would be handled last.
    const changed = [...ids].sort().at(-1) as string;
    const before = (await statusOf(env, changed))?.specHash;
    const doc = workspaceDoc(changed);
    (doc.users as unknown[]).push({ user_id: 'u7', email: `late-${changed}@example.com`, role: 'contributor' });

    await env.stopController();
    await env.startController();
    await putWorkspace(env, changed, doc);
    await waitForStatus(env, changed, (s) => s.phase === 'Ready' && s.specHash !== before, 60_000);
    const doneWhenChangeReady = await reconcilesSinceStart();

    // Every workspace is re-read in IAM: N reconciles, each waiting on the budget (4/s, 3 reads each).
    await waitFor(async () => ((await reconcilesSinceStart()) >= N ? true : undefined), {
      timeoutMs: 60_000,
      message: `${N} reconciles after the restart`,
    });
    await env.controller.waitIdle();
    expect(await reconcilesSinceStart()).toBe(N);
    // The change went ahead of the replay: at most the reconcile already running and the one the
    // worker took before the change's event arrived were done before it (FIFO would give N).
    expect(doneWhenChangeReady).toBeLessThanOrEqual(3);
  });
});
