// The Kubernetes adapter: plain-JSON REST calls for the handful of kinds the controller manages.
// Raw JSON (not client-node's typed models) so nothing is silently dropped or re-shaped on the way,
// and no discovery round-trips: every path is known up front.
import { createHash } from 'node:crypto';
import { HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { Agent, type Dispatcher, request as undiciRequest } from 'undici';
import type { KubeObject, ObjectRef } from '../kinds/kubernetes.js';
import { type ApiServerContact, apiServerContact, trackContact } from './apiserver-contact.js';
import type { CallStats } from './call-stats.js';

export type { KubeMetadata, KubeObject, ObjectRef } from '../kinds/kubernetes.js';

export interface KindInfo {
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export const KINDS = {
  Namespace: { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  ConfigMap: { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  ResourceQuota: { apiVersion: 'v1', kind: 'ResourceQuota', plural: 'resourcequotas', namespaced: true },
  ServiceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
  Event: { apiVersion: 'v1', kind: 'Event', plural: 'events', namespaced: true },
  NetworkPolicy: {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    plural: 'networkpolicies',
    namespaced: true,
  },
  RoleBinding: {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    plural: 'rolebindings',
    namespaced: true,
  },
  Lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases', namespaced: true },
} as const satisfies Record<string, KindInfo>;

export type KindName = keyof typeof KINDS;

/** Kinds the controller provisions per workspace, in creation order. */
export const MANAGED_KINDS: KindName[] = [
  'Namespace',
  'ResourceQuota',
  'NetworkPolicy',
  'ServiceAccount',
  'ConfigMap',
  'RoleBinding',
];

export function kindInfo(kind: string): KindInfo {
  const info = (KINDS as Record<string, KindInfo>)[kind];
  if (!info) throw new Error(`unsupported kind ${kind}`);
  return info;
}

export function collectionPath(kind: string, namespace?: string): string {
  const info = kindInfo(kind);
  const base = info.apiVersion.includes('/') ? `/apis/${info.apiVersion}` : `/api/${info.apiVersion}`;
  if (info.namespaced && namespace) return `${base}/namespaces/${encodeURIComponent(namespace)}/${info.plural}`;
  return `${base}/${info.plural}`;
}

export function objectPath(ref: ObjectRef): string {
  return `${collectionPath(ref.kind, ref.namespace)}/${encodeURIComponent(ref.name)}`;
}

export function refOf(obj: KubeObject): ObjectRef {
  const ref: ObjectRef = { apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata.name };
  if (obj.metadata.namespace) ref.namespace = obj.metadata.namespace;
  return ref;
}

export function describeRef(ref: ObjectRef): string {
  return ref.namespace ? `${ref.kind} ${ref.namespace}/${ref.name}` : `${ref.kind} ${ref.name}`;
}

/** A failed API call, with the Status `reason` (NotFound, Conflict, Forbidden, …) and HTTP code. */
export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly causes: { field?: string; message?: string }[] = [],
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export interface ApplyOptions {
  dryRun?: boolean;
  /** Field manager override; defaults to the adapter's. */
  fieldManager?: string;
}

type DeleteResponse =
  | { kind: 'Status'; details?: { uid?: string }; metadata?: undefined }
  | { kind?: string; metadata?: { uid?: string; deletionTimestamp?: string }; details?: undefined }
  | undefined;

export interface DeleteOptions {
  dryRun?: boolean;
  /** Precondition: delete only this incarnation of the object. */
  uid?: string;
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
}

export interface ListOptions {
  labelSelector?: string;
  namespace?: string;
}

export interface KubeApi {
  readonly stats: CallStats;
  get(ref: ObjectRef): Promise<KubeObject | undefined>;
  list(kind: KindName, opts?: ListOptions): Promise<KubeObject[]>;
  /** Server-side apply with the controller's field manager and force. */
  apply(obj: KubeObject, opts?: ApplyOptions): Promise<KubeObject>;
  /** JSON merge patch (Event counts; the CLI's rerun annotation, under its own field manager). */
  mergePatch(ref: ObjectRef, patch: unknown, opts?: { fieldManager?: string }): Promise<KubeObject>;
  create(obj: KubeObject): Promise<KubeObject>;
  /** Returns false when the object was already gone. */
  delete(ref: ObjectRef, opts?: DeleteOptions): Promise<boolean>;
}

export interface HttpKubeApiOptions {
  fieldManager: string;
  stats: CallStats;
  /** Per-request timeout; watch streams are not made here. */
  timeoutMs?: number;
  /** Called with the object every successful (non-dry-run) write returned. */
  onWritten?: (obj: KubeObject) => void;
  /**
   * Called after a successful (non-dry-run) delete that removed the object at once, with the uid it had.
   * Not called when the object only started terminating (finalizers, graceful deletion): more events come.
   */
  onDeleted?: (ref: ObjectRef, uid: string) => void;
  /** Let requests negotiate HTTP/2 (client-node's dispatcher). Default: one HTTP/1.1 keep-alive pool. */
  http2?: boolean;
}

export interface TransportContext {
  headers: Record<string, string>;
  dispatcher: Dispatcher | undefined;
}

/**
 * How requests reach kube-apiserver for one kubeconfig: auth headers, re-derived at most once a minute
 * (in-cluster tokens rotate, but not per request), and one HTTP/1.1 keep-alive pool, rebuilt only when
 * the TLS material changes (a rotated client certificate).
 *
 * client-node's own dispatcher negotiates HTTP/2 and is new on every auth refresh. Through this adapter,
 * HTTP/1.1 cost 10-25% less client CPU per request than HTTP/2 (`npm run bench:transport`: SSA apply + GET,
 * 4 in flight, alternating runs; lower in every adjacent pair) and made no measurable difference to
 * kube-apiserver's CPU. Behind a load balancer it also spreads requests across apiserver replicas instead of
 * pinning one multiplexed connection. A proxy from the kubeconfig keeps client-node's
 * dispatcher; `http2: true` too.
 */
export class KubeTransport {
  readonly server: string;
  /** This process's record of whether `server` answers (fed by every request made through this transport). */
  readonly contact: ApiServerContact;
  private auth: (TransportContext & { expires: number }) | undefined;
  private pool: { fingerprint: string; agent: Agent } | undefined;

  constructor(
    private readonly kc: KubeConfig,
    private readonly http2 = false,
  ) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
    this.contact = apiServerContact(this.server);
  }

  async context(): Promise<TransportContext> {
    if (this.auth && this.auth.expires > Date.now()) return this.auth;
    const ctx = new RequestContext(this.server, HttpMethod.GET);
    await this.kc.applySecurityAuthentication(ctx);
    this.auth = {
      headers: ctx.getHeaders(),
      dispatcher: await this.dispatcherFor(ctx.getDispatcher() as Dispatcher | undefined),
      expires: Date.now() + 60_000,
    };
    return this.auth;
  }

  private async dispatcherFor(fromKubeConfig: Dispatcher | undefined): Promise<Dispatcher | undefined> {
    if (this.http2 || !fromKubeConfig || this.kc.getCurrentCluster()?.proxyUrl) return fromKubeConfig;
    const tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string } = {};
    await this.kc.applyToHTTPSOptions(tls);
    const hash = createHash('sha256');
    for (const part of [tls.ca, tls.cert, tls.key, String(tls.rejectUnauthorized), tls.servername ?? '']) {
      hash.update(part ?? '').update('\0');
    }
    const fingerprint = hash.digest('hex');
    if (this.pool?.fingerprint !== fingerprint) {
      const previous = this.pool?.agent;
      const connect: Record<string, unknown> = { keepAlive: true, keepAliveInitialDelay: 30_000 };
      for (const [k, v] of Object.entries(tls)) if (v !== undefined) connect[k] = v;
      this.pool = { fingerprint, agent: new Agent({ connect, allowH2: false }) };
      // In-flight requests (and open watches) on the old pool finish; it takes no new ones.
      previous?.close().catch(() => undefined);
    }
    return this.pool.agent;
  }
}

export class HttpKubeApi implements KubeApi {
  readonly stats: CallStats;
  private readonly transport: KubeTransport;
  private readonly server: string;

  constructor(
    kc: KubeConfig,
    private readonly opts: HttpKubeApiOptions,
  ) {
    this.transport = new KubeTransport(kc, opts.http2);
    this.server = this.transport.server;
    this.stats = opts.stats;
  }

  async get(ref: ObjectRef): Promise<KubeObject | undefined> {
    return this.stats.track(`get_${ref.kind}`, false, async () => {
      try {
        return await this.request<KubeObject>('GET', objectPath(ref));
      } catch (err) {
        if (err instanceof KubeApiError && err.code === 404) return undefined;
        throw err;
      }
    });
  }

  async list(kind: KindName, opts: ListOptions = {}): Promise<KubeObject[]> {
    return this.stats.track(`list_${kind}`, false, async () => {
      const info = KINDS[kind];
      const items: KubeObject[] = [];
      let cont: string | undefined;
      do {
        const q = new URLSearchParams({ limit: '500' });
        if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
        if (cont) q.set('continue', cont);
        const page = await this.request<{ items?: KubeObject[]; metadata?: { continue?: string } }>(
          'GET',
          `${collectionPath(kind, opts.namespace)}?${q}`,
        );
        for (const item of page.items ?? []) items.push({ ...item, apiVersion: info.apiVersion, kind: info.kind });
        cont = page.metadata?.continue || undefined;
      } while (cont);
      return items;
    });
  }

  async apply(obj: KubeObject, opts: ApplyOptions = {}): Promise<KubeObject> {
    return this.stats.track(`apply_${obj.kind}`, !opts.dryRun, async () => {
      const q = new URLSearchParams({ fieldManager: opts.fieldManager ?? this.opts.fieldManager, force: 'true' });
      if (opts.dryRun) q.set('dryRun', 'All');
      const out = await this.request<KubeObject>(
        'PATCH',
        `${objectPath(refOf(obj))}?${q}`,
        obj,
        'application/apply-patch+yaml',
      );
      if (!opts.dryRun) this.opts.onWritten?.(out);
      return out;
    });
  }

  async mergePatch(ref: ObjectRef, patch: unknown, opts: { fieldManager?: string } = {}): Promise<KubeObject> {
    return this.stats.track(`patch_${ref.kind}`, true, async () => {
      // Named like the applies (or as the caller asks), so every field written shows who wrote it.
      const q = new URLSearchParams({ fieldManager: opts.fieldManager ?? this.opts.fieldManager });
      const out = await this.request<KubeObject>(
        'PATCH',
        `${objectPath(ref)}?${q}`,
        patch,
        'application/merge-patch+json',
      );
      this.opts.onWritten?.(out);
      return out;
    });
  }

  async create(obj: KubeObject): Promise<KubeObject> {
    return this.stats.track(`create_${obj.kind}`, true, async () => {
      const out = await this.request<KubeObject>('POST', collectionPath(obj.kind, obj.metadata.namespace), obj);
      this.opts.onWritten?.(out);
      return out;
    });
  }

  async delete(ref: ObjectRef, opts: DeleteOptions = {}): Promise<boolean> {
    return this.stats.track(`delete_${ref.kind}`, !opts.dryRun, async () => {
      const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions' };
      if (opts.uid) body.preconditions = { uid: opts.uid };
      if (opts.propagationPolicy) body.propagationPolicy = opts.propagationPolicy;
      if (opts.dryRun) body.dryRun = ['All'];
      try {
        // The answer is a Status (details.uid) or, for some kinds, the object as deleted; an object still
        // carrying a deletionTimestamp is only terminating.
        const res = await this.request<DeleteResponse>('DELETE', objectPath(ref), body);
        const gone = res?.kind === 'Status' || !res?.metadata?.deletionTimestamp;
        const uid = res?.kind === 'Status' ? res.details?.uid : res?.metadata?.uid;
        if (!opts.dryRun && gone && uid) this.opts.onDeleted?.(ref, uid);
        return true;
      } catch (err) {
        if (err instanceof KubeApiError && err.code === 404) return false;
        throw err;
      }
    });
  }

  private async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const auth = await this.transport.context();
    const headers: Record<string, string> = { ...auth.headers, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = contentType;
    // undici's dispatcher API rather than fetch(): same connection pool and semantics without the WHATWG
    // Request/Headers/stream machinery, which cost more CPU than the request itself at thousands of
    // workspaces (measured with scripts/bench.ts).
    return trackContact(this.transport.contact, async () => {
      const res = await undiciRequest(this.server + path, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher: auth.dispatcher,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
      const text = await res.body.text();
      const status = res.statusCode;
      if (status >= 200 && status < 300) return (text ? JSON.parse(text) : {}) as T;
      const parsed = statusBodyOf(text);
      throw new KubeApiError(
        status,
        parsed.reason ?? `HTTP${status}`,
        `${method} ${path.split('?')[0]}: ${status} ${parsed.message ?? text.slice(0, 200)}`,
        parsed.details?.causes ?? [],
      );
    });
  }
}

/** The metav1.Status of an error answer, or {} for a body that is not one (a proxy's error page). */
export function statusBodyOf(text: string): {
  reason?: string;
  message?: string;
  details?: { causes?: { field?: string; message?: string }[] };
} {
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}
