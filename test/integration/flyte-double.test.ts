// The FlyteAdmin double itself, through a plain connect client: it must reproduce FlyteAdmin's
// semantics (docs/flyteadmin-semantics.md), or tests of the step prove nothing.
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { InactiveProjectSchema, Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import { AdminService } from '../../src/gen/flyteidl/service/admin_projects_pb.js';

let double: FlyteAdminDouble;
let admin: Client<typeof AdminService>;

beforeAll(async () => {
  double = await FlyteAdminDouble.start();
  admin = createClient(AdminService, createGrpcTransport({ baseUrl: double.url }));
});
afterAll(async () => {
  await double.close();
});
beforeEach(() => double.reset());

async function rejects(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('expected an error');
}

const wec = (sa: string) => ({
  target: {
    case: 'workflowExecutionConfig' as const,
    value: { securityContext: { runAs: { k8sServiceAccount: sa } } },
  },
});
const cra = (attributes: Record<string, string>) => ({
  target: { case: 'clusterResourceAttributes' as const, value: { attributes } },
});

describe('RegisterProject', () => {
  it('validates in FlyteAdmin order with its messages', async () => {
    const cases: [Parameters<typeof admin.registerProject>[0], string][] = [
      [{}, 'missing project'],
      [{ project: { id: 'p' } }, 'missing project_name'],
      [{ project: { name: 'n' } }, 'missing project_id'],
      [
        { project: { id: 'p', name: 'n', labels: { values: { foo: '#bar' } } } },
        "invalid label value [#bar]: [a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]",
      ],
      [
        {
          project: {
            id: 'p',
            name: 'n',
            labels: { values: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
          },
        },
        'labels map cannot exceed 16 entries',
      ],
      [{ project: { id: 'Bad_Id', name: 'n' } }, 'invalid project id [Bad_Id]'],
      [{ project: { id: 'p', name: 'é'.repeat(33) } }, 'project_name cannot exceed 64 characters'],
      [
        { project: { id: 'p', name: 'n', description: 'x'.repeat(301) } },
        'project_description cannot exceed 300 characters',
      ],
      [
        { project: { id: 'p', name: 'n', domains: [{ id: 'development', name: 'development' }] } },
        'Domains are currently only set system wide. Please retry without domains included in your request.',
      ],
    ];
    for (const [req, message] of cases) {
      const err = await rejects(admin.registerProject(req));
      expect(err.code, message).toBe(Code.InvalidArgument);
      expect(err.rawMessage.startsWith(message), `${err.rawMessage} vs ${message}`).toBe(true);
    }
    expect(double.inspect().projects).toEqual([]);
  });

  it('duplicate id: AlreadyExists; 64-byte names are fine', async () => {
    await admin.registerProject({ project: { id: 'p', name: 'é'.repeat(32) } });
    const err = await rejects(admin.registerProject({ project: { id: 'p', name: 'other' } }));
    expect(err.code).toBe(Code.AlreadyExists);
  });
});

describe('UpdateProject', () => {
  beforeEach(async () => {
    await admin.registerProject({
      project: { id: 'p', name: 'name', description: 'desc', labels: { values: { a: '1' } } },
    });
  });

  it('missing project: NotFound before validation', async () => {
    const err = await rejects(admin.updateProject({ id: 'Not_Valid', name: 'x' }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toBe('project [Not_Valid] not found');
  });

  it('skips zero values, keeps absent labels, replaces present labels, always writes state', async () => {
    await admin.updateProject({ id: 'p', state: Project_ProjectState.ARCHIVED });
    expect(double.project('p')).toMatchObject({
      name: 'name',
      description: 'desc',
      labels: { values: { a: '1' } },
      state: Project_ProjectState.ARCHIVED,
    });
    // An update without state un-archives (state 0 = ACTIVE is written).
    await admin.updateProject({ id: 'p', labels: { values: { b: '2' } } });
    expect(double.project('p')).toMatchObject({ labels: { values: { b: '2' } }, state: Project_ProjectState.ACTIVE });
    await admin.updateProject({ id: 'p', labels: {} });
    expect(double.project('p')?.labels?.values).toEqual({});
  });
});

describe('GetProject / ListProjects / GetDomains', () => {
  it('GetProject returns archived projects with the global domains; NotFound otherwise', async () => {
    await admin.registerProject({ project: { id: 'p', name: 'n', state: Project_ProjectState.ARCHIVED } });
    const p = await admin.getProject({ id: 'p' });
    expect(p.state).toBe(Project_ProjectState.ARCHIVED);
    expect(p.domains.map((d) => d.id)).toEqual(['development', 'staging', 'production']);
    const err = await rejects(admin.getProject({ id: 'q' }));
    expect([err.code, err.rawMessage]).toEqual([Code.NotFound, 'project [q] not found']);
    expect((await admin.getDomains({})).domains.map((d) => d.id)).toEqual(['development', 'staging', 'production']);
  });

  it('ListProjects hides archived without filters, sorts by id, pages with offset tokens', async () => {
    for (const id of ['c', 'a', 'd', 'b']) await admin.registerProject({ project: { id, name: id } });
    await admin.updateProject({ id: 'd', state: Project_ProjectState.ARCHIVED });
    const all = await admin.listProjects({});
    expect(all.projects.map((p) => p.id)).toEqual(['a', 'b', 'c']);
    expect(all.token).toBe('');
    const p1 = await admin.listProjects({ limit: 2 });
    expect([p1.projects.map((p) => p.id), p1.token]).toEqual([['a', 'b'], '2']);
    const p2 = await admin.listProjects({ limit: 2, token: p1.token });
    expect([p2.projects.map((p) => p.id), p2.token]).toEqual([['c'], '']);
    const filtered = await admin.listProjects({ filters: 'eq(identifier,d)', limit: 1 });
    expect(filtered.projects.map((p) => p.id)).toEqual(['d']);
    expect(filtered.token).toBe('1'); // token iff the page is full
    const bad = await rejects(admin.listProjects({ token: 'x' }));
    expect([bad.code, bad.rawMessage]).toEqual([Code.InvalidArgument, 'invalid pagination token x for ListProjects']);
  });
});

describe('project-domain attributes', () => {
  beforeEach(async () => {
    await admin.registerProject({ project: { id: 'p', name: 'n' } });
  });

  it('upsert per resource type, Get falls back to project level, Delete of a missing row is OK', async () => {
    const type = MatchableResource.CLUSTER_RESOURCE;
    await admin.updateProjectDomainAttributes({
      attributes: { project: 'p', domain: 'staging', matchingAttributes: cra({ k: 'v' }) },
    });
    await admin.updateProjectDomainAttributes({
      attributes: { project: 'p', domain: 'staging', matchingAttributes: cra({ k2: 'v2' }) },
    });
    await admin.updateProjectDomainAttributes({
      attributes: { project: 'p', domain: 'staging', matchingAttributes: wec('sa') },
    });
    const got = await admin.getProjectDomainAttributes({ project: 'p', domain: 'staging', resourceType: type });
    expect(got.attributes?.matchingAttributes?.target).toMatchObject({ value: { attributes: { k2: 'v2' } } });
    expect(double.inspect().attributes).toHaveLength(2);

    const missing = await rejects(
      admin.getProjectDomainAttributes({ project: 'p', domain: 'development', resourceType: type }),
    );
    expect([missing.code, missing.rawMessage]).toEqual([
      Code.NotFound,
      'Resource [{Project:p Domain:development Workflow: LaunchPlan: ResourceType:CLUSTER_RESOURCE}] not found',
    ]);
    await admin.updateProjectAttributes({
      attributes: { project: 'p', matchingAttributes: cra({ level: 'project' }) },
    });
    const fallback = await admin.getProjectDomainAttributes({
      project: 'p',
      domain: 'development',
      resourceType: type,
    });
    expect(fallback.attributes?.domain).toBe('');

    await admin.deleteProjectDomainAttributes({ project: 'p', domain: 'production', resourceType: type });
    await admin.deleteProjectDomainAttributes({ project: 'p', domain: 'staging', resourceType: type });
    expect(double.attributesOf('p', 'staging', type)).toBeUndefined();
  });

  it('rejects unknown project / domain, QoS, and inactive projects with an InactiveProject detail', async () => {
    const unknown = await rejects(
      admin.updateProjectDomainAttributes({
        attributes: { project: 'q', domain: 'staging', matchingAttributes: cra({}) },
      }),
    );
    expect(unknown.code).toBe(Code.InvalidArgument);
    expect(unknown.rawMessage).toContain('failed to validate that project [q] and domain [staging] are registered');
    const domain = await rejects(
      admin.getProjectDomainAttributes({
        project: 'p',
        domain: 'qa',
        resourceType: MatchableResource.CLUSTER_RESOURCE,
      }),
    );
    expect(domain.rawMessage).toBe('domain [qa] is unrecognized by system');
    const qos = await rejects(
      admin.updateProjectDomainAttributes({
        attributes: {
          project: 'p',
          domain: 'staging',
          matchingAttributes: { target: { case: 'qualityOfService', value: {} } },
        },
      }),
    );
    expect(qos.rawMessage).toBe('Unrecognized matching attributes type for request p-staging');

    await admin.updateProject({ id: 'p', state: Project_ProjectState.ARCHIVED });
    const inactive = await rejects(
      admin.deleteProjectDomainAttributes({
        project: 'p',
        domain: 'staging',
        resourceType: MatchableResource.CLUSTER_RESOURCE,
      }),
    );
    expect([inactive.code, inactive.rawMessage]).toEqual([Code.InvalidArgument, 'project [p] is not active']);
    expect(inactive.findDetails(InactiveProjectSchema).map((d) => d.id)).toEqual(['p']);
  });
});

// Each case pins one behaviour measured on a real FlyteAdmin v1.16.8 (docs/flyteadmin-semantics.md).
describe('measured on a real FlyteAdmin: rows at every level', () => {
  const WEC = MatchableResource.WORKFLOW_EXECUTION_CONFIG;
  const CR = MatchableResource.CLUSTER_RESOURCE;
  const rowsOf = () =>
    double
      .inspect()
      .attributes.map(
        (r) => `${r.project}/${r.domain}/${r.workflow}/${r.launchPlan}:${MatchableResource[r.resourceType]}`,
      )
      .sort();

  beforeEach(async () => {
    for (const id of ['p', 'q']) {
      await admin.registerProject({ project: { id, name: id } });
      await admin.updateProjectDomainAttributes({
        attributes: { project: id, domain: 'staging', matchingAttributes: wec(`${id}-sa`) },
      });
      await admin.updateProjectDomainAttributes({
        attributes: { project: id, domain: 'staging', matchingAttributes: cra({ owner: id }) },
      });
    }
    await admin.updateWorkflowAttributes({
      attributes: { project: 'p', domain: 'staging', workflow: 'wf', matchingAttributes: wec('wf-sa') },
    });
    double.seedAttributes('p', 'staging', wec('lp-sa'), { workflow: 'wf', launchPlan: 'lp' });
  });

  it('DeleteProjectDomainAttributes is a wildcard: it also deletes the workflow and launch-plan rows', async () => {
    await admin.deleteProjectDomainAttributes({ project: 'p', domain: 'staging', resourceType: WEC });
    expect(rowsOf()).toEqual([
      'p/staging//:CLUSTER_RESOURCE',
      'q/staging//:CLUSTER_RESOURCE',
      'q/staging//:WORKFLOW_EXECUTION_CONFIG',
    ]);
  });

  it('DeleteProjectAttributes deletes every row of that type in the project, project-domain rows included', async () => {
    await admin.updateProjectAttributes({ attributes: { project: 'p', matchingAttributes: wec('project-sa') } });
    await admin.deleteProjectAttributes({ project: 'p', resourceType: WEC });
    expect(rowsOf()).toEqual([
      'p/staging//:CLUSTER_RESOURCE',
      'q/staging//:CLUSTER_RESOURCE',
      'q/staging//:WORKFLOW_EXECUTION_CONFIG',
    ]);
  });

  it('DeleteWorkflowAttributes deletes that workflow and its launch-plan rows only', async () => {
    await admin.deleteWorkflowAttributes({ project: 'p', domain: 'staging', workflow: 'wf', resourceType: WEC });
    expect(rowsOf()).not.toContain('p/staging/wf/:WORKFLOW_EXECUTION_CONFIG');
    expect(rowsOf()).not.toContain('p/staging/wf/lp:WORKFLOW_EXECUTION_CONFIG');
    expect(rowsOf()).toContain('p/staging//:WORKFLOW_EXECUTION_CONFIG');
  });

  it('Get falls back by priority: workflow → project-domain → project; project-domain ignores deeper rows', async () => {
    const wf = await admin.getWorkflowAttributes({
      project: 'p',
      domain: 'staging',
      workflow: 'wf',
      resourceType: WEC,
    });
    expect([wf.attributes?.workflow, wf.attributes?.matchingAttributes?.target.value]).toMatchObject([
      'wf',
      { securityContext: { runAs: { k8sServiceAccount: 'wf-sa' } } },
    ]);
    const other = await admin.getWorkflowAttributes({
      project: 'p',
      domain: 'staging',
      workflow: 'other',
      resourceType: WEC,
    });
    expect([other.attributes?.workflow, other.attributes?.domain]).toEqual(['', 'staging']);
    const pd = await admin.getProjectDomainAttributes({ project: 'p', domain: 'staging', resourceType: WEC });
    expect(pd.attributes?.matchingAttributes?.target.value).toMatchObject({
      securityContext: { runAs: { k8sServiceAccount: 'p-sa' } },
    });
    await admin.updateProjectAttributes({ attributes: { project: 'p', matchingAttributes: cra({ level: 'p' }) } });
    const fallback = await admin.getWorkflowAttributes({
      project: 'p',
      domain: 'development',
      workflow: 'wf',
      resourceType: CR,
    });
    expect([fallback.attributes?.domain, fallback.attributes?.workflow]).toEqual(['', '']);
    const missing = await rejects(
      admin.getWorkflowAttributes({ project: 'p', domain: 'development', workflow: 'wf', resourceType: WEC }),
    );
    expect([missing.code, missing.rawMessage]).toEqual([
      Code.NotFound,
      'Resource [{Project:p Domain:development Workflow:wf LaunchPlan: ResourceType:WORKFLOW_EXECUTION_CONFIG}] not found',
    ]);
  });

  it('ListMatchableAttributes answers every row of a type across projects, highest priority first', async () => {
    const res = await admin.listMatchableAttributes({ resourceType: WEC });
    expect(res.configurations.map((c) => [c.project, c.domain, c.workflow, c.launchPlan])).toEqual([
      ['p', 'staging', 'wf', 'lp'],
      ['p', 'staging', 'wf', ''],
      ['p', 'staging', '', ''],
      ['q', 'staging', '', ''],
    ]);
  });

  it("an empty project id is accepted: Update overwrites another project's row of that domain and level", async () => {
    await admin.updateProjectDomainAttributes({
      attributes: { project: '', domain: 'staging', matchingAttributes: cra({ owner: 'nobody' }) },
    });
    const p = double.attributesOf('p', 'staging', CR);
    expect(p?.target.value).toMatchObject({ attributes: { owner: 'nobody' } });
    expect(double.attributesOf('q', 'staging', CR)?.target.value).toMatchObject({ attributes: { owner: 'q' } });
    expect(rowsOf().filter((r) => r.startsWith('/'))).toEqual([]);
  });

  it("an empty project id is accepted: Delete removes that domain's rows of the type in every project", async () => {
    await admin.deleteProjectDomainAttributes({ project: '', domain: 'staging', resourceType: CR });
    expect(rowsOf().filter((r) => r.endsWith(':CLUSTER_RESOURCE'))).toEqual([]);
    expect(rowsOf().filter((r) => r.endsWith(':WORKFLOW_EXECUTION_CONFIG'))).toHaveLength(4);
  });

  it('an empty project id: Get answers NotFound, UpdateProject InvalidArgument "missing project_id"', async () => {
    const get = await rejects(admin.getProjectDomainAttributes({ project: '', domain: 'staging', resourceType: CR }));
    expect([get.code, get.rawMessage]).toEqual([
      Code.NotFound,
      'Resource [{Project: Domain:staging Workflow: LaunchPlan: ResourceType:CLUSTER_RESOURCE}] not found',
    ]);
    const upd = await rejects(admin.updateProject({ id: '', name: 'x' }));
    expect([upd.code, upd.rawMessage]).toEqual([Code.InvalidArgument, 'missing project_id']);
  });

  it('ListProjects filters on labels by substring of the stored project, and sorts by created_at', async () => {
    await admin.registerProject({ project: { id: 'a-ours', name: 'x', labels: { values: { owner: 'team-a' } } } });
    await admin.registerProject({ project: { id: 'b-named', name: 'team-a lookalike' } });
    await admin.registerProject({ project: { id: 'c-other', name: 'y', labels: { values: { owner: 'team-b' } } } });
    const hits = await admin.listProjects({ filters: 'contains(labels,team-a)', limit: 10 });
    // A substring match over the serialized project: the name matches too (so clients must check labels).
    expect(hits.projects.map((p) => p.id)).toEqual(['a-ours', 'b-named']);
    const newest = await admin.listProjects({ limit: 2, sortBy: { key: 'created_at', direction: 0 } });
    expect(newest.projects.map((p) => p.id)).toEqual(['c-other', 'b-named']);
  });
});

describe('fault injection', () => {
  it('failNext, down, unimplemented, and counters', async () => {
    double.failNext(2, Code.Unavailable, ['GetDomains']);
    expect((await rejects(admin.getDomains({}))).code).toBe(Code.Unavailable);
    expect((await rejects(admin.getDomains({}))).code).toBe(Code.Unavailable);
    await admin.getDomains({});
    double.setDown(true);
    expect((await rejects(admin.listProjects({}))).code).toBe(Code.Unavailable);
    double.setDown(false);
    double.setUnimplemented(['GetProject']);
    expect((await rejects(admin.getProject({ id: 'p' }))).code).toBe(Code.Unimplemented);
    expect(double.calls()).toMatchObject({
      reads: 5,
      writes: 0,
      byMethod: { GetDomains: 3, ListProjects: 1, GetProject: 1 },
    });
  });
});
