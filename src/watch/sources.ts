// Watch sources of the controller, built from reflectors:
//   * workspace ConfigMaps: one reflector per configured source namespace (or one cluster-wide reflector when
//     cfg.sourceNamespaces is ['*']) with cfg.configMapSelector, periodic resync, and an event filter so the
//     controller's own status-annotation writes don't re-trigger it;
//   * managed objects (Namespace, ResourceQuota, NetworkPolicy, ServiceAccount, ConfigMap, RoleBinding): one
//     cluster-wide reflector per kind with `app.kubernetes.io/managed-by=<cfg.fieldManager>`, feeding drift detection.
// The stores double as the controller's read cache: the reconciler reads live objects from here.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { collectionPath, KINDS, type KindName, MANAGED_KINDS } from '../adapters/kubernetes.js';
import { type ControllerConfig, MANAGED_BY_LABEL, RECONCILE_REQUEST_ANNOTATION } from '../config/config.js';
import { KubeClient } from '../kube/client.js';
import type { Metrics } from '../metrics/metrics.js';
import {
  type KubeObject,
  type ListWatchClient,
  objectKey,
  Reflector,
  type ReflectorOptions,
  stripManagedFields,
  stripManagedFieldsAndStatus,
} from './reflector.js';

export type SourceEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** Reflector settings a caller may override (tests: short timeouts; normal runs: leave alone). */
export type WatchTuning = Partial<
  Pick<
    ReflectorOptions,
    | 'minWatchTimeoutSeconds'
    | 'maxWatchTimeoutSeconds'
    | 'stallSeconds'
    | 'stallSlackSeconds'
    | 'resyncPeriodMs'
    | 'pageSize'
    | 'backoff'
  >
>;

/** What the watch sources read of the configuration. */
export type SourceConfig = Pick<ControllerConfig, 'configMapSelector' | 'fieldManager' | 'sourceNamespaces'> & {
  reconcile: Pick<ControllerConfig['reconcile'], 'resyncPeriodSeconds' | 'watchStallSeconds'>;
};

interface SourceBase {
  cfg: SourceConfig;
  /** Cluster access; ignored when `client` is given. */
  kc?: KubeConfig;
  /** List/watch I/O (a fake in unit tests); built from `kc` otherwise. */
  client?: ListWatchClient;
  log?: Logger;
  metrics?: Metrics;
  watch?: WatchTuning;
}

function clientOf(o: SourceBase): ListWatchClient {
  if (o.client) return o.client;
  if (!o.kc) throw new Error('watch source needs either `client` or `kc`');
  // A LIST page of thousands of objects may take longer than a single REST call.
  return KubeClient.forConfig(o.kc, { listTimeoutMs: 60_000 });
}

// ---------------------------------------------------------------------------------------------------------
// Event filter for workspace ConfigMaps

/**
 * Whether a ConfigMap event should enqueue its key. Adds and deletes always do. An update does only when
 * something the reconciler acts on changed: data/binaryData/immutable, deletionTimestamp, finalizers,
 * the reconcile-request annotation, or the uid (re-created). Updates that touch only the controller's
 * status annotation, other annotations or labels, resourceVersion or managedFields are ignored — the
 * controller writes the status annotation itself and must not re-trigger on it.
 */
export function configMapEventFilter(type: SourceEventType, obj: KubeObject, old?: KubeObject): boolean {
  if (type !== 'MODIFIED' || !old) return true;
  return configMapChanged(old, obj);
}

/** True when `next` differs from `prev` in a way the reconciler cares about (see configMapEventFilter). */
export function configMapChanged(prev: KubeObject, next: KubeObject): boolean {
  const a = prev.metadata;
  const b = next.metadata;
  if (a.uid !== b.uid) return true;
  if (a.deletionTimestamp !== b.deletionTimestamp) return true;
  if (!sameJson(a.finalizers ?? [], b.finalizers ?? [])) return true;
  if (a.annotations?.[RECONCILE_REQUEST_ANNOTATION] !== b.annotations?.[RECONCILE_REQUEST_ANNOTATION]) return true;
  if (!sameJson(prev.data ?? {}, next.data ?? {})) return true;
  if (!sameJson(prev.binaryData ?? {}, next.binaryData ?? {})) return true;
  if ((prev.immutable ?? false) !== (next.immutable ?? false)) return true;
  return false;
}

/**
 * True when a managed object changed in anything but its status or resourceVersion. Status is the
 * server's (quota usage, namespace phase) and not part of what the controller compares; deletion shows in
 * metadata.deletionTimestamp.
 */
export function managedObjectChanged(prev: KubeObject, next: KubeObject): boolean {
  const { status: _a, metadata: ma, ...restA } = prev as KubeObject & { status?: unknown };
  const { status: _b, metadata: mb, ...restB } = next as KubeObject & { status?: unknown };
  const {
    resourceVersion: _c,
    managedFields: _d,
    ...metaA
  } = ma as KubeObject['metadata'] & { managedFields?: unknown };
  const {
    resourceVersion: _e,
    managedFields: _f,
    ...metaB
  } = mb as KubeObject['metadata'] & { managedFields?: unknown };
  return !sameJson(metaA, metaB) || !sameJson(restA, restB);
}

/** Structural equality of JSON values (object key order ignored, array order kept). */
function sameJson(x: unknown, y: unknown): boolean {
  if (x === y) return true;
  if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
  if (Array.isArray(x) !== Array.isArray(y)) return false;
  if (Array.isArray(x) && Array.isArray(y)) {
    return x.length === y.length && x.every((v, i) => sameJson(v, y[i]));
  }
  const xo = x as Record<string, unknown>;
  const yo = y as Record<string, unknown>;
  const xk = Object.keys(xo);
  if (xk.length !== Object.keys(yo).length) return false;
  return xk.every((k) => Object.hasOwn(yo, k) && sameJson(xo[k], yo[k]));
}

// ---------------------------------------------------------------------------------------------------------
// Workspace ConfigMaps

export interface ConfigMapSourceOptions extends SourceBase {
  /** Called for every event that passes `predicate` (default configMapEventFilter). `old` on MODIFIED. */
  onEvent: (type: SourceEventType, obj: KubeObject, old?: KubeObject) => void;
  /** Called every cfg.reconcile.resyncPeriodSeconds with all workspace ConfigMaps (per source namespace). */
  onResync?: (objs: KubeObject[]) => void;
  predicate?: (type: SourceEventType, obj: KubeObject, old?: KubeObject) => boolean;
}

/** The workspace ConfigMap watches: a read cache keyed `namespace/name`, plus health for readiness. */
export class ConfigMapSources {
  /** Namespace → reflector; the single key '*' when watching all namespaces. */
  readonly reflectors = new Map<string, Reflector>();

  constructor(o: ConfigMapSourceOptions) {
    const { cfg } = o;
    const client = clientOf(o);
    const all = cfg.sourceNamespaces.includes('*');
    const namespaces = all ? ['*'] : [...new Set(cfg.sourceNamespaces)];
    if (namespaces.length === 0) throw new Error('no source namespaces configured');
    const predicate = o.predicate ?? configMapEventFilter;
    const emit = (type: SourceEventType, obj: KubeObject, old?: KubeObject) => {
      if (predicate(type, obj, old)) o.onEvent(type, obj, old);
    };
    for (const ns of namespaces) {
      const r = new Reflector({
        client,
        path: ns === '*' ? '/api/v1/configmaps' : collectionPath('ConfigMap', ns),
        resource: 'configmaps',
        labelSelector: cfg.configMapSelector,
        stallSlackSeconds: cfg.reconcile.watchStallSeconds,
        resyncPeriodMs: cfg.reconcile.resyncPeriodSeconds * 1000,
        transform: stripManagedFields,
        metrics: o.metrics,
        log: o.log,
        ...o.watch,
      });
      r.onAdd((obj) => emit('ADDED', obj));
      r.onUpdate((old, obj) => emit('MODIFIED', obj, old));
      r.onDelete((obj) => emit('DELETED', obj));
      if (o.onResync) r.onResync(o.onResync);
      this.reflectors.set(ns, r);
    }
  }

  /** Starts every reflector; resolves when all have listed once. */
  async start(): Promise<void> {
    await Promise.all([...this.reflectors.values()].map((r) => r.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.reflectors.values()].map((r) => r.stop()));
  }

  /** The cached ConfigMap for `namespace/name`, if it exists and matches the selector. */
  get(key: string): KubeObject | undefined {
    const ns = key.split('/', 1)[0] ?? '';
    return (this.reflectors.get('*') ?? this.reflectors.get(ns))?.get(key);
  }

  list(): KubeObject[] {
    return [...this.reflectors.values()].flatMap((r) => r.list());
  }

  hasSynced(): boolean {
    return [...this.reflectors.values()].every((r) => r.hasSynced());
  }

  isLive(): boolean {
    return [...this.reflectors.values()].every((r) => r.isLive());
  }

  /** Calls onResync now (what the periodic timer does). */
  resync(): void {
    for (const r of this.reflectors.values()) r.resync();
  }
}

/** Builds (does not start) the workspace ConfigMap sources. */
export function configMapSource(o: ConfigMapSourceOptions): ConfigMapSources {
  return new ConfigMapSources(o);
}

/** Builds and starts the workspace ConfigMap sources; resolves once every namespace has been listed. */
export async function startConfigMapSources(o: ConfigMapSourceOptions): Promise<ConfigMapSources> {
  const s = new ConfigMapSources(o);
  await s.start();
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Managed objects

export interface ManagedSourceOptions extends SourceBase {
  /** Kinds to watch; default MANAGED_KINDS (Namespace, ResourceQuota, NetworkPolicy, ServiceAccount, ConfigMap, RoleBinding). */
  kinds?: readonly KindName[];
  /** Every add/update/delete of a managed object (no filtering; `old` on MODIFIED). */
  onEvent: (kind: KindName, type: SourceEventType, obj: KubeObject, old?: KubeObject) => void;
  /** Called once per kind when its first list is done. */
  onSynced?: (kind: KindName) => void;
}

/** Cluster-wide watches of the objects the controller manages (label managed-by=<fieldManager>). */
export class ManagedSources {
  readonly reflectors = new Map<KindName, Reflector>();

  constructor(private readonly o: ManagedSourceOptions) {
    const client = clientOf(o);
    const selector = `${MANAGED_BY_LABEL}=${o.cfg.fieldManager}`;
    for (const kind of o.kinds ?? MANAGED_KINDS) {
      const info = KINDS[kind];
      const r = new Reflector({
        client,
        path: collectionPath(kind),
        // The workspace ConfigMap watches already report as "configmaps": a watch of ours must not hide
        // a silent one of theirs in the per-resource watch metrics.
        resource: kind === 'ConfigMap' ? 'managed-configmaps' : info.plural,
        labelSelector: selector,
        stallSlackSeconds: o.cfg.reconcile.watchStallSeconds,
        transform: stripManagedFieldsAndStatus,
        metrics: o.metrics,
        log: o.log,
        ...o.watch,
      });
      r.onAdd((obj) => o.onEvent(kind, 'ADDED', obj));
      r.onUpdate((old, obj) => o.onEvent(kind, 'MODIFIED', obj, old));
      r.onDelete((obj) => o.onEvent(kind, 'DELETED', obj));
      this.reflectors.set(kind, r);
    }
  }

  async start(): Promise<void> {
    await Promise.all(
      [...this.reflectors].map(async ([kind, r]) => {
        await r.start();
        this.o.onSynced?.(kind);
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all([...this.reflectors.values()].map((r) => r.stop()));
  }

  /** Cached object by `namespace/name` (or `name` for Namespaces). */
  get(kind: KindName, key: string): KubeObject | undefined {
    return this.reflectors.get(kind)?.get(key);
  }

  list(kind: KindName): KubeObject[] {
    return this.reflectors.get(kind)?.list() ?? [];
  }

  hasSynced(): boolean {
    return [...this.reflectors.values()].every((r) => r.hasSynced());
  }

  isLive(): boolean {
    return [...this.reflectors.values()].every((r) => r.isLive());
  }
}

/** Builds (does not start) the managed-object sources. */
export function managedObjectSources(o: ManagedSourceOptions): ManagedSources {
  return new ManagedSources(o);
}

/** Builds and starts the managed-object sources; resolves once every kind has been listed. */
export async function startManagedSources(o: ManagedSourceOptions): Promise<ManagedSources> {
  const s = new ManagedSources(o);
  await s.start();
  return s;
}

export { objectKey };
