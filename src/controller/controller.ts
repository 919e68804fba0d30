// Composition root of one controller instance: sources (watches) → work queue → reconciler.
// Mirrors controller-runtime's split: watch sources map events to keys, the queue dedupes and rate-limits,
// the reconciler is level-triggered and reads from the watch caches.
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CallStats } from '../adapters/call-stats.js';
import { HttpKubeApi, type KindName, type KubeObject, MANAGED_KINDS } from '../adapters/kubernetes.js';
import { type ControllerConfig, STATUS_ANNOTATION, WORKSPACE_ID_LABEL } from '../config/config.js';
import type { Metrics } from '../metrics/metrics.js';
import { Priority, WorkQueue } from '../queue/workqueue.js';
import { ClaimIndex } from '../reconcile/claims.js';
import { KubeEventRecorder } from '../reconcile/events.js';
import { SystemLane } from '../reconcile/lanes.js';
import { RetryableReconcileError, WorkspaceReconciler } from '../reconcile/reconciler.js';
import { parseStatus } from '../reconcile/status.js';
import type { StepName, StepOutcome } from '../reconcile/types.js';
import { parseWorkspace } from '../spec/workspace.js';
import {
  type ConfigMapSources,
  configMapEventFilter,
  configMapSource,
  type ManagedSources,
  managedObjectChanged,
  managedObjectSources,
  type SourceEventType,
  type WatchTuning,
} from '../watch/sources.js';
import { ManagedObjectIndex } from './managed-cache.js';
import { OrphanSweeper } from './orphans.js';
import { OwnWrites } from './own-writes.js';
import { buildSteps, defaultClients, type ExternalClients, externalOrphanSweep } from './steps.js';

export interface ControllerOptions {
  cfg: ControllerConfig;
  kc: KubeConfig;
  log: Logger;
  metrics: Metrics;
  /** Pre-built IAM / FlyteAdmin clients (tests, local run); built from cfg otherwise. */
  clients?: Partial<ExternalClients>;
  identity?: string;
  /** Watch timing overrides (tests use short server timeouts). */
  watch?: WatchTuning;
  /**
   * Asked before every write to Kubernetes, IAM and FlyteAdmin (by the clients built here); a write it
   * refuses is not sent. The daemon passes "still the leader".
   */
  mayWrite?: () => boolean;
}

/** A watch event for a workspace key; `deleted` for DELETED events, which are matched to our deletes. */
interface HeldEvent {
  kind: string;
  obj: KubeObject;
  matters: boolean;
  deleted?: boolean;
}

export class WorkspaceController {
  readonly kube: HttpKubeApi;
  readonly reconciler: WorkspaceReconciler;
  readonly clients: ExternalClients;
  private readonly queue: WorkQueue;
  private readonly claims: ClaimIndex;
  private readonly index = new ManagedObjectIndex(MANAGED_KINDS);
  private readonly ownWrites = new OwnWrites(new Set<string>([...MANAGED_KINDS, 'ConfigMap']));
  /** Keys being reconciled → watch events for them held until the reconcile ends (see notify). */
  private readonly inFlight = new Map<string, HeldEvent[]>();
  private sources?: ConfigMapSources;
  private managed?: ManagedSources;
  private sweeper?: OrphanSweeper;
  private readonly phases = new Map<string, string>();
  private readonly lanes: Partial<Record<StepName, SystemLane>> = {};
  /** Set by stop(): only keys with a pass under way are reconciled (see stop). */
  private draining = false;
  private readonly notStartedWhileDraining = new Set<string>();
  private stopped = false;
  /** True until every cache has listed once (see eventPriority). */
  private replayingInitialList = true;

  private constructor(private readonly o: ControllerOptions) {
    const { cfg, kc, log, metrics } = o;
    this.kube = new HttpKubeApi(kc, {
      fieldManager: cfg.fieldManager,
      stats: new CallStats('kubernetes', metrics, o.mayWrite),
      onWritten: (obj) => this.ownWrites.record(obj),
      onDeleted: (ref, uid) => this.ownWrites.recordDeleted(ref.kind, ref, uid),
    });
    const lookup = { get: (key: string) => this.sources?.get(key) };
    this.claims = new ClaimIndex(lookup, cfg.configMapKey, (raw) => {
      const parsed = parseWorkspace(raw, cfg);
      return parsed.ok ? parsed.spec.workspaceId : undefined;
    });
    this.clients = buildClientsOnce(cfg, log, metrics, o.clients, o.mayWrite);
    const steps = buildSteps(cfg, {
      kube: this.kube,
      cache: this.index,
      clients: this.clients,
      sourceExists: (source) => this.sources?.get(source) !== undefined,
      onDrift: (kind) => metrics.driftRepairs.inc({ kind }),
      workspaceCount: () => this.claims.workspaceCount(),
      onDriftCheckInterval: (system, seconds) => metrics.driftCheckInterval.set({ system }, seconds),
    });
    const identity = o.identity ?? `${hostname()}_${process.pid}`;
    // One bulkhead per external system, as wide as that system's own call limit: a sick system fills its
    // lane, never the workers that run every workspace's Kubernetes step.
    for (const step of steps) {
      if (step.name === 'kubernetes') continue;
      const system = step.name;
      const capacity = system === 'iam' ? cfg.aws.maxConcurrentCalls : cfg.flyte.maxConcurrentCalls;
      const onSettled = (key: string, token: string, outcome: StepOutcome) => {
        const matters = this.reconciler.laneSettled(key, token, system, outcome);
        if (matters) this.queue.add(key);
        return matters;
      };
      this.lanes[system] = new SystemLane({ system, capacity, onSettled, metrics });
    }
    this.reconciler = new WorkspaceReconciler({
      cfg,
      kube: this.kube,
      steps,
      sources: lookup,
      claims: this.claims,
      events: new KubeEventRecorder(this.kube, cfg.fieldManager, identity, log),
      metrics,
      log,
      enqueue: (key) => this.queue.add(key),
      lanes: this.lanes,
    });
    this.queue = new WorkQueue({
      name: cfg.controllerName,
      concurrency: cfg.reconcile.concurrency,
      baseDelayMs: cfg.reconcile.baseBackoffMs,
      maxDelayMs: cfg.reconcile.maxBackoffMs,
      metrics,
      process: (key) => this.process(key),
    });
    metrics.maxConcurrentReconciles.set({ controller: cfg.controllerName }, cfg.reconcile.concurrency);
  }

  /** Starts watches and workers; resolves once every cache has listed once. */
  static async start(o: ControllerOptions): Promise<WorkspaceController> {
    const c = new WorkspaceController(o);
    await c.startWatches();
    return c;
  }

  private async startWatches(): Promise<void> {
    const { cfg, kc, log, metrics, watch } = this.o;
    // Workers wait until every cache has listed once (controller-runtime's WaitForCacheSync): a
    // reconcile must never judge "missing" from a cache that is still filling.
    this.queue.pause();
    this.managed = managedObjectSources({
      kc,
      cfg,
      log,
      metrics,
      watch,
      kinds: MANAGED_KINDS,
      onEvent: (kind, type, obj, old) => this.onManagedEvent(kind, type, obj, old),
      onSynced: (kind) => this.index.markSynced(kind),
    });
    this.sources = configMapSource({
      kc,
      cfg,
      log,
      metrics,
      watch,
      onEvent: (type, obj, old) => this.onSourceEvent(type, obj, old),
      // Every event reaches onSourceEvent, which filters: an ignored event still consumes an echo.
      predicate: () => true,
      onResync: (objs) => {
        for (const obj of objs) this.queue.add(keyOf(obj), Priority.Low);
      },
    });
    await Promise.all([this.managed.start(), this.sources.start()]);
    this.replayingInitialList = false;
    this.queue.resume();
    this.sweeper = new OrphanSweeper({
      cfg,
      kube: this.kube,
      log,
      metrics,
      reconciler: this.reconciler,
      index: this.index,
      claims: this.claims,
      sourceExists: async (source) => {
        const [namespace, name] = source.split('/') as [string, string];
        return (await this.kube.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace, name })) !== undefined;
      },
      clients: this.clients,
    });
    this.sweeper.start();
  }

  private async process(key: string): Promise<{ requeueAfterMs?: number; waiting?: boolean } | undefined> {
    if (this.draining && !this.reconciler.hasPass(key)) {
      this.notStartedWhileDraining.add(key);
      return undefined;
    }
    const start = performance.now();
    this.inFlight.set(key, []);
    const { controllerName } = this.o.cfg;
    try {
      const result = await this.reconciler.reconcile(key);
      if (result.terminalError !== undefined) {
        // As controller-runtime counts a TerminalError: an error, and a terminal one, but not retried.
        this.o.metrics.reconcileTotal.inc({ controller: controllerName, result: 'error' });
        this.o.metrics.reconcileErrors.inc({ controller: controllerName });
        this.o.metrics.terminalReconcileErrors.inc({ controller: controllerName });
      } else {
        this.o.metrics.reconcileTotal.inc({
          controller: controllerName,
          result: result.requeueAfterMs ? 'requeue_after' : 'success',
        });
      }
      this.trackPhase(key);
      return result;
    } catch (err) {
      this.o.metrics.reconcileTotal.inc({ controller: controllerName, result: 'error' });
      this.o.metrics.reconcileErrors.inc({ controller: controllerName });
      if (!(err instanceof RetryableReconcileError)) {
        this.o.log.error({ err, key }, 'reconcile failed unexpectedly');
      }
      this.trackPhase(key);
      throw err;
    } finally {
      this.releaseHeld(key);
      this.o.metrics.reconcileTime.observe({ controller: controllerName }, (performance.now() - start) / 1000);
    }
  }

  private onSourceEvent(type: SourceEventType, obj: KubeObject, old?: KubeObject): void {
    const key = keyOf(obj);
    if (type === 'MODIFIED' && !configMapEventFilter(type, obj, old)) {
      // Status-only and similar updates: nothing to reconcile, but the event may be the echo of our status
      // write, and it is where the phase metric learns the new phase (the cache read after a reconcile can
      // be older than the status write).
      this.trackPhase(key, obj);
      this.notify(key, { kind: 'ConfigMap', obj, matters: false });
      return;
    }
    const previousId = this.claims.workspaceOf(key);
    if (type === 'DELETED') this.claims.remove(key);
    else this.claims.update(key, obj);
    // A released or changed claim may let another ConfigMap take the workspace over.
    const nowId = this.claims.workspaceOf(key);
    if (previousId && previousId !== nowId) for (const k of this.claims.claimants(previousId)) this.queue.add(k);
    this.trackPhase(key, type === 'DELETED' ? undefined : obj);
    if (type === 'MODIFIED') this.notify(key, { kind: 'ConfigMap', obj, matters: true });
    else {
      if (type === 'DELETED') this.ownWrites.forget('ConfigMap', obj);
      this.queue.add(key, this.eventPriority());
    }
  }

  /**
   * Queues `key` for an event of `obj`, unless the event is the echo of the controller's own write (or
   * does not matter). While `key` is being reconciled its writes' responses may still be on their way, so
   * events are held and judged when the reconcile ends, by which time every write it made is recorded.
   */
  private notify(key: string, event: HeldEvent): void {
    const held = this.inFlight.get(key);
    if (held) held.push(event);
    else if (this.needsReconcile(event)) this.queue.add(key, this.eventPriority());
  }

  /**
   * Events of the initial list are what a (re)start replays, not changes: Low, like resyncs, so changes
   * made meanwhile go first (controller-runtime's priority queue does the same).
   */
  private eventPriority(): number {
    return this.replayingInitialList ? Priority.Low : Priority.Normal;
  }

  private needsReconcile(e: HeldEvent): boolean {
    if (e.deleted) return !this.ownWrites.isDeleteEcho(e.kind, e.obj);
    return !this.ownWrites.isEcho(e.kind, e.obj) && e.matters;
  }

  private releaseHeld(key: string): void {
    const held = this.inFlight.get(key);
    this.inFlight.delete(key);
    // Every event is judged (each one consumes its echo record), even once one of them has queued the key.
    let needed = false;
    for (const e of held ?? []) needed = this.needsReconcile(e) || needed;
    if (needed) this.queue.add(key, this.eventPriority());
  }

  private onManagedEvent(
    kind: KindName,
    type: 'ADDED' | 'MODIFIED' | 'DELETED',
    obj: KubeObject,
    old?: KubeObject,
  ): void {
    if (type === 'DELETED') this.index.remove(kind, obj);
    else this.index.upsert(kind, obj, old);
    const id = obj.metadata.labels?.[WORKSPACE_ID_LABEL];
    const owner = id ? this.claims.claimants(id)[0] : undefined;
    if (!owner) {
      if (type === 'DELETED') this.ownWrites.forget(kind, obj);
      return;
    }
    // The cache is current either way; only a change someone else made needs a reconcile. Our own writes'
    // and deletes' echoes and status-only updates (quota usage) do not.
    const matters = type !== 'MODIFIED' || !old || managedObjectChanged(old, obj);
    this.notify(owner, { kind, obj, matters, deleted: type === 'DELETED' });
  }

  private trackPhase(key: string, obj: KubeObject | undefined = this.sources?.get(key)): void {
    const metric = this.o.metrics.workspacesByPhase;
    const before = this.phases.get(key);
    const phase = obj ? parseStatus(obj.metadata.annotations?.[STATUS_ANNOTATION])?.phase : undefined;
    if (before === phase) return;
    if (before) metric.dec({ phase: before });
    if (phase) {
      metric.inc({ phase });
      this.phases.set(key, phase);
    } else this.phases.delete(key);
  }

  /** Re-enqueues every workspace (what the periodic resync does). */
  async resyncAll(): Promise<void> {
    for (const obj of this.sources?.list() ?? []) this.queue.add(keyOf(obj), Priority.Low);
  }

  /** Resolves when nothing is queued, delayed for less than `withinMs`, or running. For tests and benchmarks. */
  async waitIdle(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quietSince = 0;
    while (Date.now() < deadline) {
      if (this.queue.idle() && this.lanesIdle()) {
        quietSince ||= Date.now();
        if (Date.now() - quietSince > 300) return;
      } else quietSince = 0;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('controller did not become idle');
  }

  /** Jobs per lane (tests, benchmarks). */
  laneCounts(): Record<string, { running: number; waiting: number }> {
    const out: Record<string, { running: number; waiting: number }> = {};
    for (const [name, lane] of Object.entries(this.lanes)) if (lane) out[name] = lane.counts();
    return out;
  }

  /** No external step running or waiting in any lane. */
  lanesIdle(): boolean {
    return Object.values(this.lanes).every((lane) => {
      const n = lane?.counts();
      return !n || n.running + n.waiting === 0;
    });
  }

  ready(): { ok: boolean; failing: string[] } {
    const failing: string[] = [];
    if (!this.sources?.hasSynced()) failing.push('workspace-configmaps-synced');
    if (!this.index.synced()) failing.push('managed-objects-synced');
    if (this.sources && !this.sources.isLive()) failing.push('workspace-configmaps-watch-live');
    if (this.managed && !this.managed.isLive()) failing.push('managed-objects-watch-live');
    return { ok: failing.length === 0, failing };
  }

  async runOrphanSweep(): Promise<void> {
    await this.sweeper?.sweep();
  }

  /** Stops taking keys, lets in-flight reconciles finish up to `drainMs`, stops watches. */
  async stop(drainMs = 10_000): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    this.sweeper?.stop();
    const started = Date.now();
    // Drain: reconciles already under way finish their pass (a step settling in its lane brings the key
    // back for the next step); keys that had not started are left to the next leader.
    this.draining = true;
    while (Date.now() - started < drainMs && !(this.queue.idle(0) && this.lanesIdle())) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const abandoned = await this.queue.shutDown({
      drainTimeoutMs: Math.max(0, drainMs - (Date.now() - started)),
    });
    for (const k of this.notStartedWhileDraining) if (!abandoned.includes(k)) abandoned.push(k);
    // External steps still in their lanes: as long as the drain allows, then abandoned (the next leader
    // redoes them; every step is idempotent).
    const left = Math.max(0, drainMs - (Date.now() - started));
    const lanes = await Promise.all(Object.values(this.lanes).map((lane) => lane?.close(left) ?? []));
    for (const keys of lanes) abandoned.push(...keys.filter((k) => !abandoned.includes(k)));
    await this.sources?.stop();
    await this.managed?.stop();
    return abandoned;
  }
}

function keyOf(obj: KubeObject): string {
  return `${obj.metadata.namespace}/${obj.metadata.name}`;
}

function buildClientsOnce(
  cfg: ControllerConfig,
  log: Logger,
  metrics: Metrics,
  given: Partial<ExternalClients> | undefined,
  mayWrite: (() => boolean) | undefined,
): ExternalClients {
  const clients = defaultClients(cfg, log, metrics, given, mayWrite);
  clients.sweepExternalOrphans ??= externalOrphanSweep(cfg, clients, log, metrics);
  return clients;
}
