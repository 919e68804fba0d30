// The status the controller writes back on the workspace ConfigMap (annotation workspaces.flyte.org/status):
// compact JSON a person running `kubectl get cm -o yaml` can read. Pure functions only.
import { type StepName, type StepOutcome, type StepState, stepDetails } from '../kinds/step.js';
import type { FieldError } from '../spec/workspace.js';

export type Phase = 'Provisioning' | 'Ready' | 'Failed' | 'Invalid' | 'Conflict' | 'Deleting' | 'Disabled';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface StepStatus {
  state: StepState;
  reason: string;
  message: string;
  lastTransitionTime: string;
  /** The step's result as text (stepDetails); this shape is what every controller version reads. */
  details?: Record<string, string>;
}

export interface WorkspaceStatus {
  phase: Phase;
  /** Workspace id of the last valid spec: lets teardown work even when the current document is broken. */
  workspaceId?: string;
  /** Hash of the last spec that reconciled to Ready. */
  observedSpecHash?: string;
  /** Hash of the spec the current status describes. */
  specHash?: string;
  /** Rerun token handled last (Flux-style requestedAt echo). */
  lastHandledReconcileAt?: string;
  /** True once this ConfigMap provisioned anything: only then may its deletion tear things down. */
  owner?: boolean;
  conditions: Condition[];
  steps: Partial<Record<StepName, StepStatus>>;
  namespaces?: string[];
  roleArn?: string;
  flyteProject?: string;
  consoleUrl?: string;
  invalidFields?: FieldError[];
  lastError?: string;
}

const MAX_MESSAGE = 512;

export function clipMessage(s: string): string {
  return s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE - 1)}…` : s;
}

export function parseStatus(raw: string | undefined): WorkspaceStatus | undefined {
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as WorkspaceStatus;
    if (typeof s !== 'object' || s === null || typeof s.phase !== 'string') return undefined;
    s.conditions = Array.isArray(s.conditions) ? s.conditions : [];
    s.steps = typeof s.steps === 'object' && s.steps ? s.steps : {};
    return s;
  } catch {
    return undefined;
  }
}

/** Keeps lastTransitionTime when a condition's status did not change (Kubernetes convention). */
export function setCondition(
  previous: Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  now: string,
): Condition {
  const prev = previous?.find((c) => c.type === next.type);
  const message = clipMessage(next.message);
  return {
    ...next,
    message,
    lastTransitionTime: prev && prev.status === next.status ? prev.lastTransitionTime : now,
  };
}

export function stepStatus(prev: StepStatus | undefined, outcome: StepOutcome, now: string): StepStatus {
  // A Ready step is recorded as a stable fact ("Synced"), not as what this pass happened to do, so a
  // reconcile that repaired something and the next one that found nothing to do write the same status.
  const ready = outcome.state === 'Ready';
  const s: StepStatus = {
    state: outcome.state,
    reason: ready ? 'Synced' : outcome.reason,
    message: ready ? 'in sync' : clipMessage(outcome.message),
    lastTransitionTime: prev && prev.state === outcome.state ? prev.lastTransitionTime : now,
  };
  const details = outcome.result ? stepDetails(outcome.result) : {};
  if (Object.keys(details).length > 0) s.details = details;
  return s;
}

const STEP_CONDITION: Record<StepName, string> = {
  kubernetes: 'KubernetesReady',
  iam: 'IAMReady',
  flyte: 'FlyteReady',
};

export function stepConditions(
  previous: Condition[] | undefined,
  steps: Partial<Record<StepName, StepStatus>>,
  now: string,
): Condition[] {
  const out: Condition[] = [];
  for (const [name, s] of Object.entries(steps) as [StepName, StepStatus][]) {
    out.push(
      setCondition(
        previous,
        {
          type: STEP_CONDITION[name],
          status: s.state === 'Ready' || s.state === 'Deleted' ? 'True' : s.state === 'Skipped' ? 'Unknown' : 'False',
          reason: s.reason,
          message: s.message,
        },
        now,
      ),
    );
  }
  return out;
}

/** Equality ignoring nothing: the serialized form is what would be written. */
export function sameStatus(a: WorkspaceStatus | undefined, b: WorkspaceStatus): boolean {
  return !!a && serializeStatus(a) === serializeStatus(b);
}

export function serializeStatus(s: WorkspaceStatus): string {
  return JSON.stringify(s);
}
