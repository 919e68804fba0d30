// Issues "FlyteAdmin" and "AWS IAM" end to end: the real controller (own RBAC) against the FlyteAdmin
// double over real gRPC and the moto IAM emulator.
import { GetRoleCommand, IAMClient, ListRolePoliciesCommand } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FlyteAdminDouble, startFlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { SdkIamApi } from '../../src/adapters/iam.js';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
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

let f: Fixture;
let flyte: FlyteAdminDouble;
let iam: IAMClient;

beforeAll(async () => {
  flyte = await startFlyteAdminDouble();
  iam = new IAMClient({ region: 'us-east-1', endpoint: inject('motoEndpoint'), credentials: MOTO_CREDENTIALS });
  f = await startFixtureWithIam({
    flyte: { enabled: true, endpoint: flyte.url, insecure: true, consoleBaseUrl: 'http://console.local' },
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

  it('removing flyte archives the project after deleting its attributes, and removes the rest', async () => {
    await putWorkspace(f, cm, workspaceDoc(id, { workspace_name: 'Renamed Team', services: ['sagemaker'] }));
    await waitForStatus(f, cm, (s) => s.phase === 'Disabled');
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(flyte.inspect().attributes.filter((a) => a.project === id)).toHaveLength(0);
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
  });

  it('deleting the workspace archives the project and deletes the role', async () => {
    await deleteWorkspaceAndWait(f, cm);
    expect(flyte.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(await getRole(id)).toBeUndefined();
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
