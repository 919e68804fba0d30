// The vocabulary every layer shares about the three external systems and what a step did to one of them:
// adapters raise StepError, the reconciler turns outcomes into status.
export type StepName = 'kubernetes' | 'iam' | 'flyte';
export type SystemName = StepName;

/** Progressing: running in the system's lane; Waiting: queued there for a free slot (reconcile/lanes.ts). */
export type StepState = 'Ready' | 'Failed' | 'Conflict' | 'Skipped' | 'Deleted' | 'Progressing' | 'Waiting';

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
