// The workspace reconciler: load spec → compute desired state → diff → apply per step → status.
// Level-triggered and idempotent: it reads everything it needs each time and can be killed at any point.
// Each branch (invalid document, claim conflict, Flyte not selected, ensure, teardown) ends in a report
// (summarize.ts) that one exit, `finish`, writes as status, records as an Event and turns into the queue's
// next move.
import type { Logger } from 'pino';
import type { KubeApi, KubeObject } from '../adapters/kubernetes.js';
import { type ControllerConfig, FINALIZER, RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../config/config.js';
import { reconcileLogger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { workspaceNames } from '../spec/names.js';
import {
  formatFieldErrors,
  type ParseResult,
  parseWorkspace,
  type WorkspaceSpec,
  workspaceDocument,
} from '../spec/workspace.js';
import type { ClaimIndex, SourceLookup } from './claims.js';
import type { EventSink } from './events.js';
import type { LaneAnswer, SystemLane } from './lanes.js';
import { parseStatus, type StepStatus, sameStatus, serializeStatus, type WorkspaceStatus } from './status.js';
import {
  claimConflictReport,
  ensureReport,
  invalidReport,
  notSelectedReport,
  provisioningReport,
  type ReconcileReport,
  roleArnOf,
  summarizeStatus,
  teardownReport,
} from './summarize.js';
import {
  errorOutcome,
  type PlannedChange,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepName,
  type StepOutcome,
  stepResultOf,
  type WorkspaceStep,
} from './types.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
  /** A step is still running in its lane, which asks for the key again (see WorkQueue's Result). */
  waiting?: boolean;
  /** Failed in a way retrying cannot help: not requeued, counted as a terminal reconcile error. */
  terminalError?: string;
}

export interface ReconcilerDeps {
  cfg: ControllerConfig;
  kube: KubeApi;
  /** In creation order: kubernetes → iam → flyte. Teardown runs in reverse. */
  steps: WorkspaceStep[];
  sources: SourceLookup;
  claims: ClaimIndex;
  events: EventSink;
  metrics?: Metrics;
  log: Logger;
  /** Asked when a key is handed over to another claimant (e.g. the winner of a released claim). */
  enqueue?: (key: string) => void;
  /**
   * Bulkheads for the external steps (see lanes.ts). A step with a lane runs there: a worker never waits
   * on that system. Without one (plan, tests of a single step) it runs inline.
   */
  lanes?: Partial<Record<StepName, SystemLane>>;
}

/**
 * The external outcomes gathered by the reconciles of one key towards one goal (`token`: a desired state,
 * a rerun token, or teardown). A step that settled in an earlier reconcile of the pass is not asked again;
 * the pass ends when a reconcile finds no step pending, so the next one asks every step afresh (a cache
 * answers inline, or a drift check runs in the lane).
 */
interface Pass {
  token: string;
  outcomes: Map<StepName, StepOutcome>;
  /** Steps still running or queued in their lanes, as of the last reconcile of this pass. */
  pending: Set<StepName>;
  /** Of those, re-checks of a step status already shows as Ready for this spec (drift checks). */
  background: Set<StepName>;
}

/** How a step stands in this reconcile: settled, or still running/queued in its lane. */
type StepRun = { outcome: StepOutcome; pending: boolean };

/** Step states that are a step's answer (as opposed to Progressing/Waiting: still asking). */
const SETTLED = new Set<string>(['Ready', 'Failed', 'Conflict']);
const PENDING = new Set<string>(['Progressing', 'Waiting']);

const SYSTEM_WORDS: Record<StepName, string> = { kubernetes: 'Kubernetes', iam: 'IAM', flyte: 'FlyteAdmin' };
const REASON_PREFIX: Record<StepName, string> = { kubernetes: 'Kubernetes', iam: 'Iam', flyte: 'Flyte' };

/** Thrown to make the queue back off and retry; the status already says why. */
export class RetryableReconcileError extends Error {
  override name = 'RetryableReconcileError';
}

/** Equality-based label selector match (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated). */
export function matchesSelector(obj: KubeObject, selector: string): boolean {
  const labels = obj.metadata.labels ?? {};
  return selector
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .every((term) => {
      const ne = term.match(/^([^!=]+)!=(.*)$/);
      if (ne) return labels[(ne[1] as string).trim()] !== (ne[2] as string).trim();
      const eq = term.match(/^([^=]+)==?(.*)$/);
      if (eq) return labels[(eq[1] as string).trim()] === (eq[2] as string).trim();
      if (term.startsWith('!')) return !(term.slice(1) in labels);
      return term in labels;
    });
}

export class WorkspaceReconciler {
  private readonly passes = new Map<string, Pass>();

  constructor(private readonly d: ReconcilerDeps) {}

  /** Whether a pass of `key` is under way: some step of it is still running or queued in its lane. */
  hasPass(key: string): boolean {
    return this.passes.has(key);
  }

  /** Forgets a key's pass and lane results (its ConfigMap is gone for good). */
  forget(key: string): void {
    this.passes.delete(key);
    for (const lane of Object.values(this.d.lanes ?? {})) lane?.forget(key);
  }

  private passFor(key: string, token: string): Pass {
    let pass = this.passes.get(key);
    if (pass?.token !== token) {
      pass = { token, outcomes: new Map(), pending: new Set(), background: new Set() };
      this.passes.set(key, pass);
    }
    return pass;
  }

  /**
   * A lane job of `key` settled. Returns whether the key must be reconciled again to take the outcome: not
   * when it only confirmed what status already shows (a drift check that found nothing), so a resync
   * costs one reconcile per workspace, as before the lanes.
   */
  laneSettled(key: string, token: string, step: StepName, outcome: StepOutcome): boolean {
    const pass = this.passes.get(key);
    if (pass?.token !== token) return true;
    if (pass.background.has(step) && outcome.state === 'Ready' && outcome.writes === 0) {
      pass.background.delete(step);
      pass.pending.delete(step);
      if (pass.pending.size === 0) this.passes.delete(key);
      return false;
    }
    return true;
  }

  /**
   * Runs one step of the pass: the Kubernetes step (or any step without a lane) inline, an external one
   * through its lane unless it already settled in this pass. Pending steps get a Progressing or Waiting
   * outcome that says where they stand.
   */
  private async runInPass(
    pass: Pass,
    key: string,
    name: StepName,
    fn: () => Promise<StepOutcome>,
    log: Logger,
    teardown = false,
    background = false,
  ): Promise<StepRun> {
    const lane = this.d.lanes?.[name];
    if (!lane) return { outcome: await this.runStep(name, fn, log, teardown), pending: false };
    const known = pass.outcomes.get(name);
    if (known) return { outcome: known, pending: false };
    const answer = await lane.request(key, pass.token, () => this.runStep(name, fn, log, teardown), {
      background,
    });
    if (answer.kind === 'settled') {
      pass.outcomes.set(name, answer.outcome);
      return { outcome: answer.outcome, pending: false };
    }
    return { outcome: pendingOutcome(name, answer), pending: true };
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split('/') as [string, string];
    const workspace = this.d.claims.workspaceOf(key);
    const log = reconcileLogger(this.d.log, {
      controller: this.d.cfg.controllerName,
      namespace,
      name,
      ...(workspace ? { workspace } : {}),
    });
    const now = new Date().toISOString();
    const cm = this.d.sources.get(key);
    if (!cm) {
      // Gone from the watch: deleted (finalizer already handled) or no longer labelled. Re-read, so a
      // label removal on an object that still carries our finalizer is cleaned up instead of stuck.
      const live = await this.d.kube.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace, name });
      if (live?.metadata.finalizers?.includes(FINALIZER) && !matchesSelector(live, this.d.cfg.configMapSelector)) {
        log.info('workspace ConfigMap lost its label; tearing down what it provisioned');
        return this.finalize(live, log, now, 'Disabled', 'ConfigMap no longer labelled as a workspace');
      }
      this.forget(key);
      return {}; // nothing left to report on
    }
    const hasFinalizer = cm.metadata.finalizers?.includes(FINALIZER) ?? false;
    if (cm.metadata.deletionTimestamp) {
      if (!hasFinalizer) return {}; // never provisioned, or already cleaned up: the object is going away
      return this.finalize(cm, log, now, 'Deleting', 'ConfigMap deleted');
    }

    const prev = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION]);
    const requested = cm.metadata.annotations?.[RECONCILE_REQUEST_ANNOTATION];
    const parsed = this.parse(cm, prev);
    if (!parsed.ok) {
      // Never delete anything because of a bad document: keep the last good state and report.
      const message = `invalid ${this.d.cfg.configMapKey}: ${formatFieldErrors(parsed.errors)}`;
      log.warn({ errors: parsed.errors.slice(0, 10) }, 'invalid workspace document');
      const report = invalidReport(prev, message, parsed.errors, requested, hasFinalizer);
      const result = await this.finish(cm, prev, report, log, now);
      this.d.metrics?.stepFailures.inc({ step: 'spec', class: 'invalid' });
      return result;
    }

    const { spec, specHash } = parsed;
    const winner = this.d.claims.claimants(spec.workspaceId)[0];
    if (winner !== undefined && winner !== key) {
      return this.finish(cm, prev, claimConflictReport(spec, specHash, winner, requested, hasFinalizer), log, now);
    }
    if (!spec.flyteEnabled) {
      if (prev?.owner || hasFinalizer) {
        return this.finalize(cm, log, now, 'Disabled', 'flyte removed from services', spec);
      }
      return this.finish(cm, prev, notSelectedReport(spec, specHash, requested), log, now);
    }
    const force = requested !== undefined && requested !== prev?.lastHandledReconcileAt;
    return this.ensure(cm, spec, specHash, prev, force, requested, log, now);
  }

  /**
   * The workspace document, validated. A provisioned workspace keeps its id: a new id would leave the old
   * workspace provisioned with nobody managing it (and free for another ConfigMap to claim), so a changed
   * one is refused like any invalid field. Moving is delete + create, on purpose.
   */
  private parse(cm: KubeObject, prev: WorkspaceStatus | undefined): ParseResult {
    const parsed = parseWorkspace(workspaceDocument(cm, this.d.cfg.configMapKey), this.d.cfg);
    if (!parsed.ok || !prev?.owner || !prev.workspaceId || parsed.spec.workspaceId === prev.workspaceId) return parsed;
    return {
      ok: false,
      errors: [
        {
          field: 'workspace_id',
          message: `cannot change from "${prev.workspaceId}" to "${parsed.spec.workspaceId}" once provisioned; delete this ConfigMap to remove workspace ${prev.workspaceId}, then create one for ${parsed.spec.workspaceId}`,
        },
      ],
    };
  }

  /** Computes what a reconcile of `spec` would change, writing nothing (CLI `plan`). */
  async plan(
    spec: WorkspaceSpec,
    specHash: string,
    source: string,
  ): Promise<{ changes: PlannedChange[]; outcomes: Record<string, StepOutcome> }> {
    const base = this.baseContext(spec.workspaceId, source, true, true, this.d.log);
    const outcomes: Record<string, StepOutcome> = {};
    for (const step of this.d.steps) {
      try {
        outcomes[step.name] = spec.flyteEnabled
          ? await step.ensure({ ...base, spec, specHash, specUnchanged: false })
          : await step.teardown(base);
      } catch (err) {
        outcomes[step.name] = errorOutcome(err);
      }
    }
    return { changes: base.changes, outcomes };
  }

  private async ensure(
    cm: KubeObject,
    spec: WorkspaceSpec,
    specHash: string,
    prev: WorkspaceStatus | undefined,
    force: boolean,
    requested: string | undefined,
    log: Logger,
    now: string,
  ): Promise<ReconcileResult> {
    let written = prev;
    let live = cm;
    if (!cm.metadata.finalizers?.includes(FINALIZER) || !prev?.owner) {
      // The one write before the exit, on purpose: finalizer and ownership marker go on before any step
      // creates anything, so a crash right after creating resources can never leave them without a path
      // to cleanup. The exit then compares with (and keeps transition times of) what this wrote.
      written = summarizeStatus(provisioningReport(prev, spec.workspaceId), prev, now);
      live = (await this.writeStatus(cm, prev, written, true, true)) ?? cm;
    }
    const specUnchanged = prev?.observedSpecHash === specHash && prev.phase === 'Ready';
    const ctx: StepContext = {
      ...this.baseContext(spec.workspaceId, sourceKey(cm), false, force, log),
      spec,
      specHash,
      specUnchanged,
      previous: prev,
    };
    const steps = await this.ensureSteps(ctx, prev, requested, log);
    const report = ensureReport({
      ...steps,
      spec,
      specHash,
      specUnchanged,
      found: prev,
      written,
      requested,
      force,
      now,
    });
    return this.finish(live, written, report, log, now);
  }

  /**
   * Runs the steps of one reconcile of the ensure pass, in creation order. Returns each step's outcome (what
   * status showed, for a step re-checked or retried in its lane, or not reached behind a pending one) and
   * which steps are still pending.
   */
  private async ensureSteps(
    ctx: StepContext,
    prev: WorkspaceStatus | undefined,
    requested: string | undefined,
    log: Logger,
  ): Promise<{
    outcomes: Map<StepName, StepOutcome>;
    pending: boolean;
    backgroundOnly: boolean;
    inProgress: StepName[];
  }> {
    const { specHash, force, specUnchanged, source: key } = ctx;
    const pass = this.passFor(key, `ensure:${specHash}:${force ? requested : ''}`);
    // The runner ServiceAccount names the role by the ARN IAM last returned (this pass, else the status),
    // else by the computed one: a pure function of configuration and name, so the namespace never waits
    // for IAM (see README, "Bulkheads").
    const knownArn = roleArnOf(pass.outcomes.get('iam')) ?? prev?.roleArn;
    if (knownArn) ctx.outputs.roleArn = knownArn;
    const outcomes = new Map<StepName, StepOutcome>();
    const pending = new Set<StepName>();
    let blocked = false;
    pass.background.clear();
    for (const step of this.d.steps) {
      if (blocked) break; // create order: a step starts only once the ones before it settled
      const prevStep = prev?.steps[step.name];
      // What status shows for this spec while the step runs again in its lane: a Ready one being re-checked
      // (drift check) or a Failed one being retried keeps showing; only a first run shows Progressing.
      const shown =
        !force && prev?.specHash === specHash && prevStep && SETTLED.has(prevStep.state) ? prevStep : undefined;
      const background = !!shown && specUnchanged && shown.state === 'Ready';
      // A step that may run on in its lane gets its own outputs: later reconciles must not see them half-set.
      const stepCtx = this.d.lanes?.[step.name] ? { ...ctx, outputs: { ...ctx.outputs } } : ctx;
      const run = await this.runInPass(pass, key, step.name, () => step.ensure(stepCtx), log, false, background);
      if (run.pending) {
        pending.add(step.name);
        if (background) pass.background.add(step.name);
        if (!shown) blocked = true;
      }
      outcomes.set(step.name, run.pending && shown ? shownOutcome(shown) : run.outcome);
      const returnedArn = step.name === 'iam' && !run.pending ? roleArnOf(run.outcome) : undefined;
      if (returnedArn) ctx.outputs.roleArn = returnedArn;
      if (run.outcome.state === 'Conflict') break; // not ours: create nothing further
    }
    // The ServiceAccount annotation must carry the ARN IAM actually returned; redo the Kubernetes
    // step when it differs from the one used on the first pass.
    const kubeStep = this.d.steps.find((s) => s.name === 'kubernetes');
    const iamArn = roleArnOf(outcomes.get('iam'));
    if (
      kubeStep &&
      iamArn &&
      outcomes.get('kubernetes')?.state === 'Ready' &&
      iamArn !== ctx.outputs.serviceAccountRoleArn
    ) {
      ctx.outputs.roleArn = iamArn;
      outcomes.set('kubernetes', await this.runStep('kubernetes', () => kubeStep.ensure(ctx), log));
    }
    // Steps not reached (behind a pending one) keep what status showed.
    for (const step of this.d.steps) {
      const prevStep = prev?.steps[step.name];
      if (!outcomes.has(step.name) && pending.size > 0 && prevStep) outcomes.set(step.name, shownOutcome(prevStep));
    }
    const inProgress = [...pending].filter((n) => PENDING.has(outcomes.get(n)?.state ?? 'Ready'));
    pass.pending = pending;
    if (pending.size === 0) this.passes.delete(key);
    const backgroundOnly = pending.size > 0 && [...pending].every((n) => pass.background.has(n));
    return { outcomes, pending: pending.size > 0, backgroundOnly, inProgress };
  }

  /**
   * Tears down everything the ConfigMap provisioned, then releases the finalizer. A ConfigMap that owns
   * nothing (or shares its workspace with another claimant, which takes it over) only lets go.
   */
  private async finalize(
    cm: KubeObject,
    log: Logger,
    now: string,
    phase: 'Deleting' | 'Disabled',
    why: string,
    spec?: WorkspaceSpec,
  ): Promise<ReconcileResult> {
    const key = sourceKey(cm);
    const prev = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION]);
    const workspaceId = spec?.workspaceId ?? prev?.workspaceId;
    const others = workspaceId ? this.d.claims.claimants(workspaceId).filter((k) => k !== key) : [];
    const outcomes = new Map<StepName, StepOutcome>();
    let pendingStep: StepName | undefined;
    if (workspaceId && prev?.owner && others.length === 0) {
      const pass = this.passFor(key, `teardown:${workspaceId}`);
      if (pass.outcomes.size === 0) log.info({ workspace: workspaceId, why }, 'tearing down workspace');
      const base = this.baseContext(workspaceId, key, false, true, log);
      for (const step of [...this.d.steps].reverse()) {
        const run = await this.runInPass(pass, key, step.name, () => step.teardown(base), log, true);
        const prevStep = prev?.steps[step.name];
        // A teardown being retried keeps showing why the last attempt failed.
        const retrying = run.pending && prev?.phase === 'Deleting' && prevStep?.state === 'Failed';
        outcomes.set(step.name, retrying && prevStep ? shownOutcome(prevStep) : run.outcome);
        if (run.pending) {
          pendingStep = step.name;
          break; // reverse order: the next step waits until this one is gone
        }
      }
      if (!pendingStep) this.passes.delete(key);
    } else if (workspaceId && others.length > 0) {
      // Another ConfigMap claims the same workspace: hand it over instead of destroying it.
      log.info({ workspace: workspaceId, to: others[0] }, 'handing workspace over to the next claimant');
      for (const other of others) this.d.enqueue?.(other);
    }
    const report = teardownReport({ phase, why, workspaceId, outcomes, pendingStep, found: prev, now });
    return this.finish(cm, prev, report, log, now);
  }

  /**
   * The one exit of a reconcile: writes the status the report describes (once, skipped when unchanged),
   * records its Event, and tells the work queue what next: `waiting` while a lane still runs a step, a
   * RetryableReconcileError to back off and retry, nothing for a terminal state.
   */
  private async finish(
    cm: KubeObject,
    written: WorkspaceStatus | undefined,
    report: ReconcileReport,
    log: Logger,
    now: string,
  ): Promise<ReconcileResult> {
    await this.writeStatus(cm, written, summarizeStatus(report, written, now), report.finalizer);
    if (report.event) await this.d.events.emit(cm, report.event.type, report.event.reason, report.event.message);
    if (report.handledRerun !== undefined) log.info({ token: report.handledRerun }, 'rerun request handled');
    switch (report.requeue.kind) {
      case 'retry':
        throw new RetryableReconcileError(report.requeue.message);
      case 'waiting':
        return { waiting: true };
      case 'terminal':
        return { terminalError: report.requeue.message };
      case 'done':
        return {};
    }
  }

  /**
   * Tears down a workspace whose ConfigMap is gone without our finalizer having run (removed by force
   * while no controller was up). The caller has confirmed the ConfigMap no longer exists.
   */
  async teardownOrphan(workspaceId: string, source: string): Promise<Map<StepName, StepOutcome>> {
    const log = this.d.log.child({ controller: this.d.cfg.controllerName, workspace: workspaceId, orphanOf: source });
    const base = this.baseContext(workspaceId, source, false, true, log);
    const outcomes = new Map<StepName, StepOutcome>();
    for (const step of [...this.d.steps].reverse()) {
      outcomes.set(step.name, await this.runStep(step.name, () => step.teardown(base), log, true));
    }
    return outcomes;
  }

  private async runStep(
    name: StepName,
    fn: () => Promise<StepOutcome>,
    log: Logger,
    teardown = false,
  ): Promise<StepOutcome> {
    let outcome: StepOutcome;
    try {
      outcome = await fn();
    } catch (err) {
      outcome = errorOutcome(err);
      if (!(err instanceof StepError)) log.error({ err, step: name }, 'step failed unexpectedly');
    }
    if (outcome.state === 'Failed' || outcome.state === 'Conflict') {
      const cls = outcome.state === 'Conflict' ? 'conflict' : outcome.retryable === false ? 'terminal' : 'retryable';
      this.d.metrics?.stepFailures.inc({ step: name, class: cls });
      log.warn({ step: name, teardown, reason: outcome.reason, message: outcome.message }, 'step did not complete');
    } else if (outcome.writes > 0) {
      log.info({ step: name, teardown, writes: outcome.writes, reason: outcome.reason }, 'step applied changes');
    } else {
      log.debug({ step: name, teardown, reason: outcome.reason }, 'step up to date');
    }
    return outcome;
  }

  private baseContext(
    workspaceId: string,
    source: string,
    dryRun: boolean,
    force: boolean,
    log: Logger,
  ): StepBaseContext {
    return {
      cfg: this.d.cfg,
      log,
      workspaceId,
      names: workspaceNames(this.d.cfg, workspaceId),
      dryRun,
      force,
      changes: [],
      outputs: {},
      source,
    };
  }

  /**
   * Server-side apply of exactly the fields we own on the ConfigMap: the status annotation and, while we
   * hold it, the finalizer (dropping it from the applied config removes it). Skipped when unchanged, so
   * a no-op reconcile writes nothing and our own write does not re-trigger us (the watch filter ignores it).
   */
  private async writeStatus(
    cm: KubeObject,
    prev: WorkspaceStatus | undefined,
    status: WorkspaceStatus,
    finalizer: boolean,
    forceWrite = false,
  ): Promise<KubeObject | undefined> {
    const hasFinalizer = cm.metadata.finalizers?.includes(FINALIZER) ?? false;
    if (!forceWrite && sameStatus(prev, status) && hasFinalizer === finalizer) return undefined;
    const body: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: cm.metadata.name,
        namespace: cm.metadata.namespace as string,
        annotations: { [STATUS_ANNOTATION]: serializeStatus(status) },
      },
    };
    if (finalizer) body.metadata.finalizers = [FINALIZER];
    try {
      return await this.d.kube.apply(body);
    } catch (err) {
      this.d.log.warn({ err, configMap: `${cm.metadata.namespace}/${cm.metadata.name}` }, 'could not write status');
      throw new RetryableReconcileError(`could not write status: ${(err as Error).message}`);
    }
  }
}

/** The ConfigMap's work-queue key, `namespace/name`: also the workspace's `source`. */
function sourceKey(cm: KubeObject): string {
  return `${cm.metadata.namespace}/${cm.metadata.name}`;
}

/** What a pending external step shows in status: Progressing while it runs, Waiting while queued. */
function pendingOutcome(name: StepName, answer: Exclude<LaneAnswer, { kind: 'settled' }>): StepOutcome {
  const system = SYSTEM_WORDS[name];
  return answer.kind === 'running'
    ? {
        state: 'Progressing',
        reason: `${REASON_PREFIX[name]}InProgress`,
        message: `waiting for ${system} to answer`,
        writes: 0,
      }
    : {
        state: 'Waiting',
        reason: `${REASON_PREFIX[name]}Busy`,
        message: `queued: every ${system} slot is taken by other workspaces`,
        writes: 0,
      };
}

/** The recorded status of a step, as an outcome that writes the same status again. */
function shownOutcome(s: StepStatus): StepOutcome {
  const o: StepOutcome = { state: s.state, reason: s.reason, message: s.message, writes: 0 };
  if (s.details) o.result = stepResultOf(s.details);
  return o;
}
