// Issue "controller core", end to end on the real control plane, controller under its own ClusterRole.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FINALIZER } from '../../src/config/config.js';
import { roleBindingName } from '../../src/desired/kubernetes.js';
import {
  deleteWorkspaceAndWait,
  type Fixture,
  putWorkspace,
  startFixture,
  statusOf,
  waitForEvent,
  waitForStatus,
  workspaceDoc,
} from '../support/controller-fixture.js';
import { uniqueName, waitFor } from '../support/kube.js';

// Non-canonical on purpose: the server stores "2" and "4Gi"; a string compare would rewrite forever.
const small = {
  'requests.cpu': '2000m',
  'requests.memory': '4096Mi',
  'limits.cpu': '4',
  'limits.memory': '8Gi',
  pods: '10',
  persistentvolumeclaims: '2',
};

let f: Fixture;
beforeAll(async () => {
  f = await startFixture({ tiers: { small }, flyte: { userEndpoint: 'flyte.example.com:443', userInsecure: false } });
});
afterAll(async () => {
  await f?.stop();
});

const ns = (id: string) => `flyte-${id}`;
const rbs = async (id: string) =>
  (await f.admin.list('RoleBinding', { namespace: ns(id) })).map((o) => o.metadata.name).sort();
const contextRef = (id: string) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  namespace: ns(id),
  name: 'flyte-workspace-context',
});
const contextData = async (id: string) =>
  (await f.admin.get(contextRef(id)))?.data as Record<string, string> | undefined;
const quota = async (id: string) =>
  (await f.admin.get({ apiVersion: 'v1', kind: 'ResourceQuota', namespace: ns(id), name: `${id}-quota` }))?.spec as
    | { hard: Record<string, string> }
    | undefined;

/** Waits until the controller has nothing queued or running, then returns its write count. */
async function settledWrites(): Promise<number> {
  await f.controller.waitIdle();
  return f.controller.kube.stats.writes;
}

/** Reconciles run so far, once the queue has been idle a moment (late watch echoes included). */
async function settledReconciles(): Promise<number> {
  await new Promise((r) => setTimeout(r, 500));
  await f.controller.waitIdle();
  return (await f.metrics.reconcileTotal.get()).values.reduce((sum, v) => sum + v.value, 0);
}

describe('workspace lifecycle in Kubernetes', () => {
  const id = uniqueName('ws');
  const cm = `${id}-cfg`;

  it('ADDED creates namespace, quota, network policy, service account, context, bindings and a finalizer', async () => {
    await putWorkspace(f, cm, workspaceDoc(id));
    const status = await waitForStatus(f, cm, (s) => s.phase === 'Ready');
    expect(status.namespaces).toEqual([ns(id)]);
    expect(status.owner).toBe(true);
    const namespace = await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns(id) });
    expect(namespace?.metadata.labels).toMatchObject({
      'workspace-id': id,
      'flyte.org/tenant': id,
      'app.kubernetes.io/managed-by': 'flyte-workspace-controller',
      'workspaces.flyte.org/workspace-id': id,
    });
    expect((await quota(id))?.hard['limits.memory']).toBe('80Gi');
    const np = await f.admin.get({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      namespace: ns(id),
      name: `${id}-isolation`,
    });
    expect((np?.spec as { policyTypes: string[] } | undefined)?.policyTypes).toEqual(['Ingress', 'Egress']);
    const sa = await f.admin.get({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      namespace: ns(id),
      name: `flyte-${id}-runner`,
    });
    expect(sa).toBeDefined();
    const context = await f.admin.get(contextRef(id));
    expect(context?.metadata.labels).toMatchObject({
      'app.kubernetes.io/managed-by': 'flyte-workspace-controller',
      'app.kubernetes.io/component': 'workspace-context',
      'workspaces.flyte.org/workspace-id': id,
    });
    expect(context?.data).toMatchObject({
      FLYTE_PLATFORM_URL: 'flyte.example.com:443',
      FLYTE_PLATFORM_INSECURE: 'false',
      FLYTE_DEFAULT_PROJECT: id,
      FLYTE_DEFAULT_DOMAIN: 'development',
      WORKSPACE_ID: id,
      WORKSPACE_DATA_BUCKET: `${id}-data`,
    });
    expect(((context?.data ?? {}) as Record<string, string>)['config.yaml']).toContain(
      'endpoint: "dns:///flyte.example.com:443"',
    );
    expect(await rbs(id)).toEqual(
      [
        roleBindingName('owner', `owner-${id}@example.com`),
        roleBindingName('contributor', `dev-${id}@example.com`),
      ].sort(),
    );
    const live = await f.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: f.sourceNamespace, name: cm });
    expect(live?.metadata.finalizers).toContain(FINALIZER);
    await waitForEvent(f, cm, (e) => e.type === 'Normal' && e.reason === 'Provisioned');
  });

  it('a no-op resync makes zero writes', async () => {
    const before = await settledWrites();
    await f.controller.resyncAll();
    expect(await settledWrites()).toBe(before);
  });

  it('MODIFIED: a user added writes only that binding (and the status)', async () => {
    await settledWrites();
    const before = new Map(f.controller.kube.stats.byOperation);
    const doc = workspaceDoc(id);
    (doc.users as unknown[]).push({ user_id: 'u3', email: `new-${id}@example.com`, role: 'contributor' });
    await putWorkspace(f, cm, doc);
    await waitFor(async () => ((await rbs(id)).length === 3 ? true : undefined), { message: 'third binding' });
    await settledWrites();
    const delta = (op: string) => (f.controller.kube.stats.byOperation.get(op) ?? 0) - (before.get(op) ?? 0);
    // One RoleBinding apply and one status write on the ConfigMap; no other object is touched.
    expect(delta('apply_RoleBinding')).toBe(1);
    expect(delta('apply_ConfigMap')).toBe(1);
    for (const kind of ['Namespace', 'ResourceQuota', 'NetworkPolicy', 'ServiceAccount']) {
      expect(delta(`apply_${kind}`), kind).toBe(0);
      expect(delta(`delete_${kind}`), kind).toBe(0);
    }
    expect(delta('delete_RoleBinding')).toBe(0);
  });

  it('MODIFIED: user removed, role changed and tier changed converge in one reconcile', async () => {
    const reconcilesBefore = await settledReconciles();
    const doc = workspaceDoc(id, {
      tier: 'small',
      users: [{ user_id: 'u2', email: `dev-${id}@example.com`, role: 'owner' }],
    });
    await putWorkspace(f, cm, doc);
    await waitFor(
      async () =>
        JSON.stringify(await rbs(id)) === JSON.stringify([roleBindingName('owner', `dev-${id}@example.com`)])
          ? true
          : undefined,
      { message: 'bindings converge to the single owner' },
    );
    await waitFor(async () => ((await quota(id))?.hard['limits.cpu'] === '4' ? true : undefined), {
      message: 'quota follows tier',
    });
    await waitForStatus(f, cm, (s) => s.phase === 'Ready');
    expect((await quota(id))?.hard['requests.memory']).toBe('4Gi');
    // The DELETED events of the two bindings it removed are echoes of its own deletes: no second pass.
    expect((await settledReconciles()) - reconcilesBefore).toBe(1);
    const before = await settledWrites();
    await f.controller.resyncAll();
    expect(await settledWrites()).toBe(before);
  });

  it('repairs a deleted RoleBinding and a hand-edited quota within seconds', async () => {
    const name = roleBindingName('owner', `dev-${id}@example.com`);
    await f.admin.delete({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', namespace: ns(id), name });
    await f.admin.apply(
      {
        apiVersion: 'v1',
        kind: 'ResourceQuota',
        metadata: { name: `${id}-quota`, namespace: ns(id) },
        spec: { hard: { ...small, 'limits.cpu': '999' } },
      },
      { fieldManager: 'kubectl-edit' },
    );
    await waitFor(async () => ((await rbs(id)).includes(name) ? true : undefined), {
      timeoutMs: 15_000,
      message: 'binding restored',
    });
    await waitFor(async () => ((await quota(id))?.hard['limits.cpu'] === '4' ? true : undefined), {
      timeoutMs: 15_000,
      message: 'quota restored',
    });
    // Counted once the repairing reconcile ends, which can be just after the restored objects are visible.
    await f.controller.waitIdle();
    const metrics = await f.metrics.render();
    expect(metrics).toMatch(/flyte_workspace_drift_repairs_total\{kind="RoleBinding"\} [1-9]/);
    expect(metrics).toMatch(/flyte_workspace_drift_repairs_total\{kind="ResourceQuota"\} [1-9]/);
  });

  it('repairs the context ConfigMap: an edited value, a stale key of its own, a key someone added, a delete', async () => {
    const want = await contextData(id);
    expect(want?.WORKSPACE_ID).toBe(id);
    const live = await f.admin.get(contextRef(id));
    const meta = { name: 'flyte-workspace-context', namespace: ns(id), labels: live?.metadata.labels };
    await settledWrites();
    let before = new Map(f.controller.kube.stats.byOperation);
    const delta = (op: string) => (f.controller.kube.stats.byOperation.get(op) ?? 0) - (before.get(op) ?? 0);
    const restored = async (message: string) =>
      waitFor(async () => (JSON.stringify(await contextData(id)) === JSON.stringify(want) ? true : undefined), {
        timeoutMs: 15_000,
        message,
      });

    // A user changes a value: the apply takes it back.
    await f.admin.apply(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { FLYTE_DEFAULT_DOMAIN: 'production' } },
      { fieldManager: 'kubectl-edit' },
    );
    await restored('edited value restored');

    // A key written under the controller's own field manager (as an older version would have): the apply
    // alone drops it.
    await settledWrites();
    before = new Map(f.controller.kube.stats.byOperation);
    await f.admin.apply(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { ...want, OLD_SETTING: 'x' } },
      { fieldManager: 'flyte-workspace-controller' },
    );
    await restored('stale key of its own removed');
    await settledWrites();
    expect(delta('apply_ConfigMap')).toBeGreaterThanOrEqual(1);
    expect(delta('patch_ConfigMap')).toBe(0);

    // A key added by another writer survives an apply: a merge patch removes it.
    before = new Map(f.controller.kube.stats.byOperation);
    await f.admin.apply(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { EXTRA: 'injected' } },
      { fieldManager: 'kubectl-edit' },
    );
    await restored('added key removed');
    await settledWrites();
    expect(delta('patch_ConfigMap')).toBe(1);

    await f.admin.delete(contextRef(id));
    await restored('deleted context recreated');
    await f.controller.waitIdle();
    expect(await f.metrics.render()).toMatch(/flyte_workspace_drift_repairs_total\{kind="ConfigMap"\} [3-9]/);

    // Converged again: a resync writes nothing.
    const writes = await settledWrites();
    await f.controller.resyncAll();
    expect(await settledWrites()).toBe(writes);
  });

  it('acknowledges the rerun annotation in status', async () => {
    const doc = workspaceDoc(id, {
      tier: 'small',
      users: [{ user_id: 'u2', email: `dev-${id}@example.com`, role: 'owner' }],
    });
    await putWorkspace(f, cm, doc, { 'workspaces.flyte.org/reconcile-requested-at': 'token-1' });
    const s = await waitForStatus(f, cm, (st) => st.lastHandledReconcileAt === 'token-1');
    expect(s.phase).toBe('Ready');
  });

  it('invalid JSON and a bad field are reported and keep existing resources', async () => {
    const before = await rbs(id);
    await putWorkspace(f, cm, '{"workspace_id": ');
    let s = await waitForStatus(f, cm, (st) => st.phase === 'Invalid');
    expect(s.invalidFields?.[0]?.field).toBe('workspace.json');
    const bad = workspaceDoc(id, {
      users: [{ user_id: 'u2', email: `dev-${id}@example.com`, role: 'admin' }],
    });
    await putWorkspace(f, cm, bad);
    s = await waitForStatus(f, cm, (st) => st.invalidFields?.[0]?.field === 'users[0].role');
    expect(s.lastError).toContain('users[0].role: must be owner or contributor');
    await waitForEvent(
      f,
      cm,
      (e) => e.type === 'Warning' && e.reason === 'InvalidSpec' && e.message.includes('users[0].role'),
    );
    expect(await rbs(id)).toEqual(before);
    expect(await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns(id) })).toBeDefined();
  });

  it('deletion removes everything, then the finalizer', async () => {
    await deleteWorkspaceAndWait(f, cm);
    expect(await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns(id) })).toBeUndefined();
    expect(await f.admin.get(contextRef(id))).toBeUndefined();
  });
});

describe('tenant boundaries', () => {
  it('ignores a workspace ConfigMap outside the allowed source namespaces', async () => {
    const other = uniqueName('elsewhere');
    await f.admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: other } });
    const id = uniqueName('ws');
    await f.admin.apply(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'sneaky', namespace: other, labels: { app: 'workspace-config' } },
        data: { 'workspace.json': JSON.stringify(workspaceDoc(id)) },
      },
      { fieldManager: 'attacker' },
    );
    // A legitimate workspace created afterwards proves the controller was watching all along.
    const witness = uniqueName('ws');
    await putWorkspace(f, `${witness}-cfg`, workspaceDoc(witness));
    await waitForStatus(f, `${witness}-cfg`, (s) => s.phase === 'Ready');
    expect(await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: ns(id) })).toBeUndefined();
    const sneaky = await f.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: other, name: 'sneaky' });
    expect(sneaky?.metadata.annotations?.['workspaces.flyte.org/status']).toBeUndefined();
  });

  it('two ConfigMaps claiming one workspace_id do not fight: the second is a conflict', async () => {
    const id = uniqueName('ws');
    await putWorkspace(f, 'first', workspaceDoc(id));
    await waitForStatus(f, 'first', (s) => s.phase === 'Ready');
    await putWorkspace(
      f,
      'second',
      workspaceDoc(id, { users: [{ user_id: 'x', email: 'x@example.com', role: 'owner' }] }),
    );
    const s = await waitForStatus(f, 'second', (st) => st.phase === 'Conflict');
    expect(s.lastError).toContain(`${f.sourceNamespace}/first`);
    // The first one's bindings were not replaced by the second's users.
    expect(await rbs(id)).toEqual(
      [
        roleBindingName('owner', `owner-${id}@example.com`),
        roleBindingName('contributor', `dev-${id}@example.com`),
      ].sort(),
    );
    expect((await statusOf(f, 'first'))?.phase).toBe('Ready');
    await waitForEvent(f, 'second', (e) => e.type === 'Warning' && e.reason === 'WorkspaceClaimConflict');
  });
});
