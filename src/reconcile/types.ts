// The contract between the reconciler and each external system's step (Kubernetes, IAM, FlyteAdmin).
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import { StepError, type StepName, type StepOutcome, type SystemName } from '../kinds/step.js';
import type { WorkspaceNames } from '../spec/names.js';
import type { WorkspaceSpec } from '../spec/workspace.js';
import type { WorkspaceStatus } from './status.js';

export { StepError, type StepName, type StepOutcome, type StepState, type SystemName } from '../kinds/step.js';

/** One change a step made (or, in dry-run, would make). The `plan` command prints these. */
export interface PlannedChange {
  system: SystemName;
  action: 'create' | 'update' | 'delete' | 'archive' | 'unarchive';
  /** Human-readable target, e.g. `RoleBinding flyte-ws1/owner-1a2b3c` or `role FlyteWorkspace-ws1-Role`. */
  target: string;
  /** What differs, briefly (field paths), when known. */
  detail?: string;
}

export interface StepBaseContext {
  cfg: ControllerConfig;
  log: Logger;
  workspaceId: string;
  names: WorkspaceNames;
  /** Plan mode: compute and record changes, write nothing. */
  dryRun: boolean;
  /** Rerun requested: bypass every cache and short-circuit, read live state. */
  force: boolean;
  /** Append-only record of changes; steps push here and write only when !dryRun. */
  changes: PlannedChange[];
  /** Values passed from earlier steps to later ones (e.g. the IAM role ARN). */
  outputs: StepOutputs;
  /** ConfigMap that owns the workspace, as `namespace/name`. */
  source: string;
}

export interface StepContext extends StepBaseContext {
  spec: WorkspaceSpec;
  specHash: string;
  /** The spec is the one last reconciled successfully: any write now is drift repair. */
  specUnchanged: boolean;
  /** The status as this reconcile found it (what earlier reconciles, maybe of another process, recorded). */
  previous?: WorkspaceStatus;
}

/**
 * Whether the previous status records `step` as Ready for exactly this desired state (`desiredHash` in
 * its details). After a restart the steps' in-memory "verified" records are empty; trusting what was
 * recorded, and re-reading at a random point within one drift-check interval, spreads a restart's
 * re-reads of thousands of workspaces over that interval instead of spending the whole request budget
 * at once. A rerun (force) or a plan always reads.
 */
export function recordedAsConverged(ctx: StepContext, step: StepName, desiredHash: string): boolean {
  if (ctx.force || ctx.dryRun) return false;
  const s = ctx.previous?.steps[step];
  return s?.state === 'Ready' && s.details?.desiredHash === desiredHash;
}

/** A verification time that makes the next check fall uniformly within the next `intervalMs`. */
export function spreadVerifiedAt(now: number, intervalMs: number, random: () => number = Math.random): number {
  return now - random() * intervalMs;
}

export interface StepOutputs {
  /** The ARN IAM returned for the workspace role (falls back to the computed one before IAM ran). */
  roleArn?: string;
  /** Flyte domains actually configured in FlyteAdmin (GetDomains), when discovered. */
  flyteDomains?: string[];
  /** The ARN the Kubernetes step put on the runner ServiceAccount in this reconcile. */
  serviceAccountRoleArn?: string;
}

export interface WorkspaceStep {
  readonly name: StepName;
  /** Make the system match the spec. Must be idempotent and write only on difference. */
  ensure(ctx: StepContext): Promise<StepOutcome>;
  /** Remove everything this step created for the workspace. Missing things are success. */
  teardown(ctx: StepBaseContext): Promise<StepOutcome>;
}

export function errorOutcome(err: unknown): StepOutcome {
  if (err instanceof StepError) {
    return {
      state: err.reason.endsWith('Conflict') || err.reason.includes('NotOwned') ? 'Conflict' : 'Failed',
      reason: err.reason,
      message: err.code ? `${err.code}: ${err.message}` : err.message,
      writes: 0,
      retryable: err.retryable,
    };
  }
  return {
    state: 'Failed',
    reason: 'Error',
    message: err instanceof Error ? err.message : String(err),
    writes: 0,
    retryable: true,
  };
}
