// The Flyte step through the real gRPC client against the FlyteAdmin double.
import { type Client, Code, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { FlyteAdminClient } from '../../src/adapters/flyteadmin.js';
import { MANAGED_BY_LABEL, mergeConfig, WORKSPACE_ID_LABEL } from '../../src/config/config.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import {
  type Project,
  Project_ProjectState,
  type ProjectListRequest,
} from '../../src/gen/flyteidl/admin/project_pb.js';
import { AdminService } from '../../src/gen/flyteidl/service/admin_projects_pb.js';
import { FlyteStep } from '../../src/reconcile/steps/flyte.js';
import type { StepOutcome } from '../../src/reconcile/types.js';
import {
  baseContext,
  client,
  expectUserOverridesIntact,
  flyteConfig,
  setUserOverrides,
  stepContext,
  uniqueId,
  workspaceSpec,
} from './flyte-helpers.js';

const DOMAINS = ['development', 'staging', 'production'];
const ATTRIBUTE_ROWS = DOMAINS.length * 2;

let double: FlyteAdminDouble;
let api: FlyteAdminClient;
let cfg: ReturnType<typeof flyteConfig>;
/** A plain client for what users and operators do in FlyteAdmin themselves. */
let admin: Client<typeof AdminService>;

beforeAll(async () => {
  double = await FlyteAdminDouble.start();
  cfg = flyteConfig(double);
  api = client(cfg);
  admin = createClient(AdminService, createGrpcTransport({ baseUrl: double.url }));
});

afterAll(async () => {
  api.close();
  await double.close();
});

beforeEach(() => double.reset());

/** The step reports a failure as its outcome (the step contract), never by rejecting. */
async function expectFailure(p: Promise<StepOutcome>): Promise<StepOutcome> {
  const out = await p;
  expect(['Failed', 'Conflict']).toContain(out.state);
  return out;
}

describe('FlyteStep.ensure', () => {
  it('creates the project and per-domain attributes, then costs no writes', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    const ctx = stepContext(cfg, s, { roleArn: 'arn:aws:iam::123456789012:role/x' });

    const out = await step.ensure(ctx);
    expect(out).toMatchObject({ state: 'Ready', reason: 'Applied', writes: 1 + ATTRIBUTE_ROWS });
    expect(out.result).toMatchObject({
      projectId: id,
      consoleUrl: `http://console.example/console/projects/${id}`,
      projectState: 'ACTIVE',
    });
    expect(ctx.outputs.flyteDomains).toEqual(DOMAINS);
    // A freshly registered project has no attributes: no reads of them.
    expect(double.calls().byMethod.GetProjectDomainAttributes).toBeUndefined();

    const p = double.project(id) as Project;
    expect(p.name).toBe(`Flyte - Workspace ${id}`);
    expect(p.state).toBe(Project_ProjectState.ACTIVE);
    expect(p.labels?.values).toEqual({ [MANAGED_BY_LABEL]: 'flyte-workspace-controller', [WORKSPACE_ID_LABEL]: id });
    for (const d of DOMAINS) {
      const wec = double.attributesOf(id, d, MatchableResource.WORKFLOW_EXECUTION_CONFIG);
      expect(wec?.target.case).toBe('workflowExecutionConfig');
      if (wec?.target.case === 'workflowExecutionConfig') {
        expect(wec.target.value.securityContext?.runAs?.k8sServiceAccount).toBe(ctx.names.serviceAccount);
        expect(wec.target.value.rawOutputDataConfig?.outputLocationPrefix).toBe(`s3://${id}-data/flyte/raw-data`);
        expect(wec.target.value.envs?.values.map((e) => [e.key, e.value])).toEqual([
          ['WORKSPACE_ID', id],
          ['WORKSPACE_DATA_BUCKET', `${id}-data`],
        ]);
      }
      const cr = double.attributesOf(id, d, MatchableResource.CLUSTER_RESOURCE);
      expect(cr?.target.case === 'clusterResourceAttributes' && cr.target.value.attributes).toMatchObject({
        projectQuotaCpu: '40',
        projectQuotaMemory: '80Gi',
        quotaRequestsCpu: '20',
        quotaPods: '100',
        defaultIamRole: 'arn:aws:iam::123456789012:role/x',
      });
    }

    // Converged + cached: no FlyteAdmin call at all.
    double.resetCounters();
    const again = await step.ensure(stepContext(cfg, s, { roleArn: 'arn:aws:iam::123456789012:role/x' }));
    expect(again).toMatchObject({ state: 'Ready', reason: 'UpToDate', writes: 0 });
    expect(double.calls().reads + double.calls().writes).toBe(0);

    // Forced rerun: verified by reads only.
    const forced = await step.ensure(stepContext(cfg, s, { force: true, roleArn: 'arn:aws:iam::123456789012:role/x' }));
    expect(forced).toMatchObject({ reason: 'UpToDate', writes: 0 });
    expect(double.calls()).toMatchObject({ writes: 0, reads: 2 + ATTRIBUTE_ROWS });
  });

  it('rename: exactly one UpdateProject carrying the full project and state ACTIVE', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)));
    double.resetCounters();

    const renamed = workspaceSpec(cfg, id, { workspace_name: 'Renamed 日本語' });
    const ctx = stepContext(cfg, renamed);
    const out = await step.ensure(ctx);
    expect(out).toMatchObject({ reason: 'Applied', writes: 1 });
    expect(double.calls().writes).toBe(1);
    const [upd] = double.requests('UpdateProject');
    const sent = upd?.request as Project;
    expect(sent).toMatchObject({
      id,
      name: 'Flyte - Renamed 日本語',
      state: Project_ProjectState.ACTIVE,
      labels: { values: { [MANAGED_BY_LABEL]: 'flyte-workspace-controller', [WORKSPACE_ID_LABEL]: id } },
    });
    expect(sent.description).toContain('Renamed 日本語');
    expect(ctx.changes).toEqual([
      { system: 'flyte', action: 'update', target: `Flyte project ${id}`, detail: 'name, description' },
    ]);
    expect(double.project(id)?.name).toBe('Flyte - Renamed 日本語');
  });

  it('changes that do not touch Flyte cost zero writes (and zero calls while cached)', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)));
    double.resetCounters();
    const more = workspaceSpec(cfg, id, {
      users: [
        { user_id: 'u1', email: `owner-${id}@example.com`, role: 'owner' },
        { user_id: 'u9', email: 'new@example.com', role: 'contributor' },
      ],
    });
    expect(await step.ensure(stepContext(cfg, more))).toMatchObject({ writes: 0, reason: 'UpToDate' });
    expect(double.calls().reads + double.calls().writes).toBe(0);
    expect(await step.ensure(stepContext(cfg, more, { force: true }))).toMatchObject({ writes: 0 });
    expect(double.calls().writes).toBe(0);
  });

  it('repairs drift made in FlyteAdmin when verifying (force), and only what drifted', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    await step.ensure(stepContext(cfg, s));
    // Someone edits one attribute row and reorders nothing else.
    double.seedAttributes(id, 'staging', {
      target: { case: 'clusterResourceAttributes', value: { attributes: { x: '1' } } },
    });
    double.resetCounters();
    const ctx = stepContext(cfg, s, { force: true });
    const out = await step.ensure(ctx);
    expect(out.writes).toBe(1);
    expect(ctx.changes).toHaveLength(1);
    expect(ctx.changes[0]).toMatchObject({ action: 'update', target: `Flyte CLUSTER_RESOURCE ${id}/staging` });
  });

  it('a project-level attribute row returned by Get as fallback is not taken for ours', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    await step.ensure(stepContext(cfg, s));
    // Our staging row disappears; an identical project-level row exists: Get(staging) answers it (domain "").
    const staging = double.attributesOf(id, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG);
    // An operator's project-level delete removes our project-domain rows too (wildcard); then the
    // project-level row comes back.
    await admin.deleteProjectAttributes({ project: id, resourceType: MatchableResource.WORKFLOW_EXECUTION_CONFIG });
    expect(double.attributesOf(id, 'development', MatchableResource.WORKFLOW_EXECUTION_CONFIG)).toBeUndefined();
    double.seedAttributes(id, '', { target: staging?.target as never });
    const fallback = await api.getProjectDomainAttributes(id, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG);
    expect(fallback?.domain).toBe('');
    double.resetCounters();

    const ctx = stepContext(cfg, s, { force: true });
    expect((await step.ensure(ctx)).writes).toBe(DOMAINS.length);
    expect(ctx.changes).toEqual(
      DOMAINS.map((d) => ({ system: 'flyte', action: 'create', target: `Flyte WORKFLOW_EXECUTION_CONFIG ${id}/${d}` })),
    );
    expect(double.attributesOf(id, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG)).toBeDefined();
  });

  it('never adopts a foreign project (no labels): Conflict, untouched', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    double.seedProject({ id, name: 'Somebody else', description: 'theirs' });
    const out = await expectFailure(step.ensure(stepContext(cfg, workspaceSpec(cfg, id))));
    expect(out).toMatchObject({ state: 'Conflict', reason: 'FlyteProjectConflict', retryable: false, writes: 0 });
    expect(double.calls().writes).toBe(0);
    expect(double.project(id)).toMatchObject({ name: 'Somebody else', description: 'theirs' });

    const td = await step.teardown(baseContext(cfg, id, { force: true }));
    expect(td).toMatchObject({ state: 'Skipped', reason: 'FlyteProjectNotOwned', writes: 0 });
    expect(double.calls().writes).toBe(0);
    expect(double.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
  });

  it('a project labelled for another workspace is foreign too', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    double.seedProject({
      id,
      name: 'x',
      labels: { values: { [MANAGED_BY_LABEL]: 'flyte-workspace-controller', [WORKSPACE_ID_LABEL]: 'other' } },
    });
    const out = await expectFailure(step.ensure(stepContext(cfg, workspaceSpec(cfg, id))));
    expect(out).toMatchObject({ state: 'Conflict', reason: 'FlyteProjectConflict' });
  });

  it('dry run plans everything and writes nothing', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const ctx = stepContext(cfg, workspaceSpec(cfg, id), { dryRun: true, force: true });
    const out = await step.ensure(ctx);
    expect(out.writes).toBe(0);
    expect(double.calls().writes).toBe(0);
    expect(ctx.changes.map((c) => c.action)).toEqual(['create', ...Array(ATTRIBUTE_ROWS).fill('create')]);
    expect(double.project(id)).toBeUndefined();
  });
});

describe('FlyteStep.teardown', () => {
  it('only archives (attributes stay); idempotent; re-adding unarchives and finds its rows in place', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    await step.ensure(stepContext(cfg, s));
    const ours = double.inspect().attributes.filter((a) => a.project === id);
    expect(ours).toHaveLength(ATTRIBUTE_ROWS);
    double.resetCounters();

    const td = await step.teardown(baseContext(cfg, id, { force: true }));
    expect(td).toMatchObject({ state: 'Deleted', reason: 'Archived', writes: 1 });
    expect(td.result?.projectState).toBe('ARCHIVED');
    expect(double.calls().writes).toBe(1);
    expect(double.calls().byMethod.DeleteProjectDomainAttributes ?? 0).toBe(0);
    const archive = double.requests('UpdateProject')[0]?.request as Project;
    expect(archive).toMatchObject({ id, state: Project_ProjectState.ARCHIVED, name: `Flyte - Workspace ${id}` });
    expect(archive.labels?.values[WORKSPACE_ID_LABEL]).toBe(id);
    expect(double.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(double.inspect().attributes.filter((a) => a.project === id)).toEqual(ours);

    // Again: already archived, nothing to do.
    double.resetCounters();
    expect(await step.teardown(baseContext(cfg, id, { force: true }))).toMatchObject({
      state: 'Deleted',
      reason: 'AlreadyArchived',
      writes: 0,
    });
    expect(double.calls().writes).toBe(0);

    // Re-add: one UpdateProject back to ACTIVE (full project); the kept rows are read and still right.
    double.resetCounters();
    const ctx = stepContext(cfg, s);
    const out = await step.ensure(ctx);
    expect(out).toMatchObject({ state: 'Ready', writes: 1 });
    expect(ctx.changes).toEqual([
      { system: 'flyte', action: 'unarchive', target: `Flyte project ${id}`, detail: 'state' },
    ]);
    expect(double.requests('RegisterProject')).toHaveLength(0);
    expect(double.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
    expect(double.inspect().attributes.filter((a) => a.project === id)).toEqual(ours);
  });

  it('missing project is success', async () => {
    const step = new FlyteStep(api);
    expect(await step.teardown(baseContext(cfg, uniqueId(), { force: true }))).toMatchObject({
      state: 'Deleted',
      reason: 'ProjectNotFound',
      writes: 0,
    });
  });
});

describe("users' own workflow- and launch-plan-level overrides", () => {
  it('survive flyte removed and re-added, and the workspace deleted and re-created with the same id', async () => {
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    await new FlyteStep(api).ensure(stepContext(cfg, s));
    const user = await setUserOverrides(admin, double, id);

    // (a) flyte removed from services, then added again (same process, same step).
    const step = new FlyteStep(api);
    await step.teardown(baseContext(cfg, id));
    await expectUserOverridesIntact(admin, double, id, user);
    expect((await step.ensure(stepContext(cfg, s))).writes).toBe(1);
    await expectUserOverridesIntact(admin, double, id, user);

    // (b) the ConfigMap deleted (teardown), then re-created with the same id (a new step: nothing cached).
    await step.teardown(baseContext(cfg, id));
    const recreated = new FlyteStep(api);
    expect((await recreated.ensure(stepContext(cfg, s))).state).toBe('Ready');
    expect(double.project(id)?.state).toBe(Project_ProjectState.ACTIVE);
    await expectUserOverridesIntact(admin, double, id, user);
  });

  it('survive a tier change and a drift repair of our own rows', async () => {
    const tiered = mergeConfig(cfg, {
      tiers: { ...cfg.tiers, large: { ...cfg.tiers.default, 'limits.cpu': '80', 'limits.memory': '160Gi' } },
    });
    const id = uniqueId();
    const step = new FlyteStep(api);
    await step.ensure(stepContext(tiered, workspaceSpec(tiered, id)));
    const user = await setUserOverrides(admin, double, id);

    // (c1) tier change: our CLUSTER_RESOURCE rows are rewritten, nothing else.
    const large = workspaceSpec(tiered, id, { tier: 'large' });
    const out = await step.ensure(stepContext(tiered, large));
    expect(out.writes).toBe(DOMAINS.length);
    const cr = double.attributesOf(id, 'staging', MatchableResource.CLUSTER_RESOURCE);
    expect(cr?.target.case === 'clusterResourceAttributes' && cr.target.value.attributes.projectQuotaCpu).toBe('80');
    await expectUserOverridesIntact(admin, double, id, user);

    // (c2) someone edits our staging WORKFLOW_EXECUTION_CONFIG; the next full check repairs it.
    await admin.updateProjectDomainAttributes({
      attributes: {
        project: id,
        domain: 'staging',
        matchingAttributes: { target: { case: 'workflowExecutionConfig', value: { maxParallelism: 3 } } },
      },
    });
    const repaired = await step.ensure(stepContext(tiered, large, { force: true }));
    expect(repaired.writes).toBe(1);
    const wec = double.attributesOf(id, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG);
    expect(wec?.target.case === 'workflowExecutionConfig' && wec.target.value.securityContext?.runAs).toBeTruthy();
    await expectUserOverridesIntact(admin, double, id, user);
  });

  it("an operator's project-level delete (which takes our project-domain rows with it) is repaired at the next check", async () => {
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    const step = new FlyteStep(api);
    await step.ensure(stepContext(cfg, s));
    const ours = double.inspect().attributes.filter((a) => a.project === id);
    await admin.deleteProjectAttributes({ project: id, resourceType: MatchableResource.CLUSTER_RESOURCE });
    expect(double.inspect().attributes.filter((a) => a.project === id)).toHaveLength(ATTRIBUTE_ROWS - DOMAINS.length);

    const out = await step.ensure(stepContext(cfg, s, { force: true }));
    expect(out.writes).toBe(DOMAINS.length);
    expect(double.inspect().attributes.filter((a) => a.project === id)).toEqual(expect.arrayContaining(ours));
    expect(double.inspect().attributes.filter((a) => a.project === id)).toHaveLength(ATTRIBUTE_ROWS);
  });
});

describe('FlyteStep against an unhealthy FlyteAdmin', () => {
  it('down for a while, then back: retryable failure, then converges with a single project', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    double.setDown(true);
    const failed = await expectFailure(step.ensure(stepContext(cfg, s)));
    expect(failed).toMatchObject({ state: 'Failed', reason: 'FlyteUnavailable', retryable: true });
    expect(failed.message).toMatch(/^UNAVAILABLE: /);
    expect(double.calls().byMethod.GetDomains).toBe(cfg.flyte.maxAttempts);

    double.setDown(false);
    const out = await step.ensure(stepContext(cfg, s));
    expect(out).toMatchObject({ state: 'Ready', writes: 1 + ATTRIBUTE_ROWS });
    expect(double.inspect().projects.map((p) => p.id)).toEqual([id]);
    expect(double.requests('RegisterProject')).toHaveLength(1);
  });

  it('partial failure after registration converges on the next pass without a second register', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    const s = workspaceSpec(cfg, id);
    double.failNext(100, Code.Unavailable, ['UpdateProjectDomainAttributes']);
    // The failure still reports the write made before it (the registration).
    expect(await expectFailure(step.ensure(stepContext(cfg, s)))).toMatchObject({ state: 'Failed', writes: 1 });
    expect(double.project(id)).toBeDefined();
    double.clearFaults();

    const out = await step.ensure(stepContext(cfg, s));
    expect(out).toMatchObject({ state: 'Ready', writes: ATTRIBUTE_ROWS });
    expect(double.requests('RegisterProject')).toHaveLength(1);
    expect(double.inspect().projects).toHaveLength(1);
  });

  it('a register whose answer was lost (server committed) is retried, meets AlreadyExists, and converges', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    double.failNext(1, Code.Unavailable, ['RegisterProject'], { afterApplying: true });
    const out = await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)));
    expect(out.state).toBe('Ready');
    expect(double.requests('RegisterProject')).toHaveLength(2);
    expect(double.inspect().projects).toHaveLength(1);
    expect(double.calls().byMethod.UpdateProject).toBeUndefined();
  });

  it('RESOURCE_EXHAUSTED is retried and the step succeeds', async () => {
    const step = new FlyteStep(api);
    const id = uniqueId();
    double.resourceExhausted(2, ['GetProject']);
    const out = await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)));
    expect(out.state).toBe('Ready');
    expect(double.calls().byMethod.GetProject).toBe(3);
    expect(double.inspect().projects).toHaveLength(1);
  });

  it('latency beyond the call deadline: DEADLINE_EXCEEDED retried, then a retryable failure', async () => {
    const slowCfg = flyteConfig(double, { callTimeoutMs: 150, maxAttempts: 3 });
    const slowApi = client(slowCfg);
    try {
      const step = new FlyteStep(slowApi);
      double.setLatency(600);
      const out = await expectFailure(step.ensure(stepContext(slowCfg, workspaceSpec(slowCfg, uniqueId()))));
      expect(out).toMatchObject({ reason: 'FlyteUnavailable', retryable: true });
      expect(out.message).toMatch(/^DEADLINE_EXCEEDED: /);
      expect(double.calls().byMethod.GetDomains).toBe(3);
    } finally {
      slowApi.close();
    }
  });

  it('the per-step time budget bounds a slow FlyteAdmin', async () => {
    const step = new FlyteStep(api, { budgetMs: 400 });
    double.setLatency(150);
    const started = Date.now();
    const out = await expectFailure(step.ensure(stepContext(cfg, workspaceSpec(cfg, uniqueId()), { force: true })));
    expect(out).toMatchObject({ reason: 'FlyteUnavailable', retryable: true });
    expect(out.message).toMatch(/^DEADLINE_EXCEEDED: /);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('unknown GetProject/GetDomains (older FlyteAdmin): ListProjects and configured domains', async () => {
    const oldCfg = flyteConfig(double, { discoverDomains: true });
    const oldApi = client({ ...oldCfg, domains: ['development', 'production'] });
    try {
      double.setUnimplemented(['GetProject', 'GetDomains']);
      double.setDomains([
        { id: 'development', name: 'development' },
        { id: 'production', name: 'production' },
      ]);
      const step = new FlyteStep(oldApi);
      const id = uniqueId();
      const s = workspaceSpec(oldCfg, id);
      const ctx = stepContext({ ...oldCfg, domains: ['development', 'production'] }, s);
      const out = await step.ensure(ctx);
      expect(out.writes).toBe(1 + 4);
      expect(ctx.outputs.flyteDomains).toEqual(['development', 'production']);
      // Archived projects are still found through the filtered ListProjects.
      await step.teardown(baseContext(oldCfg, id, { force: true }));
      double.resetCounters();
      const again = await step.ensure(stepContext({ ...oldCfg, domains: ['development', 'production'] }, s));
      expect(again.writes).toBe(1); // unarchived; its attributes were kept
      expect(double.requests('RegisterProject')).toHaveLength(0);
      const list = double.requests('ListProjects')[0]?.request as ProjectListRequest;
      expect(list).toMatchObject({ filters: `eq(identifier,${id})`, limit: 1 });
    } finally {
      oldApi.close();
    }
  });
});
