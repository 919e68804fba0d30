// Kubernetes step: namespaces, quota, network policy, runner ServiceAccount, context ConfigMap and RoleBindings.
// Reads live state (informer cache when available), applies with SSA only where live differs, prunes
// what is no longer desired, and never touches an object that is not labelled as ours (a conflict).

import {
  describeRef,
  type KindName,
  type KubeApi,
  type KubeObject,
  MANAGED_KINDS,
  refOf,
} from '../../adapters/kubernetes.js';
import { MANAGED_BY_LABEL, SOURCE_ANNOTATION, WORKSPACE_ID_LABEL } from '../../config/config.js';
import { roleArnFor } from '../../desired/iam-arn.js';
import { desiredKubernetesObjects, workspaceSelector } from '../../desired/kubernetes.js';
import { sameQuantity } from '../../desired/quantity.js';
import { KubeStatusError } from '../../kube/status.js';
import { containsDesired, diffPaths } from '../diff.js';
import {
  type PlannedChange,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepOutcome,
  type WorkspaceStep,
} from '../types.js';
import { type StepWriter, settle, stepWriter } from './scaffold.js';

/** Read access to managed objects, typically backed by the informers' stores. */
export interface ManagedObjectCache {
  /** False until every managed-kind informer has listed once. */
  synced(): boolean;
  /** Managed objects of `kind` labelled with this workspace id. */
  listForWorkspace(kind: KindName, workspaceId: string): KubeObject[];
}

export interface KubernetesStepOptions {
  kube: KubeApi;
  cache?: ManagedObjectCache;
  /** Whether the ConfigMap `namespace/name` still exists (lets a workspace move to a new ConfigMap). */
  sourceExists?: (source: string) => boolean;
  /** Called per repaired object kind when the spec did not change (drift). */
  onDrift?: (kind: string) => void;
}

/**
 * containsDesired, except that quota values compare as quantities (the server canonicalizes them), and a
 * ConfigMap's data must match key for key: users read all of it, so a key nobody wants is drift too.
 */
function inSync(live: KubeObject, desired: KubeObject): boolean {
  if (desired.kind === 'ConfigMap')
    return containsDesired(live, desired) && extraConfigMapKeys(live, desired).length === 0;
  if (desired.kind !== 'ResourceQuota') return containsDesired(live, desired);
  const { spec, ...rest } = desired;
  const want = (spec as { hard?: Record<string, string> }).hard ?? {};
  const have = (live.spec as { hard?: Record<string, string> } | undefined)?.hard ?? {};
  const sameKeys = Object.keys(want).length === Object.keys(have).length;
  return containsDesired(live, rest) && sameKeys && Object.entries(want).every(([k, v]) => sameQuantity(have[k], v));
}

/** `data.K` / `binaryData` entries of a live ConfigMap that the desired one does not have. */
function extraConfigMapKeys(live: KubeObject, desired: KubeObject): string[] {
  const want = (desired.data ?? {}) as Record<string, string>;
  const extra = Object.keys((live.data ?? {}) as Record<string, string>)
    .filter((k) => !Object.hasOwn(want, k))
    .map((k) => `data.${k}`);
  if (Object.keys((live.binaryData ?? {}) as Record<string, string>).length > 0) extra.push('binaryData');
  return extra;
}

const key = (o: { kind: string; metadata: { namespace?: string; name: string } }) =>
  `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

export class KubernetesStep implements WorkspaceStep {
  readonly name = 'kubernetes' as const;

  constructor(private readonly opts: KubernetesStepOptions) {}

  async ensure(ctx: StepContext): Promise<StepOutcome> {
    const w = stepWriter(ctx, this.opts.onDrift);
    return settle(ctx, 'kubernetes', w, () => this.converge(ctx, w), kubeReadError);
  }

  private async converge(ctx: StepContext, w: StepWriter): Promise<StepOutcome> {
    const { cfg } = ctx;
    const roleArn = ctx.outputs.roleArn ?? roleArnFor(cfg, ctx.names.iamRole);
    const desired = desiredKubernetesObjects({ cfg, spec: ctx.spec, names: ctx.names, source: ctx.source, roleArn });
    ctx.outputs.serviceAccountRoleArn = roleArn;
    const live = await this.liveObjects(ctx, ctx.workspaceId);

    // Ownership first: refuse the whole step if any desired name is taken by something not ours.
    // Nothing can exist inside a namespace that does not exist, so a namespace read as absent spares the
    // reads of everything that goes into it (a new workspace: one read instead of one per object).
    const absentNamespaces = new Set<string>();
    for (const obj of desired) {
      const mine = live.get(key(obj));
      if (mine) {
        this.checkClaim(ctx, mine);
        continue;
      }
      if (obj.metadata.namespace && absentNamespaces.has(obj.metadata.namespace)) continue;
      const existing = await this.opts.kube.get(refOf(obj));
      if (!existing) {
        if (obj.kind === 'Namespace') absentNamespaces.add(obj.metadata.name);
        continue;
      }
      const labels = existing.metadata.labels ?? {};
      if (labels[MANAGED_BY_LABEL] !== cfg.fieldManager || labels[WORKSPACE_ID_LABEL] !== ctx.workspaceId) {
        throw new StepError(
          'ForeignObjectConflict',
          `${describeRef(refOf(obj))} already exists and is not managed for workspace ${ctx.workspaceId}; refusing to adopt it`,
          'conflict',
        );
      }
      this.checkClaim(ctx, existing);
      live.set(key(existing), existing);
    }

    for (const obj of desired) {
      const current = live.get(key(obj));
      if (current?.metadata.deletionTimestamp) {
        throw new StepError('Terminating', `${describeRef(refOf(obj))} is being deleted; will retry`, 'retryable');
      }
      if (current && inSync(current, obj)) continue;
      const change: PlannedChange = {
        system: 'kubernetes',
        action: current ? 'update' : 'create',
        target: describeRef(refOf(obj)),
      };
      if (current) {
        const extra = obj.kind === 'ConfigMap' ? extraConfigMapKeys(current, obj) : [];
        change.detail = [...diffPaths(current, obj), ...extra].join(', ');
      }
      await w.write(change, () => this.applyOne(obj), {
        drift: obj.kind,
        dryRun: () => this.opts.kube.apply(obj, { dryRun: true }),
      });
    }

    // Prune after applying, so a changed binding exists before the old one goes (no access gap).
    const wanted = new Set(desired.map(key));
    const stale = [...live.values()].filter((o) => !wanted.has(key(o)));
    await this.deleteAll(stale, w);

    const writes = w.writes;
    return {
      state: 'Ready',
      reason: writes > 0 ? 'Applied' : 'Synced',
      message: writes > 0 ? `applied ${writes} change(s)` : `${desired.length} objects in sync`,
      writes,
      result: {
        namespaces: [...new Set(desired.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name))],
        serviceAccount: ctx.names.serviceAccount,
        contextConfigMap: cfg.names.contextConfigMap,
        roleBindings: desired.filter((o) => o.kind === 'RoleBinding').length,
      },
    };
  }

  async teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    const w = stepWriter(ctx);
    return settle(
      ctx,
      'kubernetes',
      w,
      async () => {
        // Always read live state for deletion: a stale cache must not make us miss or misjudge anything.
        const live = await this.liveObjects({ ...ctx, force: true }, ctx.workspaceId);
        const all = [...live.values()].filter((o) => this.claimedBy(o, ctx.source));
        const namespaces = all.filter((o) => o.kind === 'Namespace');
        const terminating = namespaces.filter((o) => o.metadata.deletionTimestamp);
        const nsNames = new Set(namespaces.map((o) => o.metadata.name));
        // Objects inside namespaces we delete go with them; delete the rest (reverse creation order) first.
        await this.deleteAll(
          all.filter((o) => o.kind !== 'Namespace' && !nsNames.has(o.metadata.namespace ?? '')),
          w,
        );
        await this.deleteAll(
          namespaces.filter((o) => !o.metadata.deletionTimestamp),
          w,
        );
        if (!ctx.dryRun && (w.writes > 0 || terminating.length > 0) && namespaces.length > 0) {
          throw new StepError(
            'NamespacesTerminating',
            `waiting for namespace(s) ${[...nsNames].join(', ')} to finish terminating`,
            'retryable',
          );
        }
        return {
          state: 'Deleted',
          reason: 'Deleted',
          message: 'no managed Kubernetes objects remain',
          writes: w.writes,
        };
      },
      kubeReadError,
    );
  }

  private claimedBy(o: KubeObject, source: string): boolean {
    if (o.kind !== 'Namespace') return true;
    const claim = o.metadata.annotations?.[SOURCE_ANNOTATION];
    return !claim || claim === source || !(this.opts.sourceExists?.(claim) ?? true);
  }

  private checkClaim(ctx: StepContext, obj: KubeObject): void {
    if (obj.kind !== 'Namespace' || this.claimedBy(obj, ctx.source)) return;
    throw new StepError(
      'WorkspaceClaimConflict',
      `namespace ${obj.metadata.name} belongs to workspace ConfigMap ${obj.metadata.annotations?.[SOURCE_ANNOTATION]}`,
      'conflict',
    );
  }

  /** Applies one object; returns the number of writes it took. */
  private async applyOne(obj: KubeObject): Promise<number> {
    try {
      const applied = await this.opts.kube.apply(obj);
      if (obj.kind !== 'ConfigMap') return 1;
      // Apply drops the keys only this field manager set; keys another writer added survive it and are
      // removed by a merge patch (which clears a field whoever owns it).
      const extra = extraConfigMapKeys(applied, obj);
      if (extra.length === 0) return 1;
      const patch: { data: Record<string, null>; binaryData?: null } = { data: {} };
      for (const k of extra) {
        if (k === 'binaryData') patch.binaryData = null;
        else patch.data[k.slice('data.'.length)] = null;
      }
      await this.opts.kube.mergePatch(refOf(obj), patch);
      return 2;
    } catch (err) {
      throw kubeWriteError(err);
    }
  }

  /** Deletes `objects` in reverse creation order (server-side dry run in a plan). */
  private async deleteAll(objects: KubeObject[], w: StepWriter): Promise<void> {
    const order = [...MANAGED_KINDS].reverse();
    const sorted = [...objects].sort((a, b) => order.indexOf(a.kind as KindName) - order.indexOf(b.kind as KindName));
    for (const o of sorted) {
      const ref = refOf(o);
      const uid = o.metadata.uid ? { uid: o.metadata.uid } : {};
      const remove = async (dryRun: boolean) => {
        try {
          return (await this.opts.kube.delete(ref, { dryRun, ...uid })) ? 1 : 0;
        } catch (err) {
          // 409 on a uid precondition: someone recreated it; it will be judged on the next pass.
          if (err instanceof KubeStatusError && err.code === 409) return 0;
          throw kubeWriteError(err, 'Delete');
        }
      };
      await w.write({ system: 'kubernetes', action: 'delete', target: describeRef(ref) }, () => remove(false), {
        dryRun: () => remove(true),
      });
    }
  }

  private async liveObjects(ctx: StepBaseContext, workspaceId: string): Promise<Map<string, KubeObject>> {
    const out = new Map<string, KubeObject>();
    const cache = this.opts.cache;
    const useCache = cache?.synced() && !ctx.force;
    for (const kind of MANAGED_KINDS) {
      const objects =
        useCache && cache
          ? cache.listForWorkspace(kind, workspaceId)
          : await this.opts.kube.list(kind, { labelSelector: workspaceSelector(ctx.cfg, workspaceId) });
      for (const o of objects) out.set(key(o), o);
    }
    // A workspace's namespaced objects live in its own namespaces. Anything else carrying its labels was
    // made by someone else (workspace owners may create ConfigMaps, labels included) and is not ours to
    // judge, prune or delete.
    const namespaces = new Set([...out.values()].filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name));
    for (const [k, o] of out) {
      if (o.metadata.namespace && !namespaces.has(o.metadata.namespace)) out.delete(k);
    }
    return out;
  }
}

/**
 * A refused read (GET, LIST; writes are classified by kubeWriteError where they are made) is always worth
 * retrying: RBAC may be granted, the server recovers, an expired LIST restarts.
 */
export function kubeReadError(err: unknown): unknown {
  if (!(err instanceof KubeStatusError)) return err;
  return new StepError(err.code === 403 ? 'Forbidden' : 'ReadFailed', err.message, 'retryable', {
    code: `HTTP${err.code}`,
  });
}

/**
 * The class of a failed apply or delete, by HTTP status: conflicts (409), throttling (429), server errors and
 * Forbidden (RBAC may be granted, a terminating namespace goes away) are retried; Invalid (422) and
 * other refusals wait for a change. The Kubernetes client's own error carries no class.
 */
export function kubeWriteError(err: unknown, verb: 'Apply' | 'Delete' = 'Apply'): unknown {
  if (!(err instanceof KubeStatusError)) return err;
  const terminating = err.code === 403 && /being terminated/.test(err.message);
  const reason = terminating
    ? 'Terminating'
    : err.code === 403
      ? 'Forbidden'
      : err.code === 422
        ? 'Invalid'
        : `${verb}Failed`;
  const retryable = err.code === 409 || err.code === 429 || err.code >= 500 || err.code === 403;
  return new StepError(reason, err.message, retryable ? 'retryable' : 'terminal', { code: `HTTP${err.code}` });
}
