// The vocabulary every layer shares about the three external systems and what a step did to one of them:
// adapters and steps raise StepError with an explicit class, the reconciler turns outcomes into status.
export type StepName = 'kubernetes' | 'iam' | 'flyte';
export type SystemName = StepName;

/** Progressing: running in the system's lane; Waiting: queued there for a free slot (reconcile/lanes.ts). */
export type StepState = 'Ready' | 'Failed' | 'Conflict' | 'Skipped' | 'Deleted' | 'Progressing' | 'Waiting';

/**
 * What a step established, typed. The status keeps it per step as `details`, strings only (stepDetails
 * below), so the annotation keeps the shape older controllers wrote and read.
 */
export interface StepResult {
  // Kubernetes
  namespaces?: string[];
  serviceAccount?: string;
  contextConfigMap?: string;
  roleBindings?: number;
  // IAM
  roleName?: string;
  roleArn?: string;
  // Flyte
  projectId?: string;
  consoleUrl?: string;
  projectState?: string;
  domains?: string[];
  /** Hash of the desired state a Ready step converged to: lets a restarted controller trust the record. */
  desiredHash?: string;
}

const LIST_FACTS = new Set(['namespaces', 'domains']);
const NUMBER_FACTS = new Set(['roleBindings']);

/** A result as the status records it: lists comma-joined, numbers as text, keys in the result's order. */
export function stepDetails(result: StepResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(result) as [string, string | number | string[] | undefined][]) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(',') : String(v);
  }
  return out;
}

/** The inverse of stepDetails, for a step whose last recorded status stands in for a new answer. */
export function stepResultOf(details: Record<string, string>): StepResult {
  const out: Record<string, string | number | string[]> = {};
  for (const [k, v] of Object.entries(details)) {
    out[k] = LIST_FACTS.has(k) ? (v === '' ? [] : v.split(',')) : NUMBER_FACTS.has(k) ? Number(v) : v;
  }
  return out as StepResult;
}

export interface StepOutcome {
  state: StepState;
  /** CamelCase reason, as in Kubernetes conditions (e.g. Applied, UpToDate, RoleNotOwned, FlyteUnavailable). */
  reason: string;
  message: string;
  /** Write calls made by this step in this reconcile. */
  writes: number;
  /** What the step found or made (names, ARNs, URLs); never secrets. */
  result?: StepResult;
  /** For Failed: whether retrying can help. Terminal failures wait for a spec change or a rerun. */
  retryable?: boolean;
}

/**
 * How a failure is handled, decided where it is born (controller-runtime's TerminalError, Flux's serror):
 * conflict: something we must not touch is in the way (not ours); nothing further is created, no retry.
 * terminal: retrying cannot help until the input changes (invalid, rejected, forbidden by policy).
 * retryable: the work queue backs off and tries again.
 */
export type ErrorClass = 'conflict' | 'terminal' | 'retryable';

/** A failure with a machine-readable reason and an explicit class; `code` is the external system's own. */
export class StepError extends Error {
  readonly retryable: boolean;
  readonly code?: string;
  /** What the step found before failing (e.g. the ARN of a role that is not ours). */
  readonly result?: StepResult;

  constructor(
    readonly reason: string,
    message: string,
    readonly errorClass: ErrorClass,
    extra: { code?: string; result?: StepResult } = {},
  ) {
    super(message);
    this.name = 'StepError';
    this.retryable = errorClass === 'retryable';
    if (extra.code !== undefined) this.code = extra.code;
    if (extra.result !== undefined) this.result = extra.result;
  }
}
