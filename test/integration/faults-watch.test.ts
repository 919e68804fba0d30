// Watch faults between the controller and kube-apiserver, injected by a proxy (test/support/faults.ts):
// a silent stall (the stream stays open but delivers nothing, not even its end), a watch answered 410 Expired
// (as after etcd compaction: the events in between are gone for good, only a relist can find them), and
// streams killed mid-flight. During each gap we create, modify, delete and unlabel workspace ConfigMaps and
// delete a managed RoleBinding; afterwards every one of those changes must have been acted on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINALIZER, STATUS_ANNOTATION } from '../../src/config/config.js';
import { parseStatus } from '../../src/reconcile/status.js';
import { putWorkspace, statusOf, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkGone,
  checkProvisioned,
  type FaultEnv,
  type Problem,
  report,
  startFaultEnv,
  sumSeries,
  waitConverged,
} from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

let env: FaultEnv;
const totals = { faults: 0, rounds: 0, workspacesChecked: 0, problems: [] as Problem[] };

beforeAll(async () => {
  env = await startFaultEnv({
    name: 'fwatch',
    kubeProxy: true,
    // Short server-side timeouts so healthy streams end and reopen often; a stream silent for 8 s (longer
    // than its 5 s server timeout, so it cannot be a quiet healthy one) counts as stalled.
    watch: {
      minWatchTimeoutSeconds: 5,
      maxWatchTimeoutSeconds: 5,
      stallSeconds: 8,
      backoff: { initialMs: 100, maxMs: 1000 },
    },
  });
});

afterAll(async () => {
  report('faults-watch', {
    faultsInjected: totals.faults,
    rounds: totals.rounds,
    workspacesChecked: totals.workspacesChecked,
    problems: totals.problems.length,
  });
  await env?.close();
});

const isConfigMaps = (p: string) => p.endsWith('/configmaps');
const cmRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });

async function restarts(reason: string): Promise<number> {
  return sumSeries(
    await env.metrics.render(),
    'flyte_workspace_watch_restarts_total',
    new RegExp(`reason="${reason}"`),
  );
}

interface Round {
  added: string;
  modified: string;
  deleted: string;
  unlabelled: string;
  repaired: string;
}

/** The ConfigMap watch and the five managed-kind watches are all open. */
async function allWatchesOpen(): Promise<void> {
  await waitFor(() => ((env.kubeProxy?.openWatches() ?? 0) >= 6 ? true : undefined), {
    timeoutMs: 15_000,
    message: 'all six watches open',
  });
}

/** Four Ready workspaces to change during the gap, plus the id of one created during it. */
async function prepareRound(): Promise<Round> {
  const r: Round = {
    added: uniqueName('wa'),
    modified: uniqueName('wm'),
    deleted: uniqueName('wd'),
    unlabelled: uniqueName('wu'),
    repaired: uniqueName('wr'),
  };
  const existing = [r.modified, r.deleted, r.unlabelled, r.repaired];
  await Promise.all(existing.map((id) => putWorkspace(env, id, workspaceDoc(id))));
  await Promise.all(existing.map((id) => waitForStatus(env, id, (s) => s.phase === 'Ready')));
  await env.controller.waitIdle();
  return r;
}

const modifiedDoc = (id: string) => {
  const doc = workspaceDoc(id);
  (doc.users as unknown[]).push({ user_id: 'u9', email: `late-${id}@example.com`, role: 'contributor' });
  return doc;
};

/** ADDED, MODIFIED, DELETED (with finalizer), label removal (a DELETE for the selector) and a managed DELETE. */
async function changeEverything(r: Round): Promise<void> {
  await putWorkspace(env, r.added, workspaceDoc(r.added));
  await putWorkspace(env, r.modified, modifiedDoc(r.modified));
  await env.admin.delete(cmRef(r.deleted));
  await env.admin.mergePatch(cmRef(r.unlabelled), { metadata: { labels: { app: null } } });
  const rbs = await env.admin.list('RoleBinding', { namespace: `flyte-${r.repaired}` });
  expect(rbs.length).toBe(2);
  await env.admin.delete({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    namespace: `flyte-${r.repaired}`,
    name: rbs[0]?.metadata.name as string,
  });
}

async function expectEverythingSeen(r: Round, what: string): Promise<void> {
  const problems: Problem[] = [];
  const converge = async (check: () => Promise<Problem[]>, label: string) => {
    try {
      await waitConverged(check, 60_000, `${what}: ${label}`);
    } catch (e) {
      problems.push(...(await check()));
      throw e;
    } finally {
      totals.workspacesChecked++;
    }
  };
  try {
    await converge(() => checkProvisioned(env, r.added, workspaceDoc(r.added)), 'ADDED workspace provisioned');
    await converge(() => checkProvisioned(env, r.modified, modifiedDoc(r.modified)), 'MODIFIED users applied');
    await converge(() => checkProvisioned(env, r.repaired, workspaceDoc(r.repaired)), 'deleted binding restored');
    await waitFor(async () => ((await env.admin.get(cmRef(r.deleted))) ? undefined : true), {
      timeoutMs: 90_000,
      message: `${what}: deleted ConfigMap released`,
    });
    await converge(() => checkGone(env, r.deleted), 'DELETED workspace torn down');
    await waitFor(
      async () => {
        const cm = await env.admin.get(cmRef(r.unlabelled));
        return cm && !cm.metadata.finalizers?.includes(FINALIZER) ? true : undefined;
      },
      { timeoutMs: 90_000, message: `${what}: unlabelled ConfigMap released` },
    );
    await converge(() => checkGone(env, r.unlabelled), 'unlabelled workspace torn down');
    expect((await statusOf(env, r.added))?.phase).toBe('Ready');
    expect((await statusOf(env, r.modified))?.phase).toBe('Ready');
  } finally {
    totals.problems.push(...problems);
    totals.rounds++;
  }
}

describe('watch faults (proxy between controller and kube-apiserver)', () => {
  it('a silent stall of every watch is detected and the relist finds every change made meanwhile', async () => {
    const r = await prepareRound();
    const stalledBefore = await restarts('stalled');
    await allWatchesOpen();
    const blackHoled = env.kubeProxy?.stallWatches(true) ?? 0;
    expect(blackHoled).toBeGreaterThanOrEqual(6); // the ConfigMap watch and five managed kinds
    totals.faults += blackHoled;
    await changeEverything(r);
    // The events went nowhere: nothing happens until the stall is detected (8 s of silence).
    await new Promise((res) => setTimeout(res, 1000));
    expect(await statusOf(env, r.added)).toBeUndefined();
    // Heal the network for new connections; the stalled streams stay dead until the controller drops them.
    env.kubeProxy?.stallWatches(false);
    await waitFor(async () => ((await restarts('stalled')) >= stalledBefore + 6 ? true : undefined), {
      timeoutMs: 30_000,
      message: 'every reflector to detect its stall',
    });
    await expectEverythingSeen(r, 'after a stall');
  });

  it('410 Expired on the reconnecting watch (ERROR event) forces a relist that finds the lost events', async () => {
    const r = await prepareRound();
    const expiredBefore = await restarts('expired');
    await allWatchesOpen();
    // Lose the events: streams go silent, changes happen, then the streams die and the resourceVersion
    // they would resume from is "compacted".
    totals.faults += env.kubeProxy?.stallWatches(true) ?? 0;
    await changeEverything(r);
    await new Promise((res) => setTimeout(res, 500));
    expect(await statusOf(env, r.added)).toBeUndefined();
    env.kubeProxy?.stallWatches(false);
    env.kubeProxy?.expireWatches(6, { how: 'event' });
    totals.faults += 6 + (env.kubeProxy?.killWatches() ?? 0);
    await waitFor(async () => ((await restarts('expired')) >= expiredBefore + 6 ? true : undefined), {
      timeoutMs: 30_000,
      message: 'every reflector to see 410 and relist',
    });
    await expectEverythingSeen(r, 'after 410 (ERROR event)');
  });

  it('HTTP 410 and killed streams on the ConfigMap watch: relist, nothing missed', async () => {
    const r = await prepareRound();
    const expiredBefore = await restarts('expired');
    totals.faults += env.kubeProxy?.stallWatches(true, isConfigMaps) ?? 0;
    await changeEverything(r);
    env.kubeProxy?.stallWatches(false);
    env.kubeProxy?.expireWatches(2, { how: 'http', match: isConfigMaps });
    totals.faults += 2 + (env.kubeProxy?.killWatches(isConfigMaps) ?? 0);
    await waitFor(async () => ((await restarts('expired')) >= expiredBefore + 1 ? true : undefined), {
      timeoutMs: 30_000,
      message: 'the ConfigMap reflector to relist after HTTP 410',
    });
    // The managed watches were never interrupted: they saw the RoleBinding deletion live.
    await expectEverythingSeen(r, 'after HTTP 410');
    // Repeated kills while idle: the controller keeps reconnecting (and stays ready).
    for (let i = 0; i < 5; i++) {
      await allWatchesOpen();
      totals.faults += env.kubeProxy?.killWatches() ?? 0;
    }
    await waitFor(() => (env.controller.ready().ok ? true : undefined), {
      timeoutMs: 20_000,
      message: 'controller ready again after repeated stream kills',
    });
    const late = uniqueName('wl');
    await putWorkspace(env, late, workspaceDoc(late));
    await waitConverged(() => checkProvisioned(env, late, workspaceDoc(late)), 30_000, 'workspace after kills');
    totals.workspacesChecked++;
    expect(totals.problems).toEqual([]);
  });

  it('ConfigMap watch events 1.5 s behind the writes: late echoes queue nothing, and the phase metric catches up', async () => {
    await env.controller.waitIdle();
    const phaseCount = async (phase: string) =>
      sumSeries(await env.metrics.render(), 'flyte_workspace_workspaces', new RegExp(`phase="${phase}"`));
    const reconcilesBefore = sumSeries(await env.metrics.render(), 'controller_runtime_reconcile_total');
    env.kubeProxy?.delayWatches(1500, isConfigMaps);
    try {
      const ids = [uniqueName('wy'), uniqueName('wy'), uniqueName('wy')];
      await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
      await Promise.all(ids.map((id) => waitForStatus(env, id, (s) => s.phase === 'Ready')));
      await env.controller.waitIdle();
      // The status write's watch event arrives after its reconcile ended, as a status-only update: it must
      // still move the gauge, which otherwise keeps the phase the cache had when the reconcile ended.
      const cms = await env.admin.list('ConfigMap', { namespace: env.sourceNamespace });
      const ready = cms.filter((cm) => parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION])?.phase === 'Ready');
      await waitFor(async () => ((await phaseCount('Ready')) === ready.length ? true : undefined), {
        timeoutMs: 10_000,
        message: `flyte_workspace_workspaces{phase="Ready"} to reach ${ready.length}`,
      });
      expect(await phaseCount('Provisioning')).toBe(0);
      // Late echoes of the controller's own writes are recognised as such: they queue nothing. (How many
      // reconciles the workspaces took is not fixed here: each external step that ran in its lane brings its
      // workspace back once, and a reconcile that read the 1.5 s old cache may be redone.)
      const reconcilesAtReady = sumSeries(await env.metrics.render(), 'controller_runtime_reconcile_total');
      expect(reconcilesAtReady - reconcilesBefore).toBeGreaterThanOrEqual(ids.length);
      expect(reconcilesAtReady - reconcilesBefore).toBeLessThanOrEqual(ids.length * 6);
      await new Promise((r) => setTimeout(r, 2500));
      await env.controller.waitIdle();
      expect(sumSeries(await env.metrics.render(), 'controller_runtime_reconcile_total')).toBe(reconcilesAtReady);
    } finally {
      env.kubeProxy?.delayWatches(0);
    }
  });
});
