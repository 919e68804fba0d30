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
// The I/O sits behind ListWatchClient so tests can drive the reflector with a fake.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { request } from 'undici';
import { trackContact } from '../adapters/apiserver-contact.js';
import { type KubeObject, KubeTransport, statusBodyOf } from '../adapters/kubernetes.js';
import type { Metrics } from '../metrics/metrics.js';

export type { KubeObject };

// ---------------------------------------------------------------------------------------------------------
// I/O interface

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size (`limit`); the client follows `continue` until the list is complete. */
  limit?: number;
  signal?: AbortSignal;
}

export interface ListResult {
  /** Every item, with apiVersion/kind filled in from the list. */
  items: KubeObject[];
  /** metadata.resourceVersion of the list: where the following watch starts. */
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchOptions {
  resourceVersion: string;
  labelSelector?: string;
  fieldSelector?: string;
  allowWatchBookmarks: boolean;
  /** Server-side timeout: the server ends the stream normally after this long. */
  timeoutSeconds: number;
}

export interface WatchHandle {
  /** Ends the stream. onDone is not called for a stream aborted through its handle. */
  abort(): void;
}

export interface ListWatchClient {
  list(path: string, opts: ListOptions): Promise<ListResult>;
  /**
   * Opens a watch stream. `onEvent` gets each event (for ERROR, `obj` is a Status); `onDone` is called once
   * when the stream ends: with no argument for a normal end, with an error otherwise (HTTP status in
   * `code`, see WatchHttpError). `onOpen` is called when the server accepted the watch (HTTP 200).
   */
  watch(
    path: string,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
    onOpen?: () => void,
  ): WatchHandle;
}

/** An HTTP-level failure of a list or watch request. */
export class WatchHttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'WatchHttpError';
  }
}

/** The client gave up on a stream that sent nothing for too long (client-side inactivity timeout). */
export class WatchInactiveError extends Error {
  override name = 'WatchInactiveError';
}

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
  private resyncTimer: NodeJS.Timeout | undefined;
  private backoffMs = 0;
  private lastBackoffAt = 0;
  private readonly backoff: BackoffOptions;
  private readonly adds: AddHandler[] = [];
  private readonly updates: UpdateHandler[] = [];
  private readonly deletes: DeleteHandler[] = [];
  private readonly resyncs: ResyncHandler[] = [];
  private readonly log: Logger | undefined;

  constructor(private readonly opts: ReflectorOptions) {
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
    const period = this.opts.resyncPeriodMs ?? 0;
    if (period > 0) {
      this.resyncTimer = setInterval(() => this.resync(), period);
      this.resyncTimer.unref();
    }
    return this.syncedPromise;
  }

  /** Stops the watch and all timers; resolves when the loop has exited. The store stays readable. */
  async stop(): Promise<void> {
    if (this.stopped) return this.loopDone;
    this.stopped = true;
    this.healthy = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
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
    return !this.watching || Date.now() - this.lastActivity <= this.currentStallMs;
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
    const started = Date.now();
    this.currentStallMs = stallMs;
    this.lastActivity = started;
    this.watching = true;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let events = 0;
      let handle: WatchHandle | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (o: Outcome) => {
        if (settled) return;
        settled = true;
        this.watching = false;
        if (o.reason !== 'timeout' && o.reason !== 'stopped') this.healthy = false;
        clearTimeout(watchdog);
        this.cancelCurrent = undefined;
        handle?.abort();
        resolve(o);
      };
      const arm = (ms: number) => {
        watchdog = setTimeout(() => {
          const silent = Date.now() - this.lastActivity;
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
        this.lastActivity = Date.now();
        this.healthy = true;
        this.opts.metrics?.lastWatchEvent.set({ resource: this.resource }, this.lastActivity / 1000);
        if (type === 'ERROR') {
          const status = obj as unknown as { code?: number; reason?: string; message?: string };
          if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') {
            finish({ reason: 'expired', detail: status.message ?? 'ERROR event 410' });
          } else {
            finish({
              reason: 'error',
              err: new WatchHttpError(status.code ?? 0, status.reason ?? 'Unknown', status.message ?? 'ERROR event'),
            });
          }
          return;
        }
        this.apply(type, obj);
      };
      const onDone = (err?: unknown) => {
        if (settled) return;
        if (err === undefined || err === null) {
          finish({ reason: 'timeout', events, durationMs: Date.now() - started });
        } else if (statusCode(err) === 410) {
          finish({ reason: 'expired', detail: errMessage(err) });
        } else if (err instanceof WatchInactiveError) {
          finish({ reason: 'stalled', silentMs: Date.now() - this.lastActivity });
        } else {
          finish({ reason: 'error', err });
        }
      };
      const onOpen = () => {
        if (settled) return;
        this.lastActivity = Date.now();
        this.healthy = true;
        // The apiserver sends no bookmarks on a quiet resource (observed: none within 75 s, nor before the
        // server timeout), so a (re)opened stream also counts as a sign of life; otherwise
        // seconds_since_last_watch_event would grow forever on a healthy but idle watch.
        this.opts.metrics?.lastWatchEvent.set({ resource: this.resource }, this.lastActivity / 1000);
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
    const now = Date.now();
    if (this.backoffMs === 0 || now - this.lastBackoffAt > b.resetAfterMs) this.backoffMs = b.initialMs;
    else this.backoffMs = Math.min(this.backoffMs * b.factor, b.maxMs);
    this.lastBackoffAt = now;
    return Math.min(this.backoffMs * (1 + b.jitter * Math.random()), b.maxMs);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.cancelCurrent = () => {
        this.cancelCurrent = undefined;
        done();
      };
    });
  }
}

function statusCode(err: unknown): number | undefined {
  if (err instanceof WatchHttpError) return err.code;
  const e = err as { statusCode?: unknown; code?: unknown } | undefined;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  if (typeof e?.code === 'number') return e.code;
  return undefined;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------------------
// ListWatchClient over the Kubernetes transport (the KubeConfig's auth and TLS, one HTTP/1.1 pool): raw JSON
// GET for LIST, a newline-delimited JSON stream for WATCH.

export interface KubeListWatchClientOptions {
  /** Per-page timeout of LIST requests. Default 60 s. */
  listTimeoutMs?: number;
  /**
   * Extra time beyond the server-side timeoutSeconds before the stream's own inactivity timer gives up
   * on a silent stream. It must exceed the reflector's stall slack so the reflector's watchdog decides.
   * Default 90 s.
   */
  inactivitySlackMs?: number;
}

export class KubeListWatchClient implements ListWatchClient {
  private readonly transport: KubeTransport;

  constructor(
    kc: KubeConfig,
    private readonly opts: KubeListWatchClientOptions = {},
  ) {
    this.transport = new KubeTransport(kc);
  }

  async list(path: string, opts: ListOptions): Promise<ListResult> {
    // A `continue` token can expire (410) between pages on a busy cluster: start over with one full list.
    try {
      return await this.listPages(path, opts, opts.limit);
    } catch (err) {
      if (err instanceof WatchHttpError && err.code === 410 && opts.limit) return this.listPages(path, opts, undefined);
      throw err;
    }
  }

  private async listPages(path: string, opts: ListOptions, limit: number | undefined): Promise<ListResult> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const q = new URLSearchParams();
      if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
      if (opts.fieldSelector) q.set('fieldSelector', opts.fieldSelector);
      if (limit) q.set('limit', String(limit));
      if (cont) q.set('continue', cont);
      const page = await this.get<{
        apiVersion?: string;
        kind?: string;
        metadata?: { resourceVersion?: string; continue?: string };
        items?: KubeObject[];
      }>(`${path}?${q}`, opts.signal);
      const apiVersion = page.apiVersion ?? '';
      const kind = page.kind?.replace(/List$/, '') ?? '';
      for (const item of page.items ?? []) {
        items.push({ ...item, apiVersion: item.apiVersion ?? apiVersion, kind: item.kind ?? kind });
      }
      rv = page.metadata?.resourceVersion ?? rv;
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion: rv };
  }

  private async get<T>(pathAndQuery: string, signal: AbortSignal | undefined): Promise<T> {
    const { headers, dispatcher } = await this.transport.context();
    const timeout = AbortSignal.timeout(this.opts.listTimeoutMs ?? 60_000);
    return trackContact(
      this.transport.contact,
      async () => {
        const res = await request(this.transport.server + pathAndQuery, {
          method: 'GET',
          headers: { ...headers, accept: 'application/json' },
          dispatcher,
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) return JSON.parse(text) as T;
        throw httpError(res.statusCode, text, `LIST ${pathAndQuery.split('?')[0]}`);
      },
      signal,
    );
  }

  /**
   * One watch stream, read straight off the socket: newline-delimited JSON events, split on bytes (a
   * multi-byte character may straddle chunks). Replaces client-node's Watch, whose web-stream adapter and
   * readline interface cost more CPU than the events' JSON parsing at thousands of objects.
   */
  watch(
    path: string,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
    onDone: (err?: unknown) => void,
    onOpen?: () => void,
  ): WatchHandle {
    // The apiserver ends the stream after timeoutSeconds and sends bookmarks about once a minute; a stream
    // silent for longer than timeoutSeconds + slack is dead. The reflector has its own, shorter stall limit.
    const inactivityMs = opts.timeoutSeconds * 1000 + (this.opts.inactivitySlackMs ?? 90_000);
    const abort = new AbortController();
    let finished = false;
    let inactive = false;
    let lastData = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number) => {
      timer = setTimeout(() => {
        const idle = performance.now() - lastData;
        if (idle < inactivityMs) return arm(inactivityMs - idle);
        inactive = true;
        abort.abort();
      }, ms);
      timer.unref();
    };
    const finish = (err?: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      abort.abort();
      onDone(err);
    };
    const emit = (line: string) => {
      let event: { type?: string; object?: KubeObject };
      try {
        event = JSON.parse(line);
      } catch {
        return; // a torn line: the stream is ending, and the reflector resumes from the last resourceVersion
      }
      if (!finished && event.type && event.object) onEvent(event.type as WatchEventType, event.object);
    };
    const run = async () => {
      const { headers, dispatcher } = await this.transport.context();
      const q = new URLSearchParams({ watch: 'true', timeoutSeconds: String(opts.timeoutSeconds) });
      if (opts.resourceVersion) q.set('resourceVersion', opts.resourceVersion);
      if (opts.allowWatchBookmarks) q.set('allowWatchBookmarks', 'true');
      if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
      if (opts.fieldSelector) q.set('fieldSelector', opts.fieldSelector);
      arm(inactivityMs);
      const res = await trackContact(
        this.transport.contact,
        async () => {
          const opened = await request(`${this.transport.server}${path}?${q}`, {
            method: 'GET',
            headers: { ...headers, accept: 'application/json' },
            dispatcher,
            signal: abort.signal,
            // No per-chunk body timeout from undici: inactivity is judged above, across bookmarks.
            bodyTimeout: 0,
          });
          if (opened.statusCode !== 200) throw httpError(opened.statusCode, await opened.body.text(), `WATCH ${path}`);
          return opened;
        },
        abort.signal,
      );
      if (finished) return;
      onOpen?.();
      const lines = new LineSplitter();
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        lastData = performance.now();
        lines.push(chunk, (line) => {
          emit(line);
          return !finished;
        });
        if (finished) return;
      }
    };
    run().then(
      () => finish(undefined),
      (err: unknown) => {
        if (inactive) finish(new WatchInactiveError(`watch ${path}: no data for ${inactivityMs} ms`));
        else finish(err instanceof WatchHttpError ? err : (err ?? new Error('watch failed')));
      },
    );
    return {
      abort: () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        abort.abort();
      },
    };
  }
}

/**
 * Splits a byte stream into its non-empty lines ('\n'). A line, or a multi-byte character in it, may straddle
 * chunks: bytes are joined before they are decoded.
 */
export class LineSplitter {
  private readonly partial: Buffer[] = [];

  /** Calls onLine for each line completed by `chunk`; stops early when onLine returns false. */
  push(chunk: Buffer, onLine: (line: string) => boolean): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      let line: string;
      if (this.partial.length > 0) {
        this.partial.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.partial).toString('utf8');
        this.partial.length = 0;
      } else {
        line = chunk.toString('utf8', start, nl);
      }
      start = nl + 1;
      if (line.length > 0 && !onLine(line)) return;
    }
    if (start < chunk.length) this.partial.push(chunk.subarray(start));
  }
}

/** A WatchHttpError from a non-200 answer, with the Status body's reason and message when there is one. */
function httpError(code: number, body: string, what: string): WatchHttpError {
  const status = statusBodyOf(body);
  return new WatchHttpError(
    code,
    status.reason ?? `HTTP${code}`,
    `${what}: ${code} ${status.message ?? body.slice(0, 200)}`,
  );
}
