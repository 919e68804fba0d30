// The Kubernetes adapter: the handful of kinds the controller manages (their paths), and KubeApi, what the
// steps and the reconciler call, over the process's one Kubernetes client (src/kube).
import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject, ObjectRef } from '../kinds/kubernetes.js';
import { KubeClient } from '../kube/client.js';
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

export interface ApplyOptions {
  dryRun?: boolean;
  /** Field manager override; defaults to the adapter's. */
  fieldManager?: string;
}

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
  /** Per-request timeout (one LIST page included); watch streams are not made here. Default 30 s. */
  timeoutMs?: number;
  /** Called with the object every successful (non-dry-run) write returned. */
  onWritten?: (obj: KubeObject) => void;
  /**
   * Called after a successful (non-dry-run) delete that removed the object at once, with the uid it had.
   * Not called when the object only started terminating (finalizers, graceful deletion): more events come.
   */
  onDeleted?: (ref: ObjectRef, uid: string) => void;
  /** Let requests negotiate HTTP/2 (client-node's dispatcher). Default: the process's HTTP/1.1 pool. */
  http2?: boolean;
}

/**
 * KubeApi over the process's KubeClient (src/kube): adds the kinds' paths, the call statistics, and the
 * write hooks the controller's caches and own-write filter listen to.
 */
export class HttpKubeApi implements KubeApi {
  readonly stats: CallStats;
  readonly client: KubeClient;

  constructor(
    kcOrClient: KubeConfig | KubeClient,
    private readonly opts: HttpKubeApiOptions,
  ) {
    this.client =
      kcOrClient instanceof KubeClient
        ? kcOrClient
        : KubeClient.forConfig(kcOrClient, { timeoutMs: opts.timeoutMs, http2: opts.http2 });
    this.stats = opts.stats;
  }

  async get(ref: ObjectRef): Promise<KubeObject | undefined> {
    return this.stats.track(`get_${ref.kind}`, false, () => this.client.get(objectPath(ref)));
  }

  async list(kind: KindName, opts: ListOptions = {}): Promise<KubeObject[]> {
    return this.stats.track(`list_${kind}`, false, async () => {
      const listed = await this.client.list(collectionPath(kind, opts.namespace), {
        labelSelector: opts.labelSelector,
        limit: 500,
      });
      return listed.items;
    });
  }

  async apply(obj: KubeObject, opts: ApplyOptions = {}): Promise<KubeObject> {
    return this.stats.track(`apply_${obj.kind}`, !opts.dryRun, async () => {
      const out = await this.client.apply(objectPath(refOf(obj)), obj, {
        fieldManager: opts.fieldManager ?? this.opts.fieldManager,
        dryRun: opts.dryRun,
      });
      if (!opts.dryRun) this.opts.onWritten?.(out);
      return out;
    });
  }

  async mergePatch(ref: ObjectRef, patch: unknown, opts: { fieldManager?: string } = {}): Promise<KubeObject> {
    return this.stats.track(`patch_${ref.kind}`, true, async () => {
      // Named like the applies (or as the caller asks), so every field written shows who wrote it.
      const out = await this.client.mergePatch(objectPath(ref), patch, {
        fieldManager: opts.fieldManager ?? this.opts.fieldManager,
      });
      this.opts.onWritten?.(out);
      return out;
    });
  }

  async create(obj: KubeObject): Promise<KubeObject> {
    return this.stats.track(`create_${obj.kind}`, true, async () => {
      const out = await this.client.create(collectionPath(obj.kind, obj.metadata.namespace), obj);
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
      const res = await this.client.delete(objectPath(ref), body);
      if (res === undefined) return false;
      // The answer is a Status (details.uid) or, for some kinds, the object as deleted; an object still
      // carrying a deletionTimestamp is only terminating.
      const gone = res.kind === 'Status' || !res.metadata?.deletionTimestamp;
      const uid = res.kind === 'Status' ? res.details?.uid : res.metadata?.uid;
      if (!opts.dryRun && gone && uid) this.opts.onDeleted?.(ref, uid);
      return true;
    });
  }
}
