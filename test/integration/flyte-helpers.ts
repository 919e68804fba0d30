// Shared setup for the Flyte integration tests: config pointing at a FlyteAdmin double, a parsed
// workspace spec, step contexts, and the real gRPC client.
import type { Client } from '@connectrpc/connect';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { createFlyteAdminClient, type FlyteAdminClient } from '../../src/adapters/flyteadmin.js';
import { type ControllerConfig, defaultConfig, mergeConfig } from '../../src/config/config.js';
import { MatchableResource } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import type { AdminService } from '../../src/gen/flyteidl/service/admin_projects_pb.js';
import type { StepBaseContext, StepContext } from '../../src/reconcile/types.js';
import { workspaceNames } from '../../src/spec/names.js';
import { validateWorkspace, type WorkspaceSpec } from '../../src/spec/workspace.js';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export function flyteConfig(double: FlyteAdminDouble, flyte: Record<string, unknown> = {}): ControllerConfig {
  return mergeConfig(defaultConfig(), {
    aws: { enabled: false },
    flyte: {
      endpoint: double.url,
      insecure: true,
      callTimeoutMs: 2_000,
      maxAttempts: 3,
      maxConcurrentCalls: 4,
      consoleBaseUrl: 'http://console.example/',
      ...flyte,
    },
  });
}

export function workspaceSpec(
  cfg: ControllerConfig,
  id: string,
  overrides: Record<string, unknown> = {},
): { spec: WorkspaceSpec; specHash: string } {
  const parsed = validateWorkspace(
    {
      workspace_id: id,
      workspace_name: `Workspace ${id}`,
      users: [{ user_id: 'u1', email: `owner-${id}@example.com`, role: 'owner' }],
      data_bucket: `${id}-data`,
      services: [{ service_type: 'flyte', config: {} }],
      ...overrides,
    },
    cfg,
  );
  if (!parsed.ok) throw new Error(`bad test spec: ${JSON.stringify(parsed.errors)}`);
  return { spec: parsed.spec, specHash: parsed.specHash };
}

export function baseContext(
  cfg: ControllerConfig,
  workspaceId: string,
  o: { force?: boolean; dryRun?: boolean } = {},
): StepBaseContext {
  return {
    cfg,
    log: silentLog,
    workspaceId,
    names: workspaceNames(cfg, workspaceId),
    dryRun: o.dryRun ?? false,
    force: o.force ?? false,
    changes: [],
    outputs: {},
    source: 'workspace-platform/ws',
  };
}

export function stepContext(
  cfg: ControllerConfig,
  s: { spec: WorkspaceSpec; specHash: string },
  o: { force?: boolean; dryRun?: boolean; roleArn?: string } = {},
): StepContext {
  const ctx: StepContext = {
    ...baseContext(cfg, s.spec.workspaceId, o),
    spec: s.spec,
    specHash: s.specHash,
    specUnchanged: false,
  };
  if (o.roleArn) ctx.outputs.roleArn = o.roleArn;
  return ctx;
}

export function client(cfg: ControllerConfig, stats = new CallStats('flyte')): FlyteAdminClient {
  return createFlyteAdminClient(cfg.flyte, {
    stats,
    log: silentLog,
    fallbackDomains: cfg.domains,
    backoff: { baseMs: 20, maxMs: 100 },
  });
}

let counter = 0;
export function uniqueId(prefix = 'ws'): string {
  counter++;
  return `${prefix}-${process.pid % 10_000}-${counter}`;
}

/** What a user set in FlyteAdmin below our project-domain rows, in one workspace project. */
export interface UserOverrides {
  workflow: string;
  launchPlan: string;
}

/**
 * A user's own overrides: a workflow-level WORKFLOW_EXECUTION_CONFIG (through the API, as flytectl does)
 * and a launch-plan-level CLUSTER_RESOURCE row (FlyteAdmin's API cannot write that level; its database
 * holds such rows, so the double stores one directly).
 */
export async function setUserOverrides(
  admin: Client<typeof AdminService>,
  double: FlyteAdminDouble,
  project: string,
): Promise<UserOverrides> {
  const user = { workflow: 'training.pipeline', launchPlan: 'training.nightly' };
  await admin.updateWorkflowAttributes({
    attributes: {
      project,
      domain: 'staging',
      workflow: user.workflow,
      matchingAttributes: { target: { case: 'workflowExecutionConfig', value: { maxParallelism: 7 } } },
    },
  });
  double.seedAttributes(
    project,
    'staging',
    { target: { case: 'clusterResourceAttributes', value: { attributes: { gpuQuota: '2' } } } },
    user,
  );
  return user;
}

export async function expectUserOverridesIntact(
  admin: Client<typeof AdminService>,
  double: FlyteAdminDouble,
  project: string,
  user: UserOverrides,
): Promise<void> {
  const wf = double.attributesOf(project, 'staging', MatchableResource.WORKFLOW_EXECUTION_CONFIG, {
    workflow: user.workflow,
  });
  expect(wf?.target.case === 'workflowExecutionConfig' && wf.target.value.maxParallelism, 'workflow-level row').toBe(7);
  const lp = double.attributesOf(project, 'staging', MatchableResource.CLUSTER_RESOURCE, user);
  expect(lp?.target.case === 'clusterResourceAttributes' && lp.target.value.attributes, 'launch-plan row').toEqual({
    gpuQuota: '2',
  });
  // And as FlyteAdmin answers them, while the project is active (archived projects reject attribute reads).
  if (double.project(project)?.state !== 0) return;
  const got = await admin.getWorkflowAttributes({
    project,
    domain: 'staging',
    workflow: user.workflow,
    resourceType: MatchableResource.WORKFLOW_EXECUTION_CONFIG,
  });
  expect(got.attributes?.workflow).toBe(user.workflow);
}
