// Bulkheads: a sick FlyteAdmin (black-holed: no answer until the call deadline) or a throttling IAM fills
// its own lane, never the reconcile workers. A user removed from a workspace loses the RoleBinding while
// the dependency is still sick (the lane still holds jobs, the faults are still in place), new workspaces
// show where their external steps stand (Progressing or Waiting, with the reason), and after recovery
// every workspace converges with exactly one project and one role each.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/adapters/kubernetes.js';
import { RECONCILE_REQUEST_ANNOTATION } from '../../src/config/config.js';
import type { WorkspaceStatus } from '../../src/reconcile/status.js';
import { putWorkspace, statusOf, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import { checkProvisioned, type FaultEnv, startFaultEnv, waitConverged } from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

let env: FaultEnv;

beforeAll(async () => {
  // Narrow lanes (2 calls per system) so new workspaces queue in them; 2 workers.
  env = await startFaultEnv({
    name: 'bulk',
    config: {
      reconcile: { concurrency: 2 },
      flyte: { maxConcurrentCalls: 2, callTimeoutMs: 1_500, maxAttempts: 2 },
      aws: { maxConcurrentCalls: 2, maxAttempts: 3 },
    },
  });
});

afterAll(async () => {
  await env?.close();
});

async function roleBindingSubjects(id: string): Promise<string[]> {
  const rbs = await env.admin.list('RoleBinding', { namespace: `flyte-${id}` });
  return rbs.flatMap((rb: KubeObject) => ((rb.subjects as { name: string }[] | undefined) ?? []).map((s) => s.name));
}

function laneJobs(system: string): number {
  const counts = env.controller.laneCounts()[system];
  return counts ? counts.running + counts.waiting : 0;
}

/** `id`'s document without its contributor u2. */
function withoutContributor(id: string): Record<string, unknown> {
  const doc = workspaceDoc(id);
  (doc.users as unknown[]).splice(1, 1);
  return doc;
}

/** Removes u2 from `id` and resolves once its RoleBinding is gone (the subject is the user id by default). */
async function removeContributor(id: string): Promise<void> {
  await putWorkspace(env, id, withoutContributor(id));
  await waitFor(async () => !(await roleBindingSubjects(id)).some((s) => s === 'u2' || s.startsWith('dev-')), {
    timeoutMs: 30_000,
    message: `u2's RoleBinding in flyte-${id} deleted`,
  });
}

async function rerun(id: string): Promise<void> {
  await putWorkspace(env, id, workspaceDoc(id), { [RECONCILE_REQUEST_ANNOTATION]: `${Date.now()}` });
}

const stepState = (s: WorkspaceStatus | undefined, step: 'iam' | 'flyte') => s?.steps[step]?.state;

describe('bulkheads: access changes never wait for a sick dependency', () => {
  it('FlyteAdmin black-holed: a user removal completes while Flyte steps hang, then all converge', {
    tags: ['slow'],
  }, async () => {
    const victim = uniqueName('bv');
    await putWorkspace(env, victim, workspaceDoc(victim));
    await waitForStatus(env, victim, (s) => s.phase === 'Ready');

    env.flyte.setLatency(10 * 60_000); // every call waits far past its deadline: black-holed
    const fresh = [uniqueName('bn'), uniqueName('bn'), uniqueName('bn'), uniqueName('bn')];
    try {
      // The victim's own Flyte step hangs too (a rerun reads FlyteAdmin), and new workspaces fill the lane.
      await rerun(victim);
      await Promise.all(fresh.map((id) => putWorkspace(env, id, workspaceDoc(id))));
      await waitFor(() => laneJobs('flyte') >= 3, { timeoutMs: 30_000, message: 'Flyte steps held in their lane' });

      await removeContributor(victim);
      // Still sick when the access was removed: the lane holds jobs, and no workspace has a project yet.
      expect(laneJobs('flyte')).toBeGreaterThan(0);
      for (const id of fresh) expect(env.flyte.project(id)).toBeUndefined();

      // Where each new workspace stands is visible: Kubernetes and IAM Ready, Flyte Progressing or Waiting.
      const shown = await Promise.all(
        fresh.map((id) =>
          waitForStatus(env, id, (s) => ['Progressing', 'Waiting'].includes(stepState(s, 'flyte') ?? ''), 30_000),
        ),
      );
      for (const s of shown) {
        expect(s.phase).toBe('Provisioning');
        expect(s.steps.kubernetes?.state).toBe('Ready');
        expect(s.steps.iam?.state).toBe('Ready');
        expect(s.steps.flyte?.reason).toMatch(/^Flyte(InProgress|Busy)$/);
      }
      expect(shown.some((s) => stepState(s, 'flyte') === 'Waiting')).toBe(true);
    } finally {
      env.flyte.setLatency(0);
    }
    for (const id of fresh) {
      await waitConverged(() => checkProvisioned(env, id, workspaceDoc(id)), 90_000, `${id} converged`);
    }
    await waitConverged(() => checkProvisioned(env, victim, withoutContributor(victim)), 90_000, `${victim} converged`);
    await waitForStatus(env, victim, (st) => st.phase === 'Ready', 90_000);
    expect(await roleBindingSubjects(victim)).toHaveLength(1);
  });

  it('IAM throttling: a user removal completes while IAM calls are throttled, then all converge with one role each', {
    tags: ['slow'],
  }, async () => {
    const victim = uniqueName('bi');
    await putWorkspace(env, victim, workspaceDoc(victim));
    await waitForStatus(env, victim, (s) => s.phase === 'Ready');

    env.aws.inject({ error: 'Throttling', times: 100_000 });
    const fresh = [uniqueName('bt'), uniqueName('bt'), uniqueName('bt')];
    try {
      await Promise.all(fresh.map((id) => putWorkspace(env, id, workspaceDoc(id))));
      await waitFor(() => laneJobs('iam') >= 2, { timeoutMs: 30_000, message: 'IAM steps held in their lane' });
      await removeContributor(victim);
      const throttled = Object.values(env.aws.injectedCounts()).reduce((n, c) => n + c, 0);
      expect(throttled).toBeGreaterThan(0); // IAM really was throttling when the access was removed
      for (const id of fresh) {
        const st = await statusOf(env, id);
        expect(st?.phase).not.toBe('Ready');
      }
    } finally {
      env.aws.clearFaults();
    }
    for (const id of fresh) {
      await waitConverged(() => checkProvisioned(env, id, workspaceDoc(id)), 120_000, `${id} converged`);
    }
    await waitConverged(() => checkProvisioned(env, victim, withoutContributor(victim)), 60_000, `${victim} converged`);
    const roles = await env.iamRaw.send(
      new (await import('@aws-sdk/client-iam')).ListRolesCommand({ PathPrefix: env.rolePath }),
    );
    const names = (roles.Roles ?? []).map((r) => r.RoleName);
    for (const id of [victim, ...fresh]) expect(names.filter((n) => n?.includes(`-${id}-`))).toHaveLength(1);
  });
});
