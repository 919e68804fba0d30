// Counts calls an adapter makes to its external system, split into reads and writes, so tests and the
// benchmark can assert "a no-op reconcile writes nothing" and metrics can report per-operation outcomes.
import type { SystemName } from '../kinds/step.js';
import type { Metrics } from '../metrics/metrics.js';

/** A write refused because this process may not write any more (e.g. it no longer holds the leader Lease). */
export class WriteFencedError extends Error {
  override name = 'WriteFencedError';
}

export class CallStats {
  reads = 0;
  writes = 0;
  readonly byOperation = new Map<string, number>();

  /**
   * @param mayWrite checked before every write: when it says no, the write is not sent (WriteFencedError).
   *   The daemon passes "still the leader by my own clock", so a leader that was frozen (GC pause, SIGSTOP,
   *   a stalled VM) past its lease cannot act on its way out while another process already leads.
   */
  constructor(
    readonly system: SystemName,
    private readonly metrics?: Metrics,
    private readonly mayWrite?: () => boolean,
  ) {}

  /** Times `fn` and records it as `operation`; `write` decides which counter it lands in. */
  async track<T>(operation: string, write: boolean, fn: () => Promise<T>): Promise<T> {
    if (write && this.mayWrite && !this.mayWrite()) {
      throw new WriteFencedError(`${this.system} ${operation} refused: this process may not write (not the leader)`);
    }
    const start = performance.now();
    let outcome = 'success';
    try {
      return await fn();
    } catch (err) {
      outcome = classifyOutcome(err);
      throw err;
    } finally {
      if (write) this.writes++;
      else this.reads++;
      this.byOperation.set(operation, (this.byOperation.get(operation) ?? 0) + 1);
      this.metrics?.externalRequests.inc({ system: this.system, operation, access: write ? 'write' : 'read', outcome });
      this.metrics?.externalRequestDuration.observe(
        { system: this.system, operation },
        (performance.now() - start) / 1000,
      );
    }
  }

  snapshot(): { reads: number; writes: number; byOperation: Record<string, number> } {
    return { reads: this.reads, writes: this.writes, byOperation: Object.fromEntries(this.byOperation) };
  }

  reset(): void {
    this.reads = 0;
    this.writes = 0;
    this.byOperation.clear();
  }
}

/** Bounded outcome label: error class names or codes, never messages. */
function classifyOutcome(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; name?: unknown; statusCode?: unknown };
    if (typeof e.code === 'number') return `http_${e.code}`;
    if (typeof e.statusCode === 'number') return `http_${e.statusCode}`;
    if (typeof e.name === 'string' && /^[A-Za-z]{1,40}$/.test(e.name)) return e.name;
  }
  return 'error';
}
