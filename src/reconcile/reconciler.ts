// The workspace reconciler: load spec → compute desired state → diff → apply per step → status.
// Level-triggered and idempotent: it reads everything it needs each time and can be killed at any point.
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
import {
  clipMessage,
  type Phase,
  parseStatus,
  type StepStatus,
  sameStatus,
  serializeStatus,
  setCondition,
  stepConditions,
  stepStatus,
  type WorkspaceStatus,
} from './status.js';
import {
  errorOutcome,
  type PlannedChange,
  type StepBaseContext,
  StepError,
  type StepName,
  type StepOutcome,
  type WorkspaceStep,
} from './types.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
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
}

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
  constructor(private readonly d: ReconcilerDeps) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split('/') as [string, string];
    const workspace = this.d.claims.workspaceOf(key);
    const log = reconcileLogger(this.d.log, {
      controller: this.d.cfg.controllerName,
      namespace,
      name,
      ...(workspace ? { workspace } : {}),
    });
    const cm = this.d.sources.get(key);
    if (!cm) {
      // Gone from the watch: deleted (finalizer already handled) or no longer labelled. Re-read, so a
      // label removal on an object that still carries our finalizer is cleaned up instead of stuck.
      const live = await this.d.kube.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace, name });
      if (live?.metadata.finalizers?.includes(FINALIZER) && !matchesSelector(live, this.d.cfg.configMapSelector)) {
        log.info('workspace ConfigMap lost its label; tearing down what it provisioned');
        return this.finalize(live, log, 'Disabled', 'ConfigMap no longer labelled as a workspace');
      }
      return {};
    }
    if (cm.metadata.deletionTimestamp) {
      if (!cm.metadata.finalizers?.includes(FINALIZER)) return {};
      return this.finalize(cm, log, 'Deleting', 'ConfigMap deleted');
    }

    const prev = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION]);
    const requested = cm.metadata.annotations?.[RECONCILE_REQUEST_ANNOTATION];
    const force = requested !== undefined && requested !== prev?.lastHandledReconcileAt;
    const now = new Date().toISOString();
    let parsed: ParseResult = parseWorkspace(workspaceDocument(cm, this.d.cfg.configMapKey), this.d.cfg);
    if (parsed.ok && prev?.owner && prev.workspaceId && parsed.spec.workspaceId !== prev.workspaceId) {
      // A provisioned workspace keeps its id: a new id would leave the old workspace provisioned with nobody
      // managing it (and free for another ConfigMap to claim). Moving is delete + create, on purpose.
      parsed = {
        ok: false,
        errors: [
          {
            field: 'workspace_id',
            message: `cannot change from "${prev.workspaceId}" to "${parsed.spec.workspaceId}" once provisioned; delete this ConfigMap to remove workspace ${prev.workspaceId}, then create one for ${parsed.spec.workspaceId}`,
          },
        ],
      };
    }

    if (!parsed.ok) {
      // Never delete anything because of a bad document: keep the last good state and report.
      const message = `invalid ${this.d.cfg.configMapKey}: ${formatFieldErrors(parsed.errors)}`;
      log.warn({ errors: parsed.errors.slice(0, 10) }, 'invalid workspace document');
      const status: WorkspaceStatus = {
        ...(prev ?? { conditions: [], steps: {} }),
        phase: 'Invalid',
        invalidFields: parsed.errors.slice(0, 20),
        lastError: clipMessage(message),
        conditions: [
          setCondition(prev?.conditions, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message }, now),
          ...(prev?.conditions ?? []).filter((c) => c.type !== 'Ready'),
        ],
      };
      delete status.specHash;
      if (requested !== undefined) status.lastHandledReconcileAt = requested;
      await this.writeStatus(cm, prev, status, cm.metadata.finalizers?.includes(FINALIZER) ?? false);
      this.d.metrics?.stepFailures.inc({ step: 'spec', class: 'invalid' });
      await this.d.events.emit(cm, 'Warning', 'InvalidSpec', message);
      return {};
    }

    const { spec, specHash } = parsed;
    const winner = this.d.claims.claimants(spec.workspaceId)[0];
    if (winner !== undefined && winner !== key) {
      const message = `workspace_id "${spec.workspaceId}" is already claimed by ConfigMap ${winner}`;
      const status: WorkspaceStatus = {
        phase: 'Conflict',
        workspaceId: spec.workspaceId,
        specHash,
        owner: false,
        steps: {},
        lastError: message,
        conditions: [
          setCondition(
            prev?.conditions,
            { type: 'Ready', status: 'False', reason: 'WorkspaceClaimConflict', message },
            now,
          ),
        ],
      };
      if (requested !== undefined) status.lastHandledReconcileAt = requested;
      await this.writeStatus(cm, prev, status, cm.metadata.finalizers?.includes(FINALIZER) ?? false);
      await this.d.events.emit(cm, 'Warning', 'WorkspaceClaimConflict', message);
      return {};
    }

    if (!spec.flyteEnabled) {
      if (prev?.owner || cm.metadata.finalizers?.includes(FINALIZER)) {
        return this.finalize(cm, log, 'Disabled', 'flyte removed from services', spec);
      }
      const status: WorkspaceStatus = {
        phase: 'Disabled',
        workspaceId: spec.workspaceId,
        specHash,
        steps: {},
        conditions: [
          setCondition(
            prev?.conditions,
            { type: 'Ready', status: 'True', reason: 'FlyteNotSelected', message: 'flyte is not among the services' },
            now,
          ),
        ],
      };
      if (requested !== undefined) status.lastHandledReconcileAt = requested;
      await this.writeStatus(cm, prev, status, false);
      return {};
    }

    return this.ensure(cm, spec, specHash, prev, force, requested, log);
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
  ): Promise<ReconcileResult> {
    const source = `${cm.metadata.namespace}/${cm.metadata.name}`;
    const hasFinalizer = cm.metadata.finalizers?.includes(FINALIZER) ?? false;
    const now = new Date().toISOString();
    let prevForWrite = prev;
    let live = cm;
    if (!hasFinalizer || !prev?.owner) {
      // Finalizer and ownership marker before creating anything, so a crash right after creating
      // resources can never leave them without a path to cleanup.
      const provisioning: WorkspaceStatus = {
        ...(prev ?? { conditions: [], steps: {} }),
        phase: 'Provisioning',
        workspaceId: spec.workspaceId,
        owner: true,
        conditions: [
          setCondition(
            prev?.conditions,
            { type: 'Ready', status: 'False', reason: 'Provisioning', message: 'provisioning started' },
            now,
          ),
        ],
      };
      live = (await this.writeStatus(cm, prev, provisioning, true, true)) ?? cm;
      prevForWrite = provisioning;
    }

    const base = this.baseContext(spec.workspaceId, source, false, force, log);
    const specUnchanged = prev?.observedSpecHash === specHash && prev.phase === 'Ready';
    const ctx = { ...base, spec, specHash, specUnchanged, previous: prev };
    const outcomes = new Map<StepName, StepOutcome>();
    for (const step of this.d.steps) {
      const outcome = await this.runStep(step.name, () => step.ensure(ctx), log);
      outcomes.set(step.name, outcome);
      if (outcome.state === 'Conflict') break; // not ours: create nothing further
    }
    // The ServiceAccount annotation must carry the ARN IAM actually returned; redo the Kubernetes
    // step when it differs from the computed one used on the first pass.
    const kubeStep = this.d.steps.find((s) => s.name === 'kubernetes');
    const iamArn = outcomes.get('iam')?.details?.roleArn;
    if (
      kubeStep &&
      iamArn &&
      outcomes.get('kubernetes')?.state === 'Ready' &&
      iamArn !== ctx.outputs.serviceAccountRoleArn
    ) {
      outcomes.set('kubernetes', await this.runStep('kubernetes', () => kubeStep.ensure(ctx), log));
    }

    const steps: Partial<Record<StepName, StepStatus>> = {};
    for (const [name, o] of outcomes) steps[name] = stepStatus(prevForWrite?.steps[name], o, now);
    const failed = [...outcomes.values()].filter((o) => o.state === 'Failed');
    const conflict = [...outcomes.values()].find((o) => o.state === 'Conflict');
    const phase: Phase = conflict ? 'Conflict' : failed.length > 0 ? 'Failed' : 'Ready';
    const firstProblem = conflict ?? failed[0];
    const writes = [...outcomes.values()].reduce((n, o) => n + o.writes, 0);
    const readyMessage = firstProblem
      ? `${[...outcomes.entries()].find(([, o]) => o === firstProblem)?.[0]}: ${firstProblem.message}`
      : 'workspace provisioned';
    const status: WorkspaceStatus = {
      phase,
      workspaceId: spec.workspaceId,
      specHash,
      owner: true,
      conditions: [
        setCondition(
          prevForWrite?.conditions,
          {
            type: 'Ready',
            status: phase === 'Ready' ? 'True' : 'False',
            reason: firstProblem?.reason ?? 'Provisioned',
            message: readyMessage,
          },
          now,
        ),
        ...stepConditions(prevForWrite?.conditions, steps, now),
      ],
      steps,
    };
    const observed = phase === 'Ready' ? specHash : prev?.observedSpecHash;
    if (observed) status.observedSpecHash = observed;
    const details = Object.assign({}, ...[...outcomes.values()].map((o) => o.details ?? {})) as Record<string, string>;
    if (details.namespaces) status.namespaces = details.namespaces.split(',');
    if (details.roleArn) status.roleArn = details.roleArn;
    if (details.projectId) status.flyteProject = details.projectId;
    if (details.consoleUrl) status.consoleUrl = details.consoleUrl;
    if (firstProblem) status.lastError = clipMessage(readyMessage);
    if (requested !== undefined) status.lastHandledReconcileAt = requested;
    await this.writeStatus(live, prevForWrite, status, true);

    if (firstProblem) {
      await this.d.events.emit(cm, 'Warning', firstProblem.reason, readyMessage);
    } else if (writes > 0 || prev?.phase !== 'Ready') {
      await this.d.events.emit(
        cm,
        'Normal',
        specUnchanged ? 'DriftRepaired' : 'Provisioned',
        `workspace ${spec.workspaceId} ready (${writes} change(s))`,
      );
    }
    if (force) log.info({ token: requested }, 'rerun request handled');
    if (failed.some((o) => o.retryable !== false)) {
      throw new RetryableReconcileError(readyMessage);
    }
    return {};
  }

  /** Tears down everything the ConfigMap provisioned, then releases the finalizer. */
  private async finalize(
    cm: KubeObject,
    log: Logger,
    phase: 'Deleting' | 'Disabled',
    why: string,
    spec?: WorkspaceSpec,
  ): Promise<ReconcileResult> {
    const key = `${cm.metadata.namespace}/${cm.metadata.name}`;
    const prev = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION]);
    const workspaceId = spec?.workspaceId ?? prev?.workspaceId;
    const now = new Date().toISOString();
    const others = workspaceId ? this.d.claims.claimants(workspaceId).filter((k) => k !== key) : [];
    const outcomes = new Map<StepName, StepOutcome>();
    if (workspaceId && prev?.owner && others.length === 0) {
      log.info({ workspace: workspaceId, why }, 'tearing down workspace');
      const base = this.baseContext(workspaceId, key, false, true, log);
      for (const step of [...this.d.steps].reverse()) {
        outcomes.set(step.name, await this.runStep(step.name, () => step.teardown(base), log, true));
      }
    } else if (workspaceId && others.length > 0) {
      // Another ConfigMap claims the same workspace: hand it over instead of destroying it.
      log.info({ workspace: workspaceId, to: others[0] }, 'handing workspace over to the next claimant');
      for (const other of others) this.d.enqueue?.(other);
    }
    const failed = [...outcomes.entries()].filter(([, o]) => o.state !== 'Deleted' && o.state !== 'Skipped');
    const steps: Partial<Record<StepName, StepStatus>> = {};
    for (const [name, o] of outcomes) steps[name] = stepStatus(prev?.steps[name], o, now);
    const done = failed.length === 0;
    const message = done ? `${why}: cleaned up` : `${why}: ${failed.map(([n, o]) => `${n}: ${o.message}`).join('; ')}`;
    const status: WorkspaceStatus = {
      phase: done ? phase : 'Deleting',
      steps,
      owner: !done,
      conditions: [
        setCondition(
          prev?.conditions,
          { type: 'Ready', status: 'False', reason: done ? 'TornDown' : 'TearingDown', message },
          now,
        ),
      ],
    };
    if (workspaceId) status.workspaceId = workspaceId;
    if (!done) status.lastError = clipMessage(message);
    await this.writeStatus(cm, prev, status, !done);
    if (!done) {
      await this.d.events.emit(cm, 'Warning', failed[0]?.[1].reason ?? 'TeardownFailed', message);
      throw new RetryableReconcileError(message);
    }
    if (outcomes.size > 0) await this.d.events.emit(cm, 'Normal', 'TornDown', message);
    return {};
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
