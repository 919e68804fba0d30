// What every step shares: the one way to write (StepWriter), the one place a step's failure becomes its
// outcome (settle), and the one "converged within a TTL" cache (ConvergedCache).
import type { StepName } from '../../kinds/step.js';
import {
  errorOutcome,
  type PlannedChange,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepOutcome,
} from '../types.js';

export interface WriteOptions {
  /** Drift-metric kind this write repairs when the spec did not change (none: not counted as drift). */
  drift?: string;
  /** In a dry run, make this call instead (a server-side dry run); without it a dry run makes no call. */
  dryRun?: () => Promise<unknown>;
}

/** A step's writes in one reconcile. */
export interface StepWriter {
  /** Writes made so far; a failure half-way reports them too. */
  readonly writes: number;
  /**
   * Records `change` for the plan and, unless this is a dry run, makes `call` and counts what it wrote:
   * the number it resolves to (0: nothing to do after all, e.g. already gone), else one write.
   */
  write(change: PlannedChange, call: () => Promise<unknown>, o?: WriteOptions): Promise<void>;
}

/** A StepWriter over the context's change record; `onDrift` hears of writes that repaired drift. */
export function stepWriter(
  ctx: Pick<StepBaseContext, 'dryRun' | 'changes'> & { specUnchanged?: boolean },
  onDrift?: (kind: string) => void,
): StepWriter {
  let writes = 0;
  return {
    get writes() {
      return writes;
    },
    async write(change, call, o = {}) {
      ctx.changes.push(change);
      if (ctx.dryRun) {
        await o.dryRun?.();
        return;
      }
      const made = await call();
      writes += typeof made === 'number' ? made : 1;
      if (o.drift !== undefined && ctx.specUnchanged) onDrift?.(o.drift);
    },
  };
}

/**
 * Runs a step's body; a failure it raises becomes the step's outcome here and nowhere else, with the
 * writes made before it. `classify` maps the system's own errors to a StepError first; what stays
 * unclassified is a defect, logged, and retried.
 */
export async function settle(
  ctx: Pick<StepBaseContext, 'log'>,
  step: StepName,
  w: StepWriter,
  body: () => Promise<StepOutcome>,
  classify: (err: unknown) => unknown = (err) => err,
): Promise<StepOutcome> {
  try {
    return await body();
  } catch (raw) {
    const err = classify(raw);
    if (!(err instanceof StepError)) ctx.log.error({ err, step }, 'step failed unexpectedly');
    return { ...errorOutcome(err), writes: w.writes };
  }
}

/**
 * Whether the previous status records `step` as Ready for exactly this desired state (`desiredHash` in
 * its details). After a restart the in-memory converged records are empty; trusting what was recorded,
 * and re-reading at a random point within one drift-check interval, spreads a restart's re-reads of
 * thousands of workspaces over that interval instead of spending the whole request budget at once. A
 * rerun (force) or a plan always reads.
 */
export function recordedAsConverged(ctx: StepContext, step: StepName, desiredHash: string): boolean {
  if (ctx.force || ctx.dryRun) return false;
  const s = ctx.previous?.steps[step];
  return s?.state === 'Ready' && s.details?.desiredHash === desiredHash;
}

/** A verification time that makes the next check fall uniformly within the next `intervalMs`. */
export function spreadVerifiedAt(now: number, intervalMs: number, random: () => number = Math.random): number {
  return now - random() * intervalMs;
}

/** How long a converged workspace is trusted without reading the system: fixed, or asked each time. */
export type VerifiedTtl = number | (() => number);

export function verifiedTtlMs(ttl: VerifiedTtl | undefined, fallbackMs: number): number {
  return typeof ttl === 'function' ? ttl() : (ttl ?? fallbackMs);
}

interface ConvergedEntry<T> {
  hash: string;
  value: T;
  verifiedAt: number;
}

/**
 * Per workspace: the desired-state hash a step last verified the system against, what it found then
 * (`value`, e.g. the role ARN), and when. While the hash is unchanged and the entry is younger than the
 * TTL, the step answers from here without calling the system; a rerun, a plan, a changed hash, an
 * expired entry, a failure and a teardown bypass or drop it, so drift is found within one TTL. Memory
 * only: after a restart a status recording this desired state as Ready stands in for the entry, with
 * its verification time spread over one TTL (recordedAsConverged, spreadVerifiedAt).
 */
export class ConvergedCache<T = true> {
  private readonly entries = new Map<string, ConvergedEntry<T>>();
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(
    private readonly step: StepName,
    o: { now?: () => number; random?: () => number } = {},
  ) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
  }

  /**
   * What the step may answer without reading the system: the verified value, or `recorded` (what status
   * says, when it records this desired state as Ready and this process has no entry yet). Undefined:
   * read the system; the entry is dropped until `verified` records a new one.
   */
  lookup(
    ctx: StepContext,
    hash: string,
    ttlMs: number,
    recorded?: T,
  ): { value: T; from: 'verified' | 'recorded' } | undefined {
    const entry = this.entries.get(ctx.workspaceId);
    if (!ctx.force && !ctx.dryRun && entry?.hash === hash && this.now() - entry.verifiedAt < ttlMs) {
      return { value: entry.value, from: 'verified' };
    }
    if (!entry && ttlMs > 0 && recorded !== undefined && recordedAsConverged(ctx, this.step, hash)) {
      const verifiedAt = spreadVerifiedAt(this.now(), ttlMs, this.random);
      this.entries.set(ctx.workspaceId, { hash, value: recorded, verifiedAt });
      return { value: recorded, from: 'recorded' };
    }
    this.entries.delete(ctx.workspaceId);
    return undefined;
  }

  /** The system was read and found (or made) converged to `hash` just now. */
  verified(workspaceId: string, hash: string, value: T): void {
    this.entries.set(workspaceId, { hash, value, verifiedAt: this.now() });
  }

  /** Forgets one workspace (or all): its next ensure reads the system. */
  forget(workspaceId?: string): void {
    if (workspaceId === undefined) this.entries.clear();
    else this.entries.delete(workspaceId);
  }
}
