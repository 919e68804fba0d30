// A small list-watch reflector in the style of client-go's tools/cache/reflector.go, instead of client-node's
// makeInformer (which stops for good on any non-410 error and can stall silently, see docs/external-systems.md).
//
//   LIST (paginated) → replace the store, emitting ADDED/MODIFIED/DELETED against the previous store, so a
//   relist after a gap synthesises the DELETEs that were missed → WATCH from the list resourceVersion with
//   bookmarks and a random server-side timeout in [300, 600] s.
//
//   watch ended normally (server timeout)   → watch again from the last resourceVersion
//   410 Gone / Expired (HTTP or ERROR event) → relist
//   any other error                          → wait (backoff 800 ms → 30 s, ×2, jitter, reset after 2 min
//                                               without errors) and watch again from the last resourceVersion
//   nothing (no event, no bookmark) for longer than the watch timeout + slack, or `stallSeconds`
//                                            → abort the stream and relist ("stalled")
//
// Objects are kept as the plain JSON the API server sent (no typed-model round trip that drops fields).
// The I/O sits behind ListWatchClient (src/kube's KubeClient in production, a fake in unit tests), and time
// behind a Clock, so tests drive backoff, stalls and resyncs without sleeping.
import type { Logger } from 'pino';
import { type Clock, systemClock, type Timer } from '../kinds/clock.js';
import type { KubeObject } from '../kinds/kubernetes.js';
import type { KubeClient, ListOptions, ListResult, WatchEventType, WatchHandle, WatchOptions } from '../kube/client.js';
import { WatchInactiveError } from '../kube/client.js';
import { isExpired, statusErrorOfEvent } from '../kube/status.js';
import type { Metrics } from '../metrics/metrics.js';

export type { KubeObject, ListOptions, ListResult, WatchEventType, WatchHandle, WatchOptions };

/** What the reflector needs from a Kubernetes client: a paginated LIST and a WATCH stream. */
export type ListWatchClient = Pick<KubeClient, 'list' | 'watch'>;

// ---------------------------------------------------------------------------------------------------------
// Reflector

export type AddHandler = (obj: KubeObject) => void;
export type UpdateHandler = (oldObj: KubeObject, newObj: KubeObject) => void;
export type DeleteHandler = (obj: KubeObject) => void;
export type ResyncHandler = (objs: KubeObject[]) => void;

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** delay·(1 + jitter·rand), capped at maxMs. */
  jitter: number;
  /** The delay starts again from initialMs when the previous backoff was longer ago than this. */
  resetAfterMs: number;
}

/** Why a watch was opened again (the `reason` of flyte_workspace_watch_restarts_total). */
const RESTART_REASONS = ['timeout', 'expired', 'stalled', 'error'] as const;
type RestartReason = (typeof RESTART_REASONS)[number];

/** client-go reflector defaults (tools/cache/reflector.go). */
export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 800,
  maxMs: 30_000,
  factor: 2,
  jitter: 1,
  resetAfterMs: 120_000,
};

export interface ReflectorOptions {
  client: ListWatchClient;
  /** Collection path, e.g. /api/v1/namespaces/ns/configmaps or /apis/rbac.authorization.k8s.io/v1/rolebindings. */
  path: string;
  /** Bounded metrics label (plural resource name, e.g. "configmaps"); defaults to the path's last segment. */
  resource?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** List page size. Default 500. */
  pageSize?: number;
  /** Server-side watch timeout is random in [min, max] seconds. Defaults 300 / 600 (client-go). */
  minWatchTimeoutSeconds?: number;
  maxWatchTimeoutSeconds?: number;
  /** Silence allowed beyond the watch timeout before the stream counts as stalled. Default 30. */
  stallSlackSeconds?: number;
  /**
   * Absolute silence limit; overrides timeout + slack when set. Keep it above the watch timeout in
   * production: the apiserver sends no periodic bookmarks on a quiet resource.
   */
  stallSeconds?: number;
  /** Calls the resync handlers with every stored object this often. 0/undefined = never. */
  resyncPeriodMs?: number;
  /**
   * Applied to every listed or watched object before it is stored or handed to handlers (client-go's
   * TransformFunc), e.g. stripManagedFields. May modify the object in place: it is fresh from the wire.
   */
  transform?: (obj: KubeObject) => KubeObject;
  backoff?: Partial<BackoffOptions>;
  metrics?: Metrics;
  log?: Logger;
  /** Times backoff, stalls, resyncs and the "very short watch" check. Default: the system clock. */
  clock?: Clock;
}

type Outcome =
  | { reason: 'timeout'; events: number; durationMs: number }
  | { reason: 'expired'; detail: string }
  | { reason: 'stalled'; silentMs: number }
  | { reason: 'error'; err: unknown }
  | { reason: 'stopped' };

/**
 * Drops metadata.managedFields: server-side apply bookkeeping that nothing here reads, often the larger
 * part of a small object, kept in memory for every cached object otherwise (controller-runtime strips it
 * the same way with cache.TransformStripManagedFields).
 */
export function stripManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata || !('managedFields' in obj.metadata)) return obj;
  // A copy without the field rather than `delete`, which turns metadata into a dictionary-mode object
  // that costs more memory than the field it removed.
  const { managedFields: _, ...metadata } = obj.metadata;
  obj.metadata = metadata as KubeObject['metadata'];
  return obj;
}

/**
 * stripManagedFields, and status too: for objects the controller manages, status is the server's (quota
 * usage, namespace phase), never compared, and for a ResourceQuota larger than the spec.
 */
export function stripManagedFieldsAndStatus(obj: KubeObject): KubeObject {
  const out = stripManagedFields(obj) as KubeObject & { status?: unknown };
  if (!('status' in out)) return out;
  const { status: _, ...rest } = out;
  return rest as KubeObject;
}

/** Store key of an object: `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKey). */
export function objectKey(obj: { metadata: { name: string; namespace?: string } }): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export class Reflector {
  readonly path: string;
  readonly resource: string;
  private store = new Map<string, KubeObject>();
  private rv = '';
  private synced = false;
  private healthy = false;
  private watching = false;
  private lastActivity = 0;
  private currentStallMs = 0;
  private stopped = false;
  private loopDone: Promise<void> | undefined;
  private syncedPromise: Promise<void> | undefined;
  private resolveSynced: (() => void) | undefined;
  private rejectSynced: ((err: Error) => void) | undefined;
  private cancelCurrent: (() => void) | undefined;
  private resyncTimer: Timer | undefined;
  private backoffMs = 0;
  private lastBackoffAt = 0;
  private readonly backoff: BackoffOptions;
  private readonly adds: AddHandler[] = [];
  private readonly updates: UpdateHandler[] = [];
  private readonly deletes: DeleteHandler[] = [];
  private readonly resyncs: ResyncHandler[] = [];
  private readonly log: Logger | undefined;
  private readonly clock: Clock;

  constructor(private readonly opts: ReflectorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.path = opts.path;
    this.resource = opts.resource ?? opts.path.split('/').filter(Boolean).at(-1) ?? opts.path;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    // Every reason at 0 from the start: rate() and increase() only see a restart on a series seen before it.
    for (const reason of RESTART_REASONS) opts.metrics?.watchRestarts.inc({ resource: this.resource, reason }, 0);
    this.log = opts.log?.child({
      reflector: this.path,
      ...(opts.labelSelector ? { selector: opts.labelSelector } : {}),
    });
  }

  // --- handlers (register before start(); handler errors are logged and swallowed) ---

  onAdd(fn: AddHandler): this {
    this.adds.push(fn);
    return this;
  }
  onUpdate(fn: UpdateHandler): this {
    this.updates.push(fn);
    return this;
  }
  onDelete(fn: DeleteHandler): this {
    this.deletes.push(fn);
    return this;
  }
  /** Called every resyncPeriodMs with all stored objects (re-enqueue everything, level-triggered). */
  onResync(fn: ResyncHandler): this {
    this.resyncs.push(fn);
    return this;
  }

  // --- lifecycle ---

  /** Starts list-watching; resolves once the first list has filled the store (HasSynced). Idempotent. */
  start(): Promise<void> {
    if (this.syncedPromise) return this.syncedPromise;
    this.syncedPromise = new Promise<void>((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    this.syncedPromise.catch(() => {}); // rejection only matters to whoever awaits start()
    if (this.stopped) {
      this.rejectSynced?.(new Error(`reflector ${this.path} stopped before it synced`));
      return this.syncedPromise;
    }
    this.loopDone = this.loop();
    this.scheduleResync();
    return this.syncedPromise;
  }

  /** Stops the watch and all timers; resolves when the loop has exited. The store stays readable. */
  async stop(): Promise<void> {
    if (this.stopped) return this.loopDone;
    this.stopped = true;
    this.healthy = false;
    this.resyncTimer?.cancel();
    this.cancelCurrent?.();
    if (!this.synced) this.rejectSynced?.(new Error(`reflector ${this.path} stopped before it synced`));
    await this.loopDone;
  }

  /** The first list completed (the store reflects the server at least once). */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Synced, the last watch attempt did not fail, and something arrived within the stall limit. */
  isLive(): boolean {
    if (!this.synced || !this.healthy || this.stopped) return false;
    return !this.watching || this.clock.now() - this.lastActivity <= this.currentStallMs;
  }

  /** resourceVersion the next watch would start from. */
  lastSyncResourceVersion(): string {
    return this.rv;
  }

  // --- store ---

  list(): KubeObject[] {
    return [...this.store.values()];
  }

  get(key: string): KubeObject | undefined {
    return this.store.get(key);
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  size(): number {
    return this.store.size;
  }

  /** Calls the resync handlers now with all stored objects (what the periodic timer does). */
  resync(): void {
    if (!this.synced || this.stopped) return;
    const all = this.list();
    for (const fn of this.resyncs) this.safely('resync', () => fn(all));
  }

  /** Every resyncPeriodMs, from start() to stop() (a fixed period, like setInterval). */
  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period <= 0 || this.stopped) return;
    this.resyncTimer = this.clock.setTimer(() => {
      this.resync();
      this.scheduleResync();
    }, period);
    this.resyncTimer.unref();
  }

  // --- the loop ---

  private async loop(): Promise<void> {
    let needList = true;
    let expiredInARow = 0;
    while (!this.stopped) {
      if (needList) {
        try {
          await this.relist();
          needList = false;
        } catch (err) {
          if (this.stopped) break;
          this.healthy = false;
          this.restarted('error');
          const delay = this.nextBackoff();
          this.log?.warn({ err, delayMs: Math.round(delay) }, 'list failed; retrying');
          await this.sleep(delay);
          continue;
        }
      }
      if (this.stopped) break;
      const outcome = await this.watchOnce();
      if (this.stopped || outcome.reason === 'stopped') break;
      this.restarted(outcome.reason);
      if (outcome.reason !== 'expired') expiredInARow = 0;
      switch (outcome.reason) {
        case 'timeout':
          // A stream that ends at once without any event is a broken server/proxy, not a timeout:
          // treat like an error so we don't spin (client-go: "very short watch").
          if (outcome.events === 0 && outcome.durationMs < 1000) {
            this.healthy = false;
            const delay = this.nextBackoff();
            this.log?.warn({ delayMs: Math.round(delay) }, 'watch closed immediately without events; backing off');
            await this.sleep(delay);
          } else {
            this.log?.debug({ events: outcome.events, rv: this.rv }, 'watch ended; watching again');
          }
          break;
        case 'expired':
          needList = true;
          expiredInARow++;
          this.log?.info({ detail: outcome.detail, rv: this.rv }, 'resourceVersion expired; relisting');
          if (expiredInARow > 1) await this.sleep(this.nextBackoff());
          break;
        case 'stalled':
          needList = true;
          this.healthy = false;
          this.log?.warn({ silentMs: outcome.silentMs }, 'watch stalled; relisting');
          break;
        case 'error': {
          this.healthy = false;
          const delay = this.nextBackoff();
          this.log?.warn({ err: outcome.err, delayMs: Math.round(delay), rv: this.rv }, 'watch failed; retrying');
          await this.sleep(delay);
          break;
        }
      }
    }
    this.watching = false;
  }

  private async relist(): Promise<void> {
    const ac = new AbortController();
    this.cancelCurrent = () => ac.abort();
    let res: ListResult;
    try {
      res = await this.opts.client.list(this.path, {
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        limit: this.opts.pageSize ?? 500,
        signal: ac.signal,
      });
    } finally {
      this.cancelCurrent = undefined;
    }
    if (this.stopped) return;
    const previous = this.store;
    const next = new Map<string, KubeObject>();
    const transform = this.opts.transform;
    for (const item of res.items) next.set(objectKey(item), transform ? transform(item) : item);
    this.store = next;
    this.rv = res.resourceVersion;
    const wasSynced = this.synced;
    this.synced = true;
    this.log?.debug({ items: next.size, rv: this.rv, relist: wasSynced }, 'listed');
    for (const [key, obj] of next) {
      const old = previous.get(key);
      if (!old) this.emitAdd(obj);
      else this.emitChange(old, obj);
    }
    for (const [key, old] of previous) if (!next.has(key)) this.emitDelete(old);
    if (!wasSynced) this.resolveSynced?.();
  }

  private watchOnce(): Promise<Outcome> {
    const min = this.opts.minWatchTimeoutSeconds ?? 300;
    const max = Math.max(min, this.opts.maxWatchTimeoutSeconds ?? 600);
    const timeoutSeconds = Math.floor(min + Math.random() * (max - min + 1));
    const stallMs = (this.opts.stallSeconds ?? timeoutSeconds + (this.opts.stallSlackSeconds ?? 30)) * 1000;
    const started = this.clock.now();
    this.currentStallMs = stallMs;
    this.lastActivity = started;
    this.watching = true;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let events = 0;
      let handle: WatchHandle | undefined;
      let watchdog: Timer | undefined;
      const finish = (o: Outcome) => {
        if (settled) return;
        settled = true;
        this.watching = false;
        if (o.reason !== 'timeout' && o.reason !== 'stopped') this.healthy = false;
        watchdog?.cancel();
        this.cancelCurrent = undefined;
        handle?.abort();
        resolve(o);
      };
      const arm = (ms: number) => {
        watchdog = this.clock.setTimer(() => {
          const silent = this.clock.now() - this.lastActivity;
          if (silent >= stallMs) finish({ reason: 'stalled', silentMs: silent });
          else arm(stallMs - silent);
        }, ms);
        watchdog.unref();
      };
      arm(stallMs);
      this.cancelCurrent = () => finish({ reason: 'stopped' });
      const onEvent = (type: WatchEventType, obj: KubeObject) => {
        if (settled) return;
        events++;
        this.sawActivity();
        if (type === 'ERROR') {
          const err = statusErrorOfEvent(obj as unknown as Parameters<typeof statusErrorOfEvent>[0], this.path);
          finish(isExpired(err) ? { reason: 'expired', detail: err.message } : { reason: 'error', err });
          return;
        }
        this.apply(type, obj);
      };
      const onDone = (err?: unknown) => {
        if (settled) return;
        if (err === undefined || err === null) {
          finish({ reason: 'timeout', events, durationMs: this.clock.now() - started });
        } else if (isExpired(err)) {
          finish({ reason: 'expired', detail: errMessage(err) });
        } else if (err instanceof WatchInactiveError) {
          finish({ reason: 'stalled', silentMs: this.clock.now() - this.lastActivity });
        } else {
          finish({ reason: 'error', err });
        }
      };
      const onOpen = () => {
        if (settled) return;
        // The apiserver sends no bookmarks on a quiet resource (observed: none within 75 s, nor before the
        // server timeout), so a (re)opened stream also counts as a sign of life; otherwise
        // seconds_since_last_watch_event would grow forever on a healthy but idle watch.
        this.sawActivity();
      };
      this.log?.debug({ rv: this.rv, timeoutSeconds }, 'watching');
      try {
        handle = this.opts.client.watch(
          this.path,
          {
            resourceVersion: this.rv,
            labelSelector: this.opts.labelSelector,
            fieldSelector: this.opts.fieldSelector,
            allowWatchBookmarks: true,
            timeoutSeconds,
          },
          onEvent,
          onDone,
          onOpen,
        );
      } catch (err) {
        finish({ reason: 'error', err });
      }
      if (settled) handle?.abort();
    });
  }

  /** An event, a bookmark or an opened stream: the watch is alive. */
  private sawActivity(): void {
    this.lastActivity = this.clock.now();
    this.healthy = true;
    // The gauge is a Unix time (wall clock); the stall watchdog uses the monotonic clock above.
    this.opts.metrics?.lastWatchEvent.set({ resource: this.resource }, Date.now() / 1000);
  }

  private apply(type: WatchEventType, obj: KubeObject): void {
    const rv = obj?.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.rv = rv;
      return;
    }
    if (!obj?.metadata?.name) {
      this.log?.warn({ type }, 'watch event without object metadata; ignored');
      return;
    }
    if (this.opts.transform) obj = this.opts.transform(obj);
    const key = objectKey(obj);
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        const old = this.store.get(key);
        this.store.set(key, obj);
        if (rv) this.rv = rv;
        if (old) this.emitChange(old, obj);
        else this.emitAdd(obj);
        break;
      }
      case 'DELETED': {
        const old = this.store.get(key);
        this.store.delete(key);
        if (rv) this.rv = rv;
        if (old) this.emitDelete(obj);
        break;
      }
      default:
        this.log?.warn({ type }, 'unknown watch event type; ignored');
    }
  }

  private emitAdd(obj: KubeObject): void {
    for (const fn of this.adds) this.safely('add', () => fn(obj));
  }

  /** Same key: an update if the object changed, or a delete + add if it was re-created (new uid). */
  private emitChange(old: KubeObject, obj: KubeObject): void {
    const oldUid = old.metadata.uid;
    const newUid = obj.metadata.uid;
    if (oldUid && newUid && oldUid !== newUid) {
      this.emitDelete(old);
      this.emitAdd(obj);
      return;
    }
    if (old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    for (const fn of this.updates) this.safely('update', () => fn(old, obj));
  }

  private emitDelete(obj: KubeObject): void {
    for (const fn of this.deletes) this.safely('delete', () => fn(obj));
  }

  private safely(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log?.error({ err, handler: what }, 'reflector event handler threw');
    }
  }

  private restarted(reason: RestartReason): void {
    this.opts.metrics?.watchRestarts.inc({ resource: this.resource, reason });
  }

  private nextBackoff(): number {
    const b = this.backoff;
    const now = this.clock.now();
    if (this.backoffMs === 0 || now - this.lastBackoffAt > b.resetAfterMs) this.backoffMs = b.initialMs;
    else this.backoffMs = Math.min(this.backoffMs * b.factor, b.maxMs);
    this.lastBackoffAt = now;
    return Math.min(this.backoffMs * (1 + b.jitter * Math.random()), b.maxMs);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = this.clock.setTimer(done, ms);
      t.unref();
      function done() {
        t.cancel();
        resolve();
      }
      this.cancelCurrent = () => {
        this.cancelCurrent = undefined;
        done();
      };
    });
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
