// The contract between the reconciler and each external system's step (Kubernetes, IAM, FlyteAdmin).
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import type { WorkspaceNames } from '../desired/names.js';
import type { WorkspaceSpec } from '../spec/workspace.js';

export type StepName = 'kubernetes' | 'iam' | 'flyte';
export type SystemName = StepName;

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
}

export interface StepOutputs {
  /** The ARN IAM returned for the workspace role (falls back to the computed one before IAM ran). */
  roleArn?: string;
  /** Flyte domains actually configured in FlyteAdmin (GetDomains), when discovered. */
  flyteDomains?: string[];
  /** The ARN the Kubernetes step put on the runner ServiceAccount in this reconcile. */
  serviceAccountRoleArn?: string;
}

export type StepState = 'Ready' | 'Failed' | 'Conflict' | 'Skipped' | 'Deleted';

export interface StepOutcome {
  state: StepState;
  /** CamelCase reason, as in Kubernetes conditions (e.g. Applied, UpToDate, RoleNotOwned, FlyteUnavailable). */
  reason: string;
  message: string;
  /** Write calls made by this step in this reconcile. */
  writes: number;
  /** Small string facts for status (names, ARNs, URLs); never secrets. */
  details?: Record<string, string>;
  /** For Failed: whether retrying can help. Terminal failures wait for a spec change or a rerun. */
  retryable?: boolean;
}

export interface WorkspaceStep {
  readonly name: StepName;
  /** Make the system match the spec. Must be idempotent and write only on difference. */
  ensure(ctx: StepContext): Promise<StepOutcome>;
  /** Remove everything this step created for the workspace. Missing things are success. */
  teardown(ctx: StepBaseContext): Promise<StepOutcome>;
}

/** A failure with a machine-readable reason; `retryable: false` means back off until the input changes. */
export class StepError extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly retryable: boolean,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'StepError';
  }
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
