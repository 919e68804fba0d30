// Issues "FlyteAdmin" and "AWS IAM" end to end: the real controller (own RBAC) against the FlyteAdmin
// double over real gRPC and the moto IAM emulator.
import { GetRoleCommand, IAMClient, ListRolePoliciesCommand } from '@aws-sdk/client-iam';
import { type Client, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FlyteAdminDouble, startFlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { SdkIamApi } from '../../src/adapters/iam.js';
import { MANAGED_BY_LABEL, RECONCILE_REQUEST_ANNOTATION, WORKSPACE_ID_LABEL } from '../../src/config/config.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import { AdminService } from '../../src/gen/flyteidl/service/admin_projects_pb.js';
import {
  deleteWorkspaceAndWait,
  type Fixture,
  inject,
  MOTO_CREDENTIALS,
  putWorkspace,
  startFixtureWithIam,
  waitForStatus,
  workspaceDoc,
} from '../support/controller-fixture.js';
import { uniqueName, waitFor } from '../support/kube.js';
import { expectUserOverridesIntact, setUserOverrides, type UserOverrides } from './flyte-helpers.js';

let f: Fixture;
let flyte: FlyteAdminDouble;
let iam: IAMClient;
/** What users and operators do in FlyteAdmin themselves. */
let admin: Client<typeof AdminService>;

beforeAll(async () => {
  flyte = await startFlyteAdminDouble();
  iam = new IAMClient({ region: 'us-east-1', endpoint: inject('motoEndpoint'), credentials: MOTO_CREDENTIALS });
  admin = createClient(AdminService, createGrpcTransport({ baseUrl: flyte.url }));
  f = await startFixtureWithIam({
    flyte: {
      enabled: true,
      endpoint: flyte.url,
      insecure: true,
      consoleBaseUrl: 'http://console.local',
      orphanSweep: { enabled: true, dryRun: false },
    },
  });
});
afterAll(async () => {
  await f?.stop();
  await flyte?.close();
});

const roleName = (id: string) => `FlyteWorkspace-${id}-Role`;
const getRole = async (id: string) => {
  try {
    return (await iam.send(new GetRoleCommand({ RoleName: roleName(id) }))).Role;
  } catch {
    return undefined;
  }
};
const writesTo = (system: 'flyte' | 'iam') =>
  system === 'flyte' ? flyte.calls().writes : (f.controller.clients.iam as SdkIamApi).stats.writes;

describe('a workspace across Kubernetes, IAM and FlyteAdmin', () => {
  const id = uniqueName('ext');
  const cm = `${id}-cfg`;
  let user: UserOverrides;
  /** Our project-domain rows of the workspace's project. */
  const ourRows = () =>
    flyte
      .inspect()
      .attributes.filter((a) => a.project === id && a.domain !== '' && a.workflow === '' && a.launchPlan === '');

  it('creates the IAM role, the Flyte project with per-domain settings, and links them', async () => {
    await putWorkspace(f, cm, workspaceDoc(id));
    const status = await waitForStatus(f, cm, (s) => s.phase === 'Ready');
    const role = await getRole(id);
    expect(role?.Arn).toBe(`arn:aws:iam::123456789012:role/flyte-workspaces/${roleName(id)}`);
    expect(role?.Tags).toEqual(expect.arrayContaining([{ Key: 'workspace-id', Value: id }]));
    const policies = await iam.send(new ListRolePoliciesCommand({ RoleName: roleName(id) }));
    expect(policies.PolicyNames).toEqual(['workspace-data']);
    expect(status.roleArn).toBe(role?.Arn);
    const sa = await f.admin.get({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      namespace: `flyte-${id}`,
      name: `flyte-${id}-runner`,
    });
    expect(sa?.metadata.annotations?.['eks.amazonaws.com/role-arn']).toBe(role?.Arn);

    const project = flyte.project(id);
    expect(project?.name).toBe(`Flyte - Workspace ${id}`);
    expect(project?.state).toBe(Project_ProjectState.ACTIVE);
    expect(status.flyteProject).toBe(id);
    expect(status.consoleUrl).toBe(`http://console.local/console/projects/${id}`);
    const attrs = flyte.inspect().attributes.filter((a) => a.project === id);
    // WORKFLOW_EXECUTION_CONFIG and CLUSTER_RESOURCE in each of the three domains.
    expect(attrs).toHaveLength(6);
    const wec = attrs.find((a) => a.domain === 'development' && a.attributes.target.case === 'workflowExecutionConfig');
    const value = wec?.attributes.target.value as {
      securityContext?: { runAs?: { k8sServiceAccount?: string } };
      rawOutputDataConfig?: { outputLocationPrefix?: string };
    };
    expect(value.securityContext?.runAs?.k8sServiceAccount).toBe(`flyte-${id}-runner`);
    expect(value.rawOutputDataConfig?.outputLocationPrefix).toMatch(new RegExp(`^s3://${id}-data/`));
  });

  it("users' own workflow- and launch-plan-level overrides are set next to ours", async () => {
    user = await setUserOverrides(admin, flyte, id);
    await expectUserOverridesIntact(admin, flyte, id, user);
  });

  it('a user change touches neither FlyteAdmin nor IAM', async () => {
    await f.controller.waitIdle();
    const before = { flyte: writesTo('flyte'), iam: writesTo('iam'), flyteCalls: flyte.calls().reads };
    const doc = workspaceDoc(id);
    (doc.users as unknown[]).push({ user_id: 'u7', email: `u7-${id}@example.com`, role: 'contributor' });
    await putWorkspace(f, cm, doc);
    await waitFor(
      async () => ((await f.admin.list('RoleBinding', { namespace: `flyte-${id}` })).length === 3 ? true : undefined),
      { message: 'new binding' },
    );
    await f.controller.waitIdle();
    expect(writesTo('flyte')).toBe(before.flyte);
    expect(writesTo('iam')).toBe(before.iam);
  });

  it('a rename is one UpdateProject that carries state ACTIVE', async () => {
    await f.controller.waitIdle();
    flyte.resetCounters();
    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team' }));
    await waitFor(async () => (flyte.project(id)?.name === 'Flyte - Renamed Team' ? true : undefined), {
      message: 'project renamed',
    });
    await f.controller.waitIdle();
    const updates = flyte.requests('UpdateProject');
    expect(updates).toHaveLength(1);
    expect((updates[0]?.request as { state?: number } | undefined)?.state).toBe(Project_ProjectState.ACTIVE);
    expect(flyte.calls().byMethod.RegisterProject ?? 0).toBe(0);
  });

  it("an operator's project-level delete, which takes our rows too, is repaired by a rerun", async () => {
    await f.controller.waitIdle();
    await admin.deleteProjectAttributes({ project: id, resourceType: MatchableResource.WORKFLOW_EXECUTION_CONFIG });
    expect(ourRows()).toHaveLength(3);
    const token = `repair-${Date.now()}`;
    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team' }), {
      [RECONCILE_REQUEST_ANNOTATION]: token,
    });
    await waitForStatus(f, cm, (s) => s.lastHandledReconcileAt === token && s.phase === 'Ready');
    expect(ourRows()).toHaveLength(6);
    // The operator's delete took the user's workflow-level row of that type with it (FlyteAdmin's
    // wildcard); the user sets it again.
    user = await setUserOverrides(admin, flyte, id);
  });

  it('removing flyte archives the project and keeps every attribute row, then removes the rest', async () => {
    flyte.resetCounters();
    const rowsBefore = flyte.inspect().attributes.filter((a) => a.project === id);
    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team', services: ['sagemaker'] }));
    await waitForStatus(f, cm, (s) => s.phase === 'Disabled');
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(flyte.inspect().attributes.filter((a) => a.project === id)).toEqual(rowsBefore);
    expect(flyte.calls().byMethod.DeleteProjectDomainAttributes ?? 0).toBe(0);
    await expectUserOverridesIntact(admin, flyte, id, user);
    expect(await getRole(id)).toBeUndefined();
    await waitFor(
      async () =>
        (await f.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: `flyte-${id}` })) ? undefined : true,
      { timeoutMs: 60_000, message: 'namespace gone' },
    );
    const live = await f.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: f.sourceNamespace, name: cm });
    expect(live?.metadata.finalizers ?? []).not.toContain('workspaces.flyte.org/cleanup');
  });

  it('re-adding flyte unarchives the same project (no duplicate)', async () => {
    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team' }));
    await waitForStatus(f, cm, (s) => s.phase === 'Ready', 90_000);
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
    expect(flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
    expect(await getRole(id)).toBeDefined();
    expect(ourRows()).toHaveLength(6);
    await expectUserOverridesIntact(admin, flyte, id, user);
  });

  it('deleting the workspace archives the project and deletes the role; re-creating it finds the overrides', async () => {
    await deleteWorkspaceAndWait(f, cm);
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(await getRole(id)).toBeUndefined();
    await expectUserOverridesIntact(admin, flyte, id, user);

    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team' }));
    await waitForStatus(f, cm, (s) => s.phase === 'Ready', 90_000);
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
    await expectUserOverridesIntact(admin, flyte, id, user);
    await deleteWorkspaceAndWait(f, cm);
  });

  it('the orphan sweep archives our projects whose workspace is in no watched source, from FlyteAdmin alone', async () => {
    const ghost = uniqueName('ghost');
    flyte.seedProject({
      id: ghost,
      name: `Flyte - ${ghost}`,
      labels: { values: { [MANAGED_BY_LABEL]: f.cfg.fieldManager, [WORKSPACE_ID_LABEL]: ghost } },
    });
    const live = uniqueName('alive');
    await putWorkspace(f, `${live}-cfg`, workspaceDoc(live));
    await waitForStatus(f, `${live}-cfg`, (s) => s.phase === 'Ready', 90_000);
    const before = (await f.metrics.orphansRemoved.get()).values.find(
      (v) => v.labels.system === 'flyte' && v.labels.dry_run === 'false',
    );
    await f.controller.runOrphanSweep();
    expect(flyte.project(ghost)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(flyte.project(live)?.state).toBe(Project_ProjectState.ACTIVE);
    const after = (await f.metrics.orphansRemoved.get()).values.find(
      (v) => v.labels.system === 'flyte' && v.labels.dry_run === 'false',
    );
    expect((after?.value ?? 0) - (before?.value ?? 0)).toBe(1);
    await deleteWorkspaceAndWait(f, `${live}-cfg`);
  });

  it('an invalid project id never reaches FlyteAdmin or IAM', async () => {
    flyte.resetCounters();
    const bad = 'Bad_Project.Id';
    await putWorkspace(f, 'invalid-id', workspaceDoc('x', { workspace_id: bad, data_bucket: 'x-data' }));
    const s = await waitForStatus(f, 'invalid-id', (st) => st.phase === 'Invalid');
    expect(s.invalidFields?.map((e) => e.field)).toContain('workspace_id');
    expect(flyte.requests().filter((r) => JSON.stringify(r.request).includes(bad))).toHaveLength(0);
  });
});
