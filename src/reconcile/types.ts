// The contract between the reconciler and each external system's step (Kubernetes, IAM, FlyteAdmin).
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import {
  type ErrorClass,
  StepError,
  type StepName,
  type StepOutcome,
  type StepState,
  type SystemName,
} from '../kinds/step.js';
import type { WorkspaceNames } from '../spec/names.js';
import type { WorkspaceSpec } from '../spec/workspace.js';
import type { WorkspaceStatus } from './status.js';

export {
  type ErrorClass,
  StepError,
  type StepName,
  type StepOutcome,
  type StepResult,
  type StepState,
  type SystemName,
  stepDetails,
  stepResultOf,
} from '../kinds/step.js';

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

export interface StepOutputs {
  /** The ARN IAM returned for the workspace role (falls back to the computed one before IAM ran). */
  roleArn?: string;
  /** Flyte domains actually configured in FlyteAdmin (GetDomains), when discovered. */
  flyteDomains?: string[];
  /** The ARN the Kubernetes step put on the runner ServiceAccount in this reconcile. */
  serviceAccountRoleArn?: string;
}

/**
 * One external system's step. The contract, the same for every step:
 * - ensure/teardown resolve to an outcome, failures included: a failure is raised inside the step as a
 *   StepError whose class (conflict / terminal / retryable) was decided where it was born (the adapter
 *   for the system's own errors, the step for objects that are not ours), and `settle` (steps/scaffold.ts)
 *   turns it into the outcome, keeping the writes made before it. A rejection is a defect; the reconciler
 *   reports it as a retryable failure and logs it.
 * - Every write goes through the step's StepWriter (record the change, skip it in a dry run, count it,
 *   report drift repair), so a plan and a reconcile see the same changes.
 * - What the step established is returned typed in `result`; later steps read StepOutputs.
 */
export interface WorkspaceStep {
  readonly name: StepName;
  /** Make the system match the spec. Must be idempotent and write only on difference. */
  ensure(ctx: StepContext): Promise<StepOutcome>;
  /** Remove everything this step created for the workspace. Missing things are success. */
  teardown(ctx: StepBaseContext): Promise<StepOutcome>;
}

/** The outcome state of each error class. */
const STATE_OF: Record<ErrorClass, StepState> = { conflict: 'Conflict', terminal: 'Failed', retryable: 'Failed' };

/** A failure as an outcome: the error's class decides the state and the retry; anything unclassified retries. */
export function errorOutcome(err: unknown): StepOutcome {
  if (err instanceof StepError) {
    const outcome: StepOutcome = {
      state: STATE_OF[err.errorClass],
      reason: err.reason,
      message: err.code ? `${err.code}: ${err.message}` : err.message,
      writes: 0,
      retryable: err.retryable,
    };
    if (err.result) outcome.result = err.result;
    return outcome;
  }
  return {
    state: 'Failed',
    reason: 'Error',
    message: err instanceof Error ? err.message : String(err),
    writes: 0,
    retryable: true,
  };
}
