// The process's Kubernetes client: plain-JSON REST over one transport (src/kube/transport.ts). GET, POST,
// PUT, server-side apply, merge patch, DELETE, a paginated LIST and a WATCH stream, all by path (every path
// is known up front: no discovery round trips). Raw JSON rather than client-node's typed models, so
// nothing is silently dropped or re-shaped on the way. Every failure answer is a KubeStatusError, and
// every call reports to the transport's ApiServerContact.
import type { KubeConfig } from '@kubernetes/client-node';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { type Clock, systemClock } from '../kinds/clock.js';
import type { KubeObject } from '../kinds/kubernetes.js';
import { type ApiServerContact, trackContact } from './contact.js';
import { LineSplitter } from './line-splitter.js';
import { isExpired, KubeStatusError, statusErrorOf } from './status.js';
import { type KubeTransport, transportFor } from './transport.js';

export interface RequestOptions {
  /** Aborts the request; a call aborted this way is not counted against the server's contact record. */
  signal?: AbortSignal;
  /** Overrides the client's per-request timeout. */
  timeoutMs?: number;
}

export interface ListOptions extends RequestOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size (`limit`); the client follows `continue` until the list is complete. */
  limit?: number;
}

export interface ListResult {
  /** Every item, with apiVersion/kind filled in from the list. */
  items: KubeObject[];
  /** metadata.resourceVersion of the list: where a following watch starts. */
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

/** The stream sent nothing for too long (client-side inactivity timeout). */
export class WatchInactiveError extends Error {
  override name = 'WatchInactiveError';
}

export interface KubeClientOptions {
  /** Timeout of one request (one LIST page included, unless listTimeoutMs says otherwise). Default 30 s. */
  timeoutMs?: number;
  /** Timeout of one LIST page. Default: timeoutMs. */
  listTimeoutMs?: number;
  /**
   * Extra time beyond a watch's server-side timeoutSeconds before the stream's own inactivity timer gives
   * up on a silent stream. It must exceed the reflector's stall slack so the reflector's watchdog decides.
   * Default 90 s.
   */
  inactivitySlackMs?: number;
  /** Times the watch inactivity timer. Default: the system clock. */
  clock?: Clock;
  /** Let requests negotiate HTTP/2 (client-node's dispatcher). Default: the shared HTTP/1.1 pool. */
  http2?: boolean;
}

type DeleteAnswer = {
  kind?: string;
  metadata?: { uid?: string; deletionTimestamp?: string };
  details?: { uid?: string };
};

export class KubeClient {
  readonly server: string;
  /** Whether the API server answers: every call through this client reports here. */
  readonly contact: ApiServerContact;
  private readonly clock: Clock;

  constructor(
    private readonly transport: KubeTransport,
    private readonly opts: KubeClientOptions = {},
  ) {
    this.server = transport.server;
    this.contact = transport.contact;
    this.clock = opts.clock ?? systemClock;
  }

  /** A client over the process's transport for `kc` (one per kubeconfig; see transportFor). */
  static forConfig(kc: KubeConfig, opts: KubeClientOptions = {}): KubeClient {
    return new KubeClient(transportFor(kc, opts.http2), opts);
  }

  /** GET; undefined when the object does not exist (404). */
  async get<T = KubeObject>(path: string, opts: RequestOptions = {}): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path, opts);
    } catch (err) {
      if (err instanceof KubeStatusError && err.code === 404) return undefined;
      throw err;
    }
  }

  /** POST to a collection. */
  create<T = KubeObject>(collectionPath: string, obj: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>('POST', collectionPath, { ...opts, body: obj });
  }

  /** PUT: replaces the object; metadata.resourceVersion in `obj` makes it a compare-and-swap (409 when stale). */
  update<T = KubeObject>(path: string, obj: unknown, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>('PUT', path, { ...opts, body: obj });
  }

  /** Server-side apply under `fieldManager`, with force (the controller owns what it applies). */
  apply<T = KubeObject>(
    path: string,
    obj: unknown,
    opts: RequestOptions & { fieldManager: string; dryRun?: boolean },
  ): Promise<T> {
    const q = new URLSearchParams({ fieldManager: opts.fieldManager, force: 'true' });
    if (opts.dryRun) q.set('dryRun', 'All');
    return this.request<T>('PATCH', `${path}?${q}`, {
      ...opts,
      body: obj,
      contentType: 'application/apply-patch+yaml',
    });
  }

  /** JSON merge patch, named after `fieldManager` so every field written shows who wrote it. */
  mergePatch<T = KubeObject>(
    path: string,
    patch: unknown,
    opts: RequestOptions & { fieldManager: string },
  ): Promise<T> {
    const q = new URLSearchParams({ fieldManager: opts.fieldManager });
    return this.request<T>('PATCH', `${path}?${q}`, {
      ...opts,
      body: patch,
      contentType: 'application/merge-patch+json',
    });
  }

  /**
   * DELETE with a DeleteOptions body. Resolves to the answer (a Status, or for some kinds the object as
   * deleted, still carrying a deletionTimestamp while it terminates), or undefined when it was already gone.
   */
  async delete(path: string, deleteOptions: unknown, opts: RequestOptions = {}): Promise<DeleteAnswer | undefined> {
    try {
      return await this.request<DeleteAnswer>('DELETE', path, { ...opts, body: deleteOptions });
    } catch (err) {
      if (err instanceof KubeStatusError && err.code === 404) return undefined;
      throw err;
    }
  }

  /**
   * Every item of a collection, following `continue`. A continue token can expire (410) between pages on a
   * busy cluster: then the list starts over in one request.
   */
  async list(path: string, opts: ListOptions = {}): Promise<ListResult> {
    try {
      return await this.listPages(path, opts, opts.limit);
    } catch (err) {
      if (isExpired(err) && opts.limit) return this.listPages(path, opts, undefined);
      throw err;
    }
  }

  private async listPages(path: string, opts: ListOptions, limit: number | undefined): Promise<ListResult> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let rv = '';
    const timeoutMs = opts.timeoutMs ?? this.opts.listTimeoutMs;
    do {
      const q = new URLSearchParams();
      if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
      if (opts.fieldSelector) q.set('fieldSelector', opts.fieldSelector);
      if (limit) q.set('limit', String(limit));
      if (cont) q.set('continue', cont);
      const page = await this.request<{
        apiVersion?: string;
        kind?: string;
        metadata?: { resourceVersion?: string; continue?: string };
        items?: KubeObject[];
      }>('GET', `${path}?${q}`, { signal: opts.signal, timeoutMs });
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

  /** One request; the parsed JSON answer, or a KubeStatusError for a non-2xx answer. */
  async request<T>(
    method: Dispatcher.HttpMethod,
    path: string,
    opts: RequestOptions & { body?: unknown; contentType?: string } = {},
  ): Promise<T> {
    const auth = await this.transport.context();
    const headers: Record<string, string> = { ...auth.headers, accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000);
    // undici's dispatcher API rather than fetch(): same connection pool and semantics without the WHATWG
    // Request/Headers/stream machinery, which cost more CPU than the request itself at thousands of
    // workspaces (measured with scripts/bench.ts).
    return trackContact(
      this.contact,
      async () => {
        const res = await undiciRequest(this.server + path, {
          method,
          headers,
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
          dispatcher: auth.dispatcher,
          signal: opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout,
        });
        const text = await res.body.text();
        const status = res.statusCode;
        if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
        throw statusErrorOf(status, text, `${method} ${path.split('?')[0]}`);
      },
      opts.signal,
    );
  }

  /**
   * Opens a watch stream, read straight off the socket: newline-delimited JSON events, split on bytes (a
   * multi-byte character may straddle chunks). Replaces client-node's Watch, whose web-stream adapter and
   * readline interface cost more CPU than the events' JSON parsing at thousands of objects.
   *
   * `onEvent` gets each event (for ERROR, `obj` is a Status); `onDone` is called once when the stream ends:
   * with no argument for a normal end, with an error otherwise (a KubeStatusError for a refused watch, a
   * WatchInactiveError for a silent one). `onOpen` is called when the server accepted the watch (HTTP 200).
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
    const clock = this.clock;
    const abort = new AbortController();
    let finished = false;
    let inactive = false;
    let lastData = clock.now();
    let timer: { cancel(): void } | undefined;
    const arm = (ms: number) => {
      const t = clock.setTimer(() => {
        const idle = clock.now() - lastData;
        if (idle < inactivityMs) return arm(inactivityMs - idle);
        inactive = true;
        abort.abort();
      }, ms);
      t.unref();
      timer = t;
    };
    const finish = (err?: unknown) => {
      if (finished) return;
      finished = true;
      timer?.cancel();
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
        this.contact,
        async () => {
          const opened = await undiciRequest(`${this.server}${path}?${q}`, {
            method: 'GET',
            headers: { ...headers, accept: 'application/json' },
            dispatcher,
            signal: abort.signal,
            // No per-chunk body timeout from undici: inactivity is judged above, across bookmarks.
            bodyTimeout: 0,
          });
          if (opened.statusCode !== 200) {
            throw statusErrorOf(opened.statusCode, await opened.body.text(), `WATCH ${path}`);
          }
          return opened;
        },
        abort.signal,
      );
      if (finished) return;
      onOpen?.();
      const lines = new LineSplitter();
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        lastData = clock.now();
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
        else finish(err ?? new Error('watch failed'));
      },
    );
    return {
      abort: () => {
        if (finished) return;
        finished = true;
        timer?.cancel();
        abort.abort();
      },
    };
  }
}
