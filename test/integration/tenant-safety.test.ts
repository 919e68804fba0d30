// Tenant isolation and least privilege, on the real control plane with the controller's own identity:
//   * what the controller's ServiceAccount cannot do at all (RBAC in manifests/rbac.yaml and the
//     ValidatingAdmissionPolicy in manifests/admission-policy.yaml): read Secrets, bind arbitrary ClusterRoles,
//     delete or take over namespaces and objects it does not manage, write ConfigMaps outside its own
//     namespaces and objects, impersonate;
//   * what a workspace ConfigMap cannot make it do: provision from outside the allowed namespaces, take over
//     another ConfigMap's workspace (also while the owner's document is temporarily broken), use a bucket
//     outside the pattern, adopt or delete a pre-existing namespace, IAM role or Flyte project that is not ours.
import { CreateRoleCommand, GetRoleCommand, ListRoleTagsCommand, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
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
import { describeError, kubeConfigFor, uniqueName, waitFor } from '../support/kube.js';

let env: FaultEnv;
let controllerKc: KubeConfig;
const totals = { deniedActions: 0, hostileWorkspaces: 0, workspacesChecked: 0, problems: [] as Problem[] };

beforeAll(async () => {
  env = await startFaultEnv({ name: 'tenant' });
  controllerKc = kubeConfigFor('controller', env.conn);
});

afterAll(async () => {
  report('tenant-safety', {
    deniedActions: totals.deniedActions,
    hostileWorkspaces: totals.hostileWorkspaces,
    workspacesChecked: totals.workspacesChecked,
    problems: totals.problems.length,
  });
  await env?.close();
});

const cmRef = (name: string, namespace = env.sourceNamespace) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  namespace,
  name,
});
const nsRef = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', name });

async function converge(check: () => Promise<Problem[]>, what: string, timeoutMs = 60_000): Promise<void> {
  totals.workspacesChecked++;
  try {
    await waitConverged(check, timeoutMs, what);
  } catch (e) {
    totals.problems.push(...(await check()));
    throw e;
  }
}

async function expectUntouched(what: string, check: () => Promise<Problem[]>): Promise<void> {
  totals.workspacesChecked++;
  const problems = await check();
  totals.problems.push(...problems);
  expect(problems, what).toEqual([]);
}

/** Runs `fn` as the controller and expects the apiserver to refuse it with 403 (RBAC or admission). */
async function denied(what: string, fn: () => Promise<unknown>, message?: RegExp): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, `${what} was allowed`).toBeInstanceOf(ApiException);
  expect((err as ApiException<unknown>).code, `${what}: ${describeError(err)}`).toBe(403);
  if (message) expect(describeError(err)).toMatch(message);
  totals.deniedActions++;
}

const VAP = /may only change or delete objects it manages/;
const dryRun = 'All';

describe('least privilege of the controller identity', () => {
  let managedNs: string;
  let foreignNs: string;

  beforeAll(async () => {
    const id = uniqueName('lp');
    await putWorkspace(env, id, workspaceDoc(id));
    await waitForStatus(env, id, (s) => s.phase === 'Ready');
    managedNs = `flyte-${id}`;
    foreignNs = uniqueName('foreign');
    await env.admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: foreignNs } });
    const adminCore = env.adminKc.makeApiClient(CoreV1Api);
    for (const ns of [managedNs, foreignNs, env.sourceNamespace, 'kube-system']) {
      await adminCore.createNamespacedSecret({
        namespace: ns,
        body: { metadata: { name: 'crown-jewels' }, stringData: { password: 'hunter2' } },
      });
    }
  });

  it('cannot read or list Secrets anywhere: kube-system, the source namespace, a foreign or even a managed namespace', async () => {
    const core = controllerKc.makeApiClient(CoreV1Api);
    for (const ns of ['kube-system', env.sourceNamespace, foreignNs, managedNs, 'default']) {
      await denied(`list secrets in ${ns}`, () => core.listNamespacedSecret({ namespace: ns }));
      if (ns !== 'default') {
        await denied(`get secret in ${ns}`, () => core.readNamespacedSecret({ name: 'crown-jewels', namespace: ns }));
      }
    }
    await denied('list secrets cluster-wide', () => core.listSecretForAllNamespaces());
    await denied('create a pod in a managed namespace', () =>
      core.createNamespacedPod({
        namespace: managedNs,
        dryRun,
        body: { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } },
      }),
    );
  });

  it('cannot bind cluster-admin or any other ClusterRole but the workspace roles (to users), nor create cluster-wide RBAC', async () => {
    const rbac = controllerKc.makeApiClient(RbacAuthorizationV1Api);
    const binding = (role: string) => ({
      metadata: { name: `escalate-${role}`, labels: { 'app.kubernetes.io/managed-by': 'flyte-workspace-controller' } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [{ kind: 'User', name: 'mallory@example.com', apiGroup: 'rbac.authorization.k8s.io' }],
    });
    const allowed: string[] = [];
    for (const role of [
      'cluster-admin',
      'admin',
      'edit',
      'view',
      'flyte-workspace-controller',
      'flyte-workspace-controller-source',
      'system:basic-user',
    ]) {
      try {
        await rbac.createNamespacedRoleBinding({ namespace: managedNs, dryRun, body: binding(role) });
        allowed.push(role);
      } catch (e) {
        expect(describeError(e)).toMatch(/^HTTP 403/);
        totals.deniedActions++;
      }
    }
    expect(allowed, 'ClusterRoles the controller could bind').toEqual([]);
    // The workspace roles, but to a group (every authenticated user) or a ServiceAccount: refused too.
    for (const subject of [
      { kind: 'Group', name: 'system:authenticated', apiGroup: 'rbac.authorization.k8s.io' },
      { kind: 'ServiceAccount', name: 'default', namespace: 'kube-system' },
    ]) {
      await denied(`workspace role bound to ${subject.kind} ${subject.name}`, () =>
        rbac.createNamespacedRoleBinding({
          namespace: managedNs,
          dryRun,
          body: { ...binding('flyte-workspace-owner'), subjects: [subject] },
        }),
      );
    }
    await denied('ClusterRoleBinding', () =>
      rbac.createClusterRoleBinding({
        dryRun,
        body: {
          metadata: { name: uniqueName('crb') },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
          subjects: [{ kind: 'User', name: 'mallory@example.com', apiGroup: 'rbac.authorization.k8s.io' }],
        },
      }),
    );
    await denied('ClusterRole', () =>
      rbac.createClusterRole({ dryRun, body: { metadata: { name: uniqueName('cr') }, rules: [] } }),
    );
    // Positive control: the two workspace roles are bindable (so the denials above are about the role).
    await rbac.createNamespacedRoleBinding({ namespace: managedNs, dryRun, body: binding('flyte-workspace-owner') });
  });

  it('cannot delete or take over namespaces and objects it does not manage (admission policy)', async () => {
    const core = controllerKc.makeApiClient(CoreV1Api);
    const rbac = controllerKc.makeApiClient(RbacAuthorizationV1Api);
    // default and kube-system are also protected by the apiserver itself ("may not be deleted").
    for (const ns of ['default', 'kube-system']) {
      await denied(`delete namespace ${ns}`, () => core.deleteNamespace({ name: ns, dryRun }));
    }
    for (const ns of [foreignNs, env.sourceNamespace, 'flyte-workspace-controller', 'flyte']) {
      await denied(`delete namespace ${ns}`, () => core.deleteNamespace({ name: ns, dryRun }), VAP);
    }
    // Adopting by adding our labels is an UPDATE of an object that was not ours: refused as well.
    await denied(
      'label a foreign namespace as managed',
      () =>
        core.patchNamespace(
          {
            name: foreignNs,
            dryRun,
            body: { metadata: { labels: { 'app.kubernetes.io/managed-by': 'flyte-workspace-controller' } } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      VAP,
    );
    await env.admin.create({
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: { name: 'team-quota', namespace: foreignNs },
      spec: { hard: { pods: '3' } },
    });
    await denied(
      'delete a foreign ResourceQuota',
      () => core.deleteNamespacedResourceQuota({ name: 'team-quota', namespace: foreignNs, dryRun }),
      VAP,
    );
    await denied(
      'delete the RoleBinding that lets it read its source namespace',
      () =>
        rbac.deleteNamespacedRoleBinding({
          name: 'flyte-workspace-controller-source',
          namespace: env.sourceNamespace,
          dryRun,
        }),
      VAP,
    );
    // ConfigMaps: it watches them cluster-wide (RBAC cannot narrow that), but writes only its own, in its own
    // namespaces; elsewhere it may annotate, nothing more (kube-system/aws-auth maps IAM roles to users).
    await env.admin.apply(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'aws-auth', namespace: 'kube-system' },
        data: { mapRoles: '[]' },
      },
      { fieldManager: 'cluster-admin' },
    );
    const CM_VAP = /may only create, change or delete ConfigMaps it manages/;
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const patchAwsAuth = (body: object) =>
      core.patchNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system', dryRun, body }, mergePatch);
    await denied('rewrite kube-system/aws-auth', () => patchAwsAuth({ data: { mapRoles: 'admin' } }), CM_VAP);
    await denied(
      'label kube-system/aws-auth as managed',
      () => patchAwsAuth({ metadata: { labels: { 'app.kubernetes.io/managed-by': 'flyte-workspace-controller' } } }),
      CM_VAP,
    );
    await denied(
      'delete kube-system/aws-auth',
      () => core.deleteNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system', dryRun }),
      CM_VAP,
    );
    for (const ns of ['kube-system', foreignNs]) {
      await denied(
        `create a ConfigMap in ${ns}`,
        () =>
          core.createNamespacedConfigMap({
            namespace: ns,
            dryRun,
            body: {
              metadata: { name: 'planted', labels: { 'app.kubernetes.io/managed-by': 'flyte-workspace-controller' } },
            },
          }),
        CM_VAP,
      );
    }
    // A workspace member's own ConfigMap in a managed namespace is not the controller's either.
    await env.admin.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'notebook-settings', namespace: managedNs },
      data: { theme: 'dark' },
    });
    await denied(
      "delete a member's ConfigMap in a managed namespace",
      () => core.deleteNamespacedConfigMap({ name: 'notebook-settings', namespace: managedNs, dryRun }),
      CM_VAP,
    );
    // Positive controls: annotating aws-auth (what a status write does), and its own context ConfigMap.
    await patchAwsAuth({ metadata: { annotations: { 'example.com/seen': 'yes' } } });
    await core.deleteNamespacedConfigMap({ name: 'flyte-workspace-context', namespace: managedNs, dryRun });
    // Positive control: its own namespace can be deleted (dry run).
    await core.deleteNamespace({ name: managedNs, dryRun });
    // Impersonation is not granted.
    await denied('impersonate an admin', () => core.listNamespace({}, setHeaderOptions('Impersonate-User', 'admin')));
  });
});

describe('what a workspace ConfigMap cannot make the controller do', () => {
  it('a ConfigMap outside the allowed source namespaces provisions nothing', async () => {
    const other = uniqueName('rogue');
    await env.admin.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: other } });
    const id = uniqueName('ro');
    await env.admin.apply(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: id, namespace: other, labels: { app: 'workspace-config' } },
        data: { 'workspace.json': JSON.stringify(workspaceDoc(id)) },
      },
      { fieldManager: 'rogue' },
    );
    totals.hostileWorkspaces++;
    // A workspace created afterwards in the allowed namespace proves the controller was running.
    const witness = uniqueName('wi');
    await putWorkspace(env, witness, workspaceDoc(witness));
    await converge(() => checkProvisioned(env, witness, workspaceDoc(witness)), 'witness');
    await expectUntouched('rogue workspace', () => checkGone(env, id));
    expect(
      (await env.admin.get(cmRef(id, other)))?.metadata.annotations?.['workspaces.flyte.org/status'],
    ).toBeUndefined();
  });

  it('a data bucket outside the pattern is Invalid and provisions nothing', async () => {
    const id = uniqueName('bk');
    await putWorkspace(env, id, workspaceDoc(id, { data_bucket: 'finance-data' }));
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, id, (st) => st.phase === 'Invalid');
    expect(s.invalidFields?.map((e) => e.field)).toContain('data_bucket');
    await env.controller.waitIdle();
    await expectUntouched('workspace with a foreign bucket', () => checkGone(env, id));
  });

  it('a second ConfigMap claiming a workspace id gets Conflict, changes nothing, and its deletion removes nothing', async () => {
    const id = uniqueName('cl');
    await putWorkspace(env, 'owner-cm', workspaceDoc(id));
    await converge(() => checkProvisioned(env, 'owner-cm', workspaceDoc(id)), 'owner');
    const ns = await env.admin.get(nsRef(`flyte-${id}`));
    const intruderDoc = workspaceDoc(id, {
      workspace_name: 'Hijacked',
      users: [{ user_id: 'm', email: 'mallory@example.com', role: 'owner' }],
    });
    await putWorkspace(env, 'intruder-cm', intruderDoc);
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, 'intruder-cm', (st) => st.phase === 'Conflict');
    expect(s.owner).not.toBe(true);
    await env.controller.waitIdle();
    await expectUntouched('owner while claimed', () => checkProvisioned(env, 'owner-cm', workspaceDoc(id)));
    await env.admin.delete(cmRef('intruder-cm'));
    await waitFor(async () => ((await env.admin.get(cmRef('intruder-cm'))) ? undefined : true), {
      message: 'intruder gone',
    });
    await env.controller.waitIdle();
    await expectUntouched('owner after the intruder left', () => checkProvisioned(env, 'owner-cm', workspaceDoc(id)));
    expect((await env.admin.get(nsRef(`flyte-${id}`)))?.metadata.uid).toBe(ns?.metadata.uid);
  });

  it('while the owner document is broken (naming another id), a ConfigMap claiming the workspace cannot take it over or tear it down', async () => {
    const id = uniqueName('hj');
    await putWorkspace(env, 'victim', workspaceDoc(id));
    await converge(() => checkProvisioned(env, 'victim', workspaceDoc(id)), 'victim');
    const ns = await env.admin.get(nsRef(`flyte-${id}`));
    const role = (await env.iamRaw.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role;
    // A bad edit: the document no longer validates, and the id in it is someone else's (or a typo).
    await putWorkspace(env, 'victim', { ...workspaceDoc(id), workspace_id: 'other-team', users: [] });
    await waitForStatus(env, 'victim', (s) => s.phase === 'Invalid');
    // Meanwhile another ConfigMap claims the victim's workspace id.
    const intruderDoc = workspaceDoc(id, {
      workspace_name: 'Hijacked',
      data_bucket: `${id}-data`,
      users: [{ user_id: 'm', email: 'mallory@example.com', role: 'owner' }],
    });
    await putWorkspace(env, 'hijacker', intruderDoc);
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, 'hijacker', (st) => st.phase === 'Conflict' || st.phase === 'Ready');
    expect(s.phase).toBe('Conflict');
    await env.controller.waitIdle();
    // The hijacker changed nothing: not the project's name, not the bindings.
    expect(env.flyte.project(id)?.name).toBe(`Flyte - Workspace ${id}`);
    const bindings = (await env.admin.list('RoleBinding', { namespace: `flyte-${id}` })).map((b) => b.metadata.name);
    expect(bindings).toHaveLength(2);
    // Deleting the hijacker must not tear down the victim's workspace.
    await env.admin.delete(cmRef('hijacker'));
    await waitFor(async () => ((await env.admin.get(cmRef('hijacker'))) ? undefined : true), {
      timeoutMs: 60_000,
      message: 'hijacker gone',
    });
    await env.controller.waitIdle();
    expect(env.flyte.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
    expect((await env.iamRaw.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role?.RoleId).toBe(
      role?.RoleId,
    );
    const after = (await env.admin.list('RoleBinding', { namespace: `flyte-${id}` })).map((b) => b.metadata.name);
    expect(after.sort()).toEqual([...bindings].sort());
    // The owner fixes its document: everything is still the same objects.
    await putWorkspace(env, 'victim', workspaceDoc(id));
    await converge(() => checkProvisioned(env, 'victim', workspaceDoc(id)), 'victim after the fix');
    expect((await env.admin.get(nsRef(`flyte-${id}`)))?.metadata.uid).toBe(ns?.metadata.uid);
  });
});

describe('changing the workspace_id of a provisioned workspace', () => {
  it('is refused (Invalid): the old workspace neither leaks nor becomes claimable, and deletion still removes it', async () => {
    const id = uniqueName('rn');
    const renamed = uniqueName('rn');
    await putWorkspace(env, 'renamer', workspaceDoc(id));
    await converge(() => checkProvisioned(env, 'renamer', workspaceDoc(id)), 'before the rename');
    const ns = await env.admin.get(nsRef(`flyte-${id}`));
    await putWorkspace(env, 'renamer', workspaceDoc(renamed));
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, 'renamer', (st) => st.phase !== 'Ready' || st.workspaceId === renamed);
    expect(s.phase).toBe('Invalid');
    expect(s.invalidFields?.map((e) => e.field)).toEqual(['workspace_id']);
    expect(s.workspaceId).toBe(id);
    await env.controller.waitIdle();
    // Nothing was created for the new id, nothing of the old one was touched.
    await expectUntouched('new id', () => checkGone(env, renamed));
    await expectUntouched('old id', () => checkProvisioned(env, 'renamer', workspaceDoc(id)));
    // The old workspace is still claimed by its ConfigMap: another one cannot take it over.
    await putWorkspace(env, 'squatter', workspaceDoc(id, { workspace_name: 'Squatter' }));
    totals.hostileWorkspaces++;
    expect((await waitForStatus(env, 'squatter', (st) => st.phase !== 'Provisioning')).phase).toBe('Conflict');
    await env.admin.delete(cmRef('squatter'));
    await waitFor(async () => ((await env.admin.get(cmRef('squatter'))) ? undefined : true), {
      message: 'squatter gone',
    });
    await env.controller.waitIdle();
    await expectUntouched('old id after the squatter left', () => checkProvisioned(env, 'renamer', workspaceDoc(id)));
    expect((await env.admin.get(nsRef(`flyte-${id}`)))?.metadata.uid).toBe(ns?.metadata.uid);
    // Deleting the ConfigMap (with the renamed document still in it) removes what it provisioned.
    await env.admin.delete(cmRef('renamer'));
    await waitFor(async () => ((await env.admin.get(cmRef('renamer'))) ? undefined : true), {
      timeoutMs: 90_000,
      message: 'renamer released',
    });
    await converge(() => checkGone(env, id), 'old id torn down');
    await expectUntouched('new id never created', () => checkGone(env, renamed));
  });
});

describe('pre-existing objects that are not ours are never adopted nor deleted', () => {
  it('a foreign namespace: Conflict, untouched, still there after the workspace is deleted', async () => {
    const id = uniqueName('pn');
    const foreign = await env.admin.create({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: `flyte-${id}`, labels: { team: 'payments' }, annotations: { owner: 'payments' } },
    });
    await env.admin.create({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: `flyte-${id}-runner`, namespace: `flyte-${id}` },
    });
    await putWorkspace(env, id, workspaceDoc(id));
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, id, (st) => st.phase === 'Conflict');
    expect(s.steps.kubernetes?.reason).toBe('ForeignObjectConflict');
    expect(s.steps.iam).toBeUndefined(); // nothing else was created
    await waitForEvent(env, id, (e) => e.type === 'Warning' && e.reason === 'ForeignObjectConflict');
    await env.controller.waitIdle();
    const live = await env.admin.get(nsRef(`flyte-${id}`));
    expect(live?.metadata.resourceVersion).toBe(foreign.metadata.resourceVersion);
    expect(live?.metadata.labels).toEqual({ team: 'payments', 'kubernetes.io/metadata.name': `flyte-${id}` });
    await expectUntouched('no IAM role or project for a conflicting workspace', () => checkGone(env, id));

    await env.admin.delete(cmRef(id));
    await waitFor(async () => ((await env.admin.get(cmRef(id))) ? undefined : true), { message: 'released' });
    await env.controller.waitIdle();
    const still = await env.admin.get(nsRef(`flyte-${id}`));
    expect(still?.metadata.uid).toBe(foreign.metadata.uid);
    expect(still?.metadata.deletionTimestamp).toBeUndefined();
    expect(
      await env.admin.get({
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        namespace: `flyte-${id}`,
        name: `flyte-${id}-runner`,
      }),
    ).toBeDefined();
  });

  it("a ConfigMap a workspace member labels as another workspace's is neither judged nor deleted by it", async () => {
    const member = uniqueName('fa');
    const victim = uniqueName('fb');
    await putWorkspace(env, member, workspaceDoc(member));
    await putWorkspace(env, victim, workspaceDoc(victim));
    await waitForStatus(env, member, (st) => st.phase === 'Ready');
    await waitForStatus(env, victim, (st) => st.phase === 'Ready');
    totals.hostileWorkspaces++;
    // Owners may create ConfigMaps in their namespace, labels included.
    const forgedRef = cmRef('forged', `flyte-${member}`);
    const forged = await env.admin.create({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: 'forged',
        namespace: `flyte-${member}`,
        labels: {
          'app.kubernetes.io/managed-by': 'flyte-workspace-controller',
          'workspaces.flyte.org/workspace-id': victim,
        },
      },
      data: { note: 'not the controller' },
    });
    // The victim's reconciles (the watch event, then a rerun) leave it alone: it is not in the victim's namespace.
    await putWorkspace(env, victim, workspaceDoc(victim), {
      'workspaces.flyte.org/reconcile-requested-at': 'forged-1',
    });
    const s = await waitForStatus(env, victim, (st) => st.lastHandledReconcileAt === 'forged-1');
    expect(s.phase).toBe('Ready');
    await env.controller.waitIdle();
    expect((await env.admin.get(forgedRef))?.metadata.resourceVersion).toBe(forged.metadata.resourceVersion);

    // Nor does the victim's teardown delete it.
    await env.admin.delete(cmRef(victim));
    await waitFor(async () => ((await env.admin.get(cmRef(victim))) ? undefined : true), {
      timeoutMs: 90_000,
      message: 'victim released',
    });
    expect((await env.admin.get(forgedRef))?.metadata.uid).toBe(forged.metadata.uid);
    await env.admin.delete(forgedRef);
  });

  it('a foreign IAM role with our name: Conflict, untouched, still there after the workspace is deleted', async () => {
    for (const tags of [
      [{ Key: 'team', Value: 'payments' }],
      [
        { Key: 'managed-by', Value: 'flyte-workspace-controller' },
        { Key: 'workspace-id', Value: 'somebody-else' },
      ],
    ]) {
      const id = uniqueName('pr');
      const roleName = `FlyteWorkspace-${id}-Role`;
      const trust = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      });
      const created = (
        await env.iamRaw.send(
          new CreateRoleCommand({ RoleName: roleName, AssumeRolePolicyDocument: trust, Tags: tags }),
        )
      ).Role;
      await env.iamRaw.send(
        new PutRolePolicyCommand({
          RoleName: roleName,
          PolicyName: 'payments',
          PolicyDocument: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::payments/*' }],
          }),
        }),
      );
      env.aws.resetCounts();
      await putWorkspace(env, id, workspaceDoc(id));
      totals.hostileWorkspaces++;
      const s = await waitForStatus(env, id, (st) => st.phase === 'Conflict');
      expect(s.steps.iam?.reason).toBe('RoleNotOwned');
      expect(s.steps.flyte).toBeUndefined();
      await env.controller.waitIdle();
      // Only reads reached IAM.
      expect(env.aws.writeCounts()).toEqual({});
      const live = (await env.iamRaw.send(new GetRoleCommand({ RoleName: roleName }))).Role;
      expect(live?.RoleId).toBe(created?.RoleId);
      expect(decodeURIComponent(String(live?.AssumeRolePolicyDocument))).toBe(trust);
      expect((await env.iamRaw.send(new ListRoleTagsCommand({ RoleName: roleName }))).Tags).toEqual(tags);
      expect(env.flyte.project(id)).toBeUndefined();

      await env.admin.delete(cmRef(id));
      await waitFor(async () => ((await env.admin.get(cmRef(id))) ? undefined : true), {
        timeoutMs: 60_000,
        message: 'released',
      });
      await env.controller.waitIdle();
      expect((await env.iamRaw.send(new GetRoleCommand({ RoleName: roleName }))).Role?.RoleId).toBe(created?.RoleId);
      expect(env.aws.writeCounts()).toEqual({});
      // Our own Kubernetes objects for it are gone.
      const left = await checkGone(env, id);
      expect(left.filter((p) => !p.what.startsWith('IAM role'))).toEqual([]);
    }
  });

  it('a foreign Flyte project with the workspace id: Conflict, untouched, still active after the workspace is deleted', async () => {
    const id = uniqueName('pf');
    env.flyte.seedProject({
      id,
      name: 'Payments',
      description: 'not yours',
      labels: { values: { team: 'payments' } },
      state: Project_ProjectState.ACTIVE,
    });
    env.flyte.seedAttributes(id, 'production', {
      target: { case: 'executionQueueAttributes', value: { tags: ['gpu'] } },
    });
    env.flyte.resetCounters();
    await putWorkspace(env, id, workspaceDoc(id));
    totals.hostileWorkspaces++;
    const s = await waitForStatus(env, id, (st) => st.phase === 'Conflict');
    expect(s.steps.flyte?.reason).toBe('FlyteProjectConflict');
    await env.controller.waitIdle();
    expect(env.flyte.calls().writes).toBe(0);
    await env.admin.delete(cmRef(id));
    await waitFor(async () => ((await env.admin.get(cmRef(id))) ? undefined : true), {
      timeoutMs: 60_000,
      message: 'released',
    });
    await env.controller.waitIdle();
    expect(env.flyte.calls().writes).toBe(0);
    const p = env.flyte.project(id);
    expect(p?.state).toBe(Project_ProjectState.ACTIVE);
    expect(p?.name).toBe('Payments');
    expect(p?.labels?.values).toEqual({ team: 'payments' });
    expect(env.flyte.inspect().attributes.filter((a) => a.project === id)).toHaveLength(1);
    // Everything else the workspace had (Kubernetes, IAM) was ours and is gone.
    const left = await checkGone(env, id);
    expect(left.filter((p) => !p.what.includes('Flyte'))).toEqual([]);
    expect((await statusOf(env, id)) ?? 'gone').toBe('gone');
    expect(totals.problems).toEqual([]);
  });
});
