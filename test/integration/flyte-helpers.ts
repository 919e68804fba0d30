// Shared setup for the Flyte integration tests: config pointing at a FlyteAdmin double, a parsed
// workspace spec, step contexts, and the real gRPC client.
import { pino } from 'pino';
import type { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { createFlyteAdminClient, type FlyteAdminClient } from '../../src/adapters/flyteadmin.js';
import { type ControllerConfig, defaultConfig, mergeConfig } from '../../src/config/config.js';
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
