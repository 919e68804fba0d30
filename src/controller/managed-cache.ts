// Index of managed objects by workspace id, fed by the managed-object watches. Lets the Kubernetes step
// compare desired with live state without a single API read in steady state.

import type { KindName, KubeObject } from '../adapters/kubernetes.js';
import { WORKSPACE_ID_LABEL } from '../config/config.js';
import type { ManagedObjectCache } from '../reconcile/steps/kubernetes.js';

const objectKey = (o: KubeObject) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

export class ManagedObjectIndex implements ManagedObjectCache {
  private readonly byKind = new Map<KindName, Map<string, Map<string, KubeObject>>>();
  private readonly syncedKinds = new Set<KindName>();

  constructor(private readonly kinds: readonly KindName[]) {}

  markSynced(kind: KindName): void {
    this.syncedKinds.add(kind);
  }

  /** Watches were restarted from scratch (e.g. lost leadership): stop trusting the cache until relisted. */
  markUnsynced(): void {
    this.syncedKinds.clear();
  }

  synced(): boolean {
    return this.kinds.every((k) => this.syncedKinds.has(k));
  }

  upsert(kind: KindName, obj: KubeObject, old?: KubeObject): void {
    const withKind = { ...obj, kind, apiVersion: obj.apiVersion };
    if (old) this.remove(kind, old);
    const id = obj.metadata.labels?.[WORKSPACE_ID_LABEL];
    if (!id) return;
    let perKind = this.byKind.get(kind);
    if (!perKind) {
      perKind = new Map();
      this.byKind.set(kind, perKind);
    }
    let perWs = perKind.get(id);
    if (!perWs) {
      perWs = new Map();
      perKind.set(id, perWs);
    }
    perWs.set(objectKey(obj), withKind);
  }

  remove(kind: KindName, obj: KubeObject): void {
    const id = obj.metadata.labels?.[WORKSPACE_ID_LABEL];
    if (!id) return;
    const perWs = this.byKind.get(kind)?.get(id);
    perWs?.delete(objectKey(obj));
    if (perWs?.size === 0) this.byKind.get(kind)?.delete(id);
  }

  listForWorkspace(kind: KindName, workspaceId: string): KubeObject[] {
    return [...(this.byKind.get(kind)?.get(workspaceId)?.values() ?? [])];
  }

  /** Workspace ids that own at least one managed object (for the orphan sweep). */
  workspaceIds(): Set<string> {
    const ids = new Set<string>();
    for (const perKind of this.byKind.values()) for (const id of perKind.keys()) ids.add(id);
    return ids;
  }
}
