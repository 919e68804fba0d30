// Builds the external-system clients and the ordered reconcile steps from configuration.
import type { Logger } from 'pino';
import { CallStats } from '../adapters/call-stats.js';
import { createFlyteAdminClient, type FlyteAdminApi } from '../adapters/flyteadmin.js';
import { type IamApi, SdkIamApi } from '../adapters/iam.js';
import type { KubeApi } from '../adapters/kubernetes.js';
import type { ControllerConfig } from '../config/config.js';
import type { Metrics } from '../metrics/metrics.js';
import { sweepFlyteOrphans } from '../reconcile/flyte-orphans.js';
import { sweepIamOrphans } from '../reconcile/iam-orphans.js';
import { FlyteStep } from '../reconcile/steps/flyte.js';
import { IamStep, iamDriftCheckIntervalMs } from '../reconcile/steps/iam.js';
import { KubernetesStep, type ManagedObjectCache } from '../reconcile/steps/kubernetes.js';
import type { WorkspaceStep } from '../reconcile/types.js';

export interface ExternalClients {
  iam?: IamApi;
  flyte?: FlyteAdminApi;
  /**
   * Removes IAM roles and archives Flyte projects of workspaces that no longer exist (when enabled in
   * config). `isLive` answers for the current moment, asked again just before each action.
   */
  sweepExternalOrphans?: (liveWorkspaceIds: Set<string>, isLive?: (workspaceId: string) => boolean) => Promise<void>;
}

/** Clients for the systems enabled in config (unless given); each gets its own call counters. */
export function defaultClients(
  cfg: ControllerConfig,
  log: Logger,
  metrics: Metrics,
  given: Partial<ExternalClients> = {},
  mayWrite?: () => boolean,
): ExternalClients {
  const clients: ExternalClients = { ...given };
  if (cfg.aws.enabled && !clients.iam)
    clients.iam = new SdkIamApi({ cfg, stats: new CallStats('iam', metrics, mayWrite), metrics });
  if (cfg.flyte.enabled && !clients.flyte) {
    clients.flyte = createFlyteAdminClient(cfg.flyte, {
      stats: new CallStats('flyte', metrics, mayWrite),
      log: log.child({ component: 'flyteadmin' }),
      fallbackDomains: cfg.domains,
    });
  }
  return clients;
}

export interface StepDeps {
  kube: KubeApi;
  cache?: ManagedObjectCache;
  clients: ExternalClients;
  sourceExists: (source: string) => boolean;
  onDrift: (kind: string) => void;
  /** Workspaces the controller manages (sizes the IAM drift-check interval to the request budget). */
  workspaceCount?: () => number;
  /** Told the IAM drift-check interval in use, in seconds (a gauge). */
  onDriftCheckInterval?: (system: 'iam', seconds: number) => void;
}

/** Steps in creation order: Kubernetes → IAM → Flyte (teardown runs in reverse). */
export function buildSteps(cfg: ControllerConfig, d: StepDeps): WorkspaceStep[] {
  const steps: WorkspaceStep[] = [
    new KubernetesStep({ kube: d.kube, cache: d.cache, sourceExists: d.sourceExists, onDrift: d.onDrift }),
  ];
  if (cfg.aws.enabled && d.clients.iam) {
    steps.push(
      new IamStep({
        api: d.clients.iam,
        verifiedTtlMs: () => {
          const ms = iamDriftCheckIntervalMs(cfg, d.workspaceCount?.() ?? 0);
          d.onDriftCheckInterval?.('iam', ms / 1000);
          return ms;
        },
        onDrift: (aspect) => d.onDrift(`iam-${aspect}`),
      }),
    );
  }
  if (cfg.flyte.enabled && d.clients.flyte) {
    steps.push(new FlyteStep(d.clients.flyte, { onDrift: (kind) => d.onDrift(`flyte-${kind}`) }));
  }
  return steps;
}

/** The sweep hook for IAM roles and Flyte projects, each when configured. */
export function externalOrphanSweep(
  cfg: ControllerConfig,
  clients: ExternalClients,
  log: Logger,
  metrics: Metrics,
): ExternalClients['sweepExternalOrphans'] {
  const iam = cfg.aws.enabled && cfg.aws.orphanSweep.enabled ? clients.iam : undefined;
  const flyte = cfg.flyte.enabled && cfg.flyte.orphanSweep.enabled ? clients.flyte : undefined;
  if (!iam && !flyte) return undefined;
  return async (live, isLive) => {
    // Each system on its own: IAM being unreachable must not keep Flyte projects from being swept.
    const failures: unknown[] = [];
    if (iam) {
      const dryRun = cfg.aws.orphanSweep.dryRun;
      try {
        const orphans = await sweepIamOrphans({ api: iam, cfg, liveWorkspaceIds: live, dryRun, log });
        for (const o of orphans) {
          if (o.action !== 'failed') metrics.orphansRemoved.inc({ system: 'iam', dry_run: String(dryRun) });
        }
        if (orphans.length > 0) log.info({ orphans: orphans.slice(0, 20), dryRun }, 'IAM orphan sweep');
      } catch (err) {
        failures.push(err);
      }
    }
    if (flyte) {
      try {
        const dryRun = cfg.flyte.orphanSweep.dryRun;
        const orphans = await sweepFlyteOrphans({
          // One sweep may not hold FlyteAdmin's call slots for longer than this.
          api: flyte.withBudget(5 * 60_000),
          cfg,
          liveWorkspaceIds: live,
          ...(isLive ? { isLive } : {}),
          dryRun,
          log,
        });
        for (const o of orphans) {
          if (o.action !== 'failed') metrics.orphansRemoved.inc({ system: 'flyte', dry_run: String(dryRun) });
        }
        if (orphans.length > 0) log.info({ orphans: orphans.slice(0, 20), dryRun }, 'Flyte orphan sweep');
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length > 0) throw failures[0];
  };
}
