// The Flyte orphan sweep through the real gRPC client against the FlyteAdmin double: it finds our
// projects in FlyteAdmin by label (paging), checks the labels itself because FlyteAdmin's label filter
// is a substring match, and archives only projects of workspaces that no longer exist.
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import type { FlyteAdminClient } from '../../src/adapters/flyteadmin.js';
import { MANAGED_BY_LABEL, WORKSPACE_ID_LABEL } from '../../src/config/config.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import { sweepFlyteOrphans } from '../../src/reconcile/flyte-orphans.js';
import { FlyteStep } from '../../src/reconcile/steps/flyte.js';
import { client, flyteConfig, silentLog, stepContext, uniqueId, workspaceSpec } from './flyte-helpers.js';

let double: FlyteAdminDouble;
let api: FlyteAdminClient;
let cfg: ReturnType<typeof flyteConfig>;

beforeAll(async () => {
  double = await FlyteAdminDouble.start();
  cfg = flyteConfig(double);
  api = client(cfg);
});
afterAll(async () => {
  api.close();
  await double.close();
});
beforeEach(() => double.reset());

const ours = (workspaceId: string) => ({
  values: { [MANAGED_BY_LABEL]: cfg.fieldManager, [WORKSPACE_ID_LABEL]: workspaceId },
});
const state = (id: string) => double.project(id)?.state;

describe('Flyte orphan sweep', () => {
  it('archives our projects whose workspace is gone, and nothing else', async () => {
    const live = uniqueId('live');
    const gone = uniqueId('gone');
    const step = new FlyteStep(api);
    for (const id of [live, gone]) await step.ensure(stepContext(cfg, workspaceSpec(cfg, id)));
    double.seedAttributes(
      gone,
      'staging',
      { target: { case: 'workflowExecutionConfig', value: {} } },
      {
        workflow: 'users.wf',
      },
    );
    // Matches the label filter by substring only: the manager name is in its description.
    double.seedProject({ id: 'lookalike', name: 'x', description: `made by ${cfg.fieldManager}` });
    // Another manager's project; a project whose id is not the one we derive from its workspace label.
    double.seedProject({ id: 'theirs', name: 'x', labels: { values: { [MANAGED_BY_LABEL]: 'someone-else' } } });
    double.seedProject({ id: 'renamed-by-hand', name: 'x', labels: ours('other-ws') });
    // Already archived: nothing to do.
    double.seedProject({ id: 'old-ws', name: 'x', labels: ours('old-ws'), state: Project_ProjectState.ARCHIVED });
    double.resetCounters();

    const orphans = await sweepFlyteOrphans({
      api,
      cfg,
      liveWorkspaceIds: new Set([live]),
      dryRun: false,
      log: silentLog,
    });
    expect(orphans).toEqual([{ projectId: gone, workspaceId: gone, action: 'archived' }]);
    expect(state(gone)).toBe(Project_ProjectState.ARCHIVED);
    for (const id of [live, 'lookalike', 'theirs', 'renamed-by-hand'])
      expect(state(id), id).toBe(Project_ProjectState.ACTIVE);
    // Archive only: the full project, and its attributes (ours and the user's) stay.
    expect(double.requests('UpdateProject')).toHaveLength(1);
    expect(double.project(gone)?.labels?.values).toEqual(ours(gone).values);
    expect(double.inspect().attributes.filter((a) => a.project === gone)).toHaveLength(7);
    expect(double.calls().byMethod.DeleteProjectDomainAttributes ?? 0).toBe(0);
    expect(double.requests('ListProjects')[0]?.request).toMatchObject({
      filters: `contains(labels,${cfg.fieldManager})+eq(state,0)`,
    });

    // The workspace comes back: its project is unarchived, its rows were never gone.
    const back = await new FlyteStep(api).ensure(stepContext(cfg, workspaceSpec(cfg, gone)));
    expect(back.writes).toBe(1);
    expect(
      double.attributesOf(gone, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG, { workflow: 'users.wf' }),
    ).toBeDefined();
  });

  it('pages through ListProjects', async () => {
    const ids = Array.from({ length: 5 }, () => uniqueId('paged'));
    for (const id of ids) double.seedProject({ id, name: id, labels: ours(id) });
    const orphans = await sweepFlyteOrphans({
      api,
      cfg,
      liveWorkspaceIds: new Set([ids[0] as string]),
      dryRun: false,
      log: silentLog,
      pageSize: 2,
    });
    expect(orphans.map((o) => o.projectId).sort()).toEqual(ids.slice(1).sort());
    expect(double.requests('ListProjects').length).toBeGreaterThanOrEqual(3);
  });

  it('dry-run reports and changes nothing; a workspace that became live meanwhile is left alone', async () => {
    const a = uniqueId('dry');
    const b = uniqueId('late');
    for (const id of [a, b]) double.seedProject({ id, name: id, labels: ours(id) });
    double.resetCounters();
    const dry = await sweepFlyteOrphans({ api, cfg, liveWorkspaceIds: new Set(), dryRun: true, log: silentLog });
    expect(dry.map((o) => [o.projectId, o.action]).sort()).toEqual([
      [a, 'would-archive'],
      [b, 'would-archive'],
    ]);
    expect(double.calls().writes).toBe(0);

    const real = await sweepFlyteOrphans({
      api,
      cfg,
      liveWorkspaceIds: new Set(),
      isLive: (id) => id === b,
      dryRun: false,
      log: silentLog,
    });
    expect(real.map((o) => o.projectId)).toEqual([a]);
    expect(state(b)).toBe(Project_ProjectState.ACTIVE);
  });

  it('a failed archive is reported and the sweep goes on', async () => {
    const a = uniqueId('fail');
    const b = uniqueId('fail');
    for (const id of [a, b]) double.seedProject({ id, name: id, labels: ours(id) });
    double.failNext(1, Code.PermissionDenied, ['UpdateProject']);
    const orphans = await sweepFlyteOrphans({ api, cfg, liveWorkspaceIds: new Set(), dryRun: false, log: silentLog });
    expect(orphans.map((o) => o.action).sort()).toEqual(['archived', 'failed']);
  });
});
