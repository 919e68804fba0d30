// How a reconcile ends, after Flux's summarize-and-patch: every branch of the reconciler (an invalid
// document, a claim conflict, Flyte not selected, ensure, teardown) describes what it concluded as a
// ReconcileReport, and the reconciler's one exit (`finish`) turns the report into the status annotation
// (`summarizeStatus`), writes it once (skipped when unchanged), records the report's Event and tells the work
// queue what comes next. The builders here decide Ready, the phase, the Event and the requeue from the step
// outcomes; they are pure.
import type { FieldError, WorkspaceSpec } from '../spec/workspace.js';
import type { EventType } from './events.js';
import {
  type Condition,
  clipMessage,
  type Phase,
  type StepStatus,
  setCondition,
  stepConditions,
  stepStatus,
  type WorkspaceStatus,
} from './status.js';
import type { StepName, StepOutcome, StepResult } from './types.js';

/** What the work queue does with the key next. */
export type Requeue =
  /** Nothing until something changes. */
  | { kind: 'done' }
  /** A step still runs in its lane, and the lane asks for the key again when it settles. */
  | { kind: 'waiting' }
  /** Back off and retry (RetryableReconcileError); status already says why. */
  | { kind: 'retry'; message: string }
  /**
   * A failure retrying cannot help (controller-runtime's TerminalError): no retry, as `done`, but counted
   * as a terminal reconcile error. Waits for a new spec or a rerun.
   */
  | { kind: 'terminal'; message: string };

export interface EventRecord {
  type: EventType;
  reason: string;
  message: string;
}

/** Every status field but the phase and the conditions, which the report states on their own. */
export type StatusRecord = Omit<WorkspaceStatus, 'phase' | 'conditions'>;

/** What status a reconcile concluded. */
export interface StatusReport {
  phase: Phase;
  /** The Ready condition: the summary a user reads first (`kubectl`, the CLI's status). */
  ready: Omit<Condition, 'type' | 'lastTransitionTime'>;
  /** Conditions after Ready: one per step, the previous ones (a bad document changes nothing), or none. */
  otherConditions: 'perStep' | 'previous' | 'none';
  record: StatusRecord;
}

/** What a reconcile concluded: the status, whether the finalizer stays, the Event, and what comes next. */
export interface ReconcileReport extends StatusReport {
  /** Whether the ConfigMap carries our finalizer after this reconcile. */
  finalizer: boolean;
  event?: EventRecord;
  requeue: Requeue;
  /** A rerun token this reconcile answered (a forced pass that every step answered); logged once written. */
  handledRerun?: string;
}

/**
 * The annotation's field order: one order for every phase, so an unchanged status serializes byte for
 * byte the same and the write is skipped. It is the order a Ready workspace's status always had.
 */
const FIELD_ORDER = [
  'workspaceId',
  'specHash',
  'owner',
  'conditions',
  'steps',
  'observedSpecHash',
  'namespaces',
  'roleArn',
  'flyteProject',
  'consoleUrl',
  'invalidFields',
  'lastError',
  'lastHandledReconcileAt',
] as const satisfies readonly (keyof WorkspaceStatus)[];
// A status field missing from FIELD_ORDER would never be written: make that a compile error.
type UnorderedField = Exclude<keyof WorkspaceStatus, 'phase' | (typeof FIELD_ORDER)[number]>;
const everyFieldOrdered: [UnorderedField] extends [never] ? true : UnorderedField = true;
void everyFieldOrdered;

/** The status a report describes; `previous` keeps the conditions' lastTransitionTime where status did not flip. */
export function summarizeStatus(
  report: StatusReport,
  previous: WorkspaceStatus | undefined,
  now: string,
): WorkspaceStatus {
  const ready = setCondition(previous?.conditions, { type: 'Ready', ...report.ready }, now);
  const others =
    report.otherConditions === 'perStep'
      ? stepConditions(previous?.conditions, report.record.steps, now)
      : report.otherConditions === 'previous'
        ? (previous?.conditions ?? []).filter((c) => c.type !== 'Ready')
        : [];
  const fields: WorkspaceStatus = { ...report.record, phase: report.phase, conditions: [ready, ...others] };
  const status: Record<string, unknown> = { phase: report.phase };
  for (const field of FIELD_ORDER) if (fields[field] !== undefined) status[field] = fields[field];
  return status as unknown as WorkspaceStatus;
}

// --- Step outputs. The one place that reads what steps report (their typed results) for status and for
// later steps.

/** The step outputs status shows. */
export function statusDetails(
  outcomes: Iterable<StepOutcome>,
): Pick<WorkspaceStatus, 'namespaces' | 'roleArn' | 'flyteProject' | 'consoleUrl'> {
  const found: StepResult = Object.assign({}, ...[...outcomes].map((o) => o.result ?? {}));
  const shown: Pick<WorkspaceStatus, 'namespaces' | 'roleArn' | 'flyteProject' | 'consoleUrl'> = {};
  if (found.namespaces?.length) shown.namespaces = found.namespaces;
  if (found.roleArn) shown.roleArn = found.roleArn;
  if (found.projectId) shown.flyteProject = found.projectId;
  if (found.consoleUrl) shown.consoleUrl = found.consoleUrl;
  return shown;
}

/** The role ARN the IAM step returned: the Kubernetes step puts it on the runner ServiceAccount. */
export function roleArnOf(iam: StepOutcome | undefined): string | undefined {
  return iam?.result?.roleArn;
}

// --- The reports of the reconciler's branches.

/** A rerun token is echoed as handled by the reconcile that answers it (see `ensureReport` for a pass). */
function handledToken(record: StatusRecord, requested: string | undefined): void {
  if (requested !== undefined) record.lastHandledReconcileAt = requested;
}

/**
 * A reconcile that refuses to act on the document: Ready False for `reason`, a Warning Event of the same
 * reason, and nothing to retry until the document (or the claim) changes.
 */
function refusal(
  phase: 'Invalid' | 'Conflict',
  reason: string,
  message: string,
  r: Pick<ReconcileReport, 'record' | 'otherConditions' | 'finalizer'>,
): ReconcileReport {
  return {
    phase,
    ready: { status: 'False', reason, message },
    ...r,
    event: { type: 'Warning', reason, message },
    requeue: { kind: 'done' },
  };
}

/**
 * A document that does not validate (or renames a provisioned workspace): report it and keep the last good
 * state, with every field and condition status had. Nothing is torn down because of a bad document.
 */
export function invalidReport(
  previous: WorkspaceStatus | undefined,
  message: string,
  errors: FieldError[],
  requested: string | undefined,
  finalizer: boolean,
): ReconcileReport {
  const record: StatusRecord = { ...(previous ?? { steps: {} }) };
  delete record.specHash;
  record.invalidFields = errors.slice(0, 20);
  record.lastError = clipMessage(message);
  handledToken(record, requested);
  return refusal('Invalid', 'InvalidSpec', message, { record, otherConditions: 'previous', finalizer });
}

/** Another ConfigMap won the claim on this workspace id: this one provisions nothing. */
export function claimConflictReport(
  spec: WorkspaceSpec,
  specHash: string,
  winner: string,
  requested: string | undefined,
  finalizer: boolean,
): ReconcileReport {
  const message = `workspace_id "${spec.workspaceId}" is already claimed by ConfigMap ${winner}`;
  const record: StatusRecord = { workspaceId: spec.workspaceId, specHash, owner: false, steps: {}, lastError: message };
  handledToken(record, requested);
  return refusal('Conflict', 'WorkspaceClaimConflict', message, { record, otherConditions: 'none', finalizer });
}

/** Flyte is not among the services of a workspace that never provisioned anything: Ready, nothing to do. */
export function notSelectedReport(
  spec: WorkspaceSpec,
  specHash: string,
  requested: string | undefined,
): ReconcileReport {
  const record: StatusRecord = { workspaceId: spec.workspaceId, specHash, steps: {} };
  handledToken(record, requested);
  return {
    phase: 'Disabled',
    ready: { status: 'True', reason: 'FlyteNotSelected', message: 'flyte is not among the services' },
    otherConditions: 'none',
    record,
    finalizer: false,
    requeue: { kind: 'done' },
  };
}

/**
 * The status written before any step runs: our finalizer and the ownership marker, so a crash right after
 * creating something can never leave it without a path to cleanup.
 */
export function provisioningReport(previous: WorkspaceStatus | undefined, workspaceId: string): StatusReport {
  return {
    phase: 'Provisioning',
    ready: { status: 'False', reason: 'Provisioning', message: 'provisioning started' },
    otherConditions: 'none',
    record: { ...(previous ?? { steps: {} }), workspaceId, owner: true },
  };
}

export interface EnsureSummary {
  spec: WorkspaceSpec;
  specHash: string;
  /** The spec is the one last reconciled to Ready: writes now are drift repair. */
  specUnchanged: boolean;
  /** Each step's outcome in this reconcile (or what status showed for a step that is still running). */
  outcomes: Map<StepName, StepOutcome>;
  /** Some step still runs or waits in its lane. */
  pending: boolean;
  /**
   * Every pending step is a background drift check of a step status shows Ready for this spec: nothing
   * waits on it, and the lane asks for the key again only if it finds drift.
   */
  backgroundOnly?: boolean;
  /** Of the pending steps, those status shows as Progressing or Waiting (first runs, not re-checks). */
  inProgress: StepName[];
  /** Status as this reconcile found it. */
  found: WorkspaceStatus | undefined;
  /** Status as last written (after the Provisioning write, if there was one): step transition times. */
  written: WorkspaceStatus | undefined;
  /** The rerun token on the ConfigMap, and whether it asked for this (forced) pass. */
  requested: string | undefined;
  force: boolean;
  now: string;
}

/**
 * Summarizes the steps of an ensure: the first Conflict, else the first failure, else the first step still
 * in progress decides Ready; Events and retries wait until every step has answered.
 */
export function ensureReport(s: EnsureSummary): ReconcileReport {
  const outcomes = [...s.outcomes.values()];
  const steps: Partial<Record<StepName, StepStatus>> = {};
  for (const [name, o] of s.outcomes) steps[name] = stepStatus(s.written?.steps[name], o, s.now);
  const failed = outcomes.filter((o) => o.state === 'Failed');
  const conflict = outcomes.find((o) => o.state === 'Conflict');
  const progressing = s.inProgress[0] !== undefined ? s.outcomes.get(s.inProgress[0]) : undefined;
  const phase: Phase = conflict ? 'Conflict' : failed.length > 0 ? 'Failed' : progressing ? 'Provisioning' : 'Ready';
  const firstProblem = conflict ?? failed[0] ?? progressing;
  const writes = outcomes.reduce((n, o) => n + o.writes, 0);
  const readyMessage = firstProblem
    ? `${[...s.outcomes.entries()].find(([, o]) => o === firstProblem)?.[0]}: ${firstProblem.message}`
    : 'workspace provisioned';

  const record: StatusRecord = { workspaceId: s.spec.workspaceId, specHash: s.specHash, owner: true, steps };
  const observed = phase === 'Ready' ? s.specHash : s.found?.observedSpecHash;
  if (observed) record.observedSpecHash = observed;
  Object.assign(record, statusDetails(outcomes));
  if (firstProblem && firstProblem !== progressing) record.lastError = clipMessage(readyMessage);
  // A rerun is handled once every step has answered for it; until then the previous token stays.
  if (s.requested !== undefined && (!s.pending || !s.force)) record.lastHandledReconcileAt = s.requested;
  else if (s.found?.lastHandledReconcileAt !== undefined)
    record.lastHandledReconcileAt = s.found.lastHandledReconcileAt;

  const report: ReconcileReport = {
    phase,
    ready: {
      status: phase === 'Ready' ? 'True' : 'False',
      reason: firstProblem?.reason ?? 'Provisioned',
      message: readyMessage,
    },
    otherConditions: 'perStep',
    record,
    finalizer: true,
    requeue: { kind: 'done' },
  };
  if (s.pending && !s.backgroundOnly) {
    // The lane asks for this key again when a step settles with news: Events and retries are decided once
    // every step has answered, not on each partial pass. Background drift checks are the exception: one
    // that finds nothing asks for no further reconcile, so what this one did is reported now.
    report.requeue = { kind: 'waiting' };
    return report;
  }
  if (firstProblem) {
    report.event = { type: 'Warning', reason: firstProblem.reason, message: readyMessage };
  } else if (writes > 0 || s.found?.phase !== 'Ready') {
    report.event = {
      type: 'Normal',
      reason: s.specUnchanged ? 'DriftRepaired' : 'Provisioned',
      message: `workspace ${s.spec.workspaceId} ready (${writes} change(s))`,
    };
  }
  if (s.force && s.requested !== undefined) report.handledRerun = s.requested;
  if (failed.some((o) => o.retryable !== false)) report.requeue = { kind: 'retry', message: readyMessage };
  else if (failed.length > 0) report.requeue = { kind: 'terminal', message: readyMessage };
  else if (s.pending) report.requeue = { kind: 'waiting' };
  return report;
}

export interface TeardownSummary {
  /** What the ConfigMap becomes once everything is gone. */
  phase: 'Deleting' | 'Disabled';
  /** Why it is torn down, the start of every message. */
  why: string;
  workspaceId: string | undefined;
  /** Each step's teardown outcome, in teardown order; empty when this ConfigMap owned nothing to remove. */
  outcomes: Map<StepName, StepOutcome>;
  /** The step still tearing down in its lane (the ones after it wait). */
  pendingStep: StepName | undefined;
  found: WorkspaceStatus | undefined;
  now: string;
}

/** Summarizes a teardown: the finalizer goes once every step is gone; a failed step is retried. */
export function teardownReport(s: TeardownSummary): ReconcileReport {
  const steps: Partial<Record<StepName, StepStatus>> = {};
  for (const [name, o] of s.outcomes) steps[name] = stepStatus(s.found?.steps[name], o, s.now);
  const withId = (record: StatusRecord): StatusRecord =>
    s.workspaceId ? { ...record, workspaceId: s.workspaceId } : record;
  if (s.pendingStep) {
    // Still tearing down in a lane: say where it stands; the lane asks for this key again.
    const message = `${s.why}: ${s.pendingStep}: ${(s.outcomes.get(s.pendingStep) as StepOutcome).message}`;
    return {
      phase: 'Deleting',
      ready: { status: 'False', reason: 'TearingDown', message },
      otherConditions: 'none',
      record: withId({ steps: { ...s.found?.steps, ...steps }, owner: true }),
      finalizer: true,
      requeue: { kind: 'waiting' },
    };
  }
  const failed = [...s.outcomes.entries()].filter(
    ([, o]) => o.state !== 'Deleted' && o.state !== 'Skipped' && o.state !== 'Progressing' && o.state !== 'Waiting',
  );
  if (failed.length === 0) {
    const message = `${s.why}: cleaned up`;
    const report: ReconcileReport = {
      phase: s.phase,
      ready: { status: 'False', reason: 'TornDown', message },
      otherConditions: 'none',
      record: withId({ steps, owner: false }),
      finalizer: false,
      requeue: { kind: 'done' },
    };
    if (s.outcomes.size > 0) report.event = { type: 'Normal', reason: 'TornDown', message };
    return report;
  }
  const message = `${s.why}: ${failed.map(([n, o]) => `${n}: ${o.message}`).join('; ')}`;
  return {
    phase: 'Deleting',
    ready: { status: 'False', reason: 'TearingDown', message },
    otherConditions: 'none',
    record: { ...withId({ steps, owner: true }), lastError: clipMessage(message) },
    finalizer: true,
    event: { type: 'Warning', reason: failed[0]?.[1].reason ?? 'TeardownFailed', message },
    requeue: { kind: 'retry', message },
  };
}
