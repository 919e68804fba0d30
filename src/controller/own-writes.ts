// The resourceVersions the controller's own writes produced, per object. A watch event that only echoes
// such a write carries one of them; the reconcile that wrote it already accounted for it, so the echo need
// not queue the workspace again. Anything else (another writer, a missed echo, a relist) carries another
// resourceVersion and counts as a change, so this can only save work, never hide a change. Deletes are
// matched by uid: the DELETED event of the incarnation we removed is ours, a recreated object's is not.
import type { KubeObject } from '../adapters/kubernetes.js';

const keyOf = (kind: string, obj: KubeObject) => `${kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;

/** Writes of one object whose echoes may still be on their way (a reconcile writes its ConfigMap twice). */
const MAX_PENDING_PER_OBJECT = 4;

export class OwnWrites {
  private readonly written = new Map<string, string[]>();
  /** Objects our deletes removed at once → the uid they had (their DELETED event is an echo). */
  private readonly deleted = new Map<string, string>();

  constructor(private readonly kinds: ReadonlySet<string>) {}

  /** Remembers the object a write returned (kinds that are not watched are ignored: no echo will come). */
  record(obj: KubeObject): void {
    const rv = obj.metadata?.resourceVersion;
    if (!rv || !this.kinds.has(obj.kind)) return;
    const key = keyOf(obj.kind, obj);
    const rvs = this.written.get(key);
    if (!rvs) this.written.set(key, [rv]);
    else if (rvs[rvs.length - 1] !== rv) {
      rvs.push(rv);
      if (rvs.length > MAX_PENDING_PER_OBJECT) rvs.shift();
    }
  }

  /**
   * Whether this watch event (taken in arrival order) echoes one of our writes of the object. An echo
   * consumes its write and the older ones (their echoes can no longer come); any other event drops the
   * object's entry. Every event of a known object thus shrinks the map.
   */
  isEcho(kind: string, obj: KubeObject): boolean {
    const key = keyOf(kind, obj);
    const rvs = this.written.get(key);
    if (!rvs) return false;
    const at = rvs.indexOf(obj.metadata.resourceVersion ?? '');
    if (at < 0 || at === rvs.length - 1) this.written.delete(key);
    else rvs.splice(0, at + 1);
    return at >= 0;
  }

  /** Remembers that a delete removed this incarnation (uid) of the object. */
  recordDeleted(kind: string, ref: { namespace?: string; name: string }, uid: string): void {
    if (this.kinds.has(kind)) this.deleted.set(keyOf(kind, { metadata: ref } as KubeObject), uid);
  }

  /**
   * Whether a DELETED event is the echo of our delete of that very incarnation. Either way the object is
   * gone, so everything remembered about it is dropped.
   */
  isDeleteEcho(kind: string, obj: KubeObject): boolean {
    const key = keyOf(kind, obj);
    const uid = this.deleted.get(key);
    this.deleted.delete(key);
    this.written.delete(key);
    return uid !== undefined && uid === obj.metadata.uid;
  }

  forget(kind: string, obj: KubeObject): void {
    const key = keyOf(kind, obj);
    this.written.delete(key);
    this.deleted.delete(key);
  }

  get size(): number {
    return this.written.size + this.deleted.size;
  }
}
