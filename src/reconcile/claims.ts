// Which workspace ConfigMap owns a workspace id. Two ConfigMaps may claim the same id (a copy-paste, a
// migration); exactly one wins, deterministically, and the others are reported as conflicts.

import type { KubeObject } from '../adapters/kubernetes.js';
import { STATUS_ANNOTATION } from '../config/config.js';
import { parseStrictJson } from '../spec/json.js';
import { type WorkspaceDocument, workspaceDocument } from '../spec/workspace.js';
import { parseStatus } from './status.js';

export interface SourceLookup {
  get(key: string): KubeObject | undefined;
}

/** The workspace id of a document that validates, undefined for a missing or invalid one. */
export type ValidWorkspaceId = (raw: WorkspaceDocument) => string | undefined;

export class ClaimIndex {
  private readonly byWorkspace = new Map<string, Set<string>>();
  private readonly byKey = new Map<string, string>();

  constructor(
    private readonly sources: SourceLookup,
    private readonly dataKey: string,
    private readonly validId?: ValidWorkspaceId,
  ) {}

  /** Records the workspace id a ConfigMap claims (from its document, or its last good status). */
  update(key: string, obj: KubeObject): void {
    const id = claimedWorkspaceId(obj, this.dataKey, this.validId);
    const prev = this.byKey.get(key);
    if (prev === id) return;
    if (prev !== undefined) this.removeFrom(prev, key);
    if (id === undefined) {
      this.byKey.delete(key);
      return;
    }
    this.byKey.set(key, id);
    let set = this.byWorkspace.get(id);
    if (!set) {
      set = new Set();
      this.byWorkspace.set(id, set);
    }
    set.add(key);
  }

  remove(key: string): void {
    const prev = this.byKey.get(key);
    if (prev !== undefined) this.removeFrom(prev, key);
    this.byKey.delete(key);
  }

  /** ConfigMap keys claiming `workspaceId`, winner first: current owner, then oldest, then by name. */
  claimants(workspaceId: string): string[] {
    const keys = [...(this.byWorkspace.get(workspaceId) ?? [])];
    const rank = (k: string) => {
      const o = this.sources.get(k);
      const owner = parseStatus(o?.metadata.annotations?.[STATUS_ANNOTATION])?.owner === true ? 0 : 1;
      return { owner, created: o?.metadata.creationTimestamp ?? '9999', k };
    };
    return keys
      .map(rank)
      .sort((a, b) => a.owner - b.owner || a.created.localeCompare(b.created) || a.k.localeCompare(b.k))
      .map((r) => r.k);
  }

  workspaceIds(): string[] {
    return [...this.byWorkspace.keys()];
  }

  /** How many workspaces are claimed (without building the list). */
  workspaceCount(): number {
    return this.byWorkspace.size;
  }

  workspaceOf(key: string): string | undefined {
    return this.byKey.get(key);
  }

  private removeFrom(id: string, key: string): void {
    const set = this.byWorkspace.get(id);
    set?.delete(key);
    if (set?.size === 0) this.byWorkspace.delete(id);
  }
}

/**
 * The workspace id a ConfigMap claims. With `validId`: a ConfigMap that owns a workspace (status) claims it
 * whatever its document says now, since a provisioned workspace's id cannot change; otherwise only a
 * document that validates can claim an id, and a broken one keeps the claim of the last good version. So a
 * bad edit naming another id (or a typo) neither releases the workspace to another ConfigMap nor makes it
 * look orphaned, and an invalid new ConfigMap, which can never provision, blocks nobody. Without `validId`
 * (callers that have no configuration), a cheap extraction of any well-formed id.
 */
export function claimedWorkspaceId(obj: KubeObject, dataKey: string, validId?: ValidWorkspaceId): string | undefined {
  const raw = workspaceDocument(obj, dataKey);
  if (validId) {
    const status = parseStatus(obj.metadata.annotations?.[STATUS_ANNOTATION]);
    // An owner's workspace id cannot change (the reconciler refuses a new one), so its claim stays put.
    if (status?.owner && status.workspaceId) return status.workspaceId;
    return validId(raw) ?? status?.workspaceId;
  }
  // Strict even here: a document with two workspace_id keys claims neither. A broken document falls back
  // to what the last good version claimed.
  if (typeof raw === 'string' && raw.length < 2 * 1024 * 1024) {
    const parsed = parseStrictJson(raw, { maxDepth: 32 });
    const id = parsed.ok ? (parsed.value as { workspace_id?: unknown } | null)?.workspace_id : undefined;
    if (typeof id === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(id)) return id;
  }
  return parseStatus(obj.metadata.annotations?.[STATUS_ANNOTATION])?.workspaceId;
}
