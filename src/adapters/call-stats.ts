// Counts calls an adapter makes to its external system, split into reads and writes, so tests and the
// benchmark can assert "a no-op reconcile writes nothing" and metrics can report per-operation outcomes.
import { Code, ConnectError } from '@connectrpc/connect';
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
    const grpc = GRPC_SYSTEMS.has(this.system);
    let outcome = grpc ? GRPC_OK : HTTP_SUCCESS;
    try {
      return await fn();
    } catch (err) {
      outcome = grpc ? grpcOutcome(err) : classifyOutcome(err);
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

/** Systems spoken to over gRPC: their outcome label is the gRPC status code name. */
const GRPC_SYSTEMS: ReadonlySet<SystemName> = new Set(['flyte']);
const GRPC_OK = 'ok';
const HTTP_SUCCESS = 'success';

/** True for the outcome label of a call that succeeded, whatever the protocol. */
export function isSuccessOutcome(outcome: string | undefined): boolean {
  return outcome === GRPC_OK || outcome === HTTP_SUCCESS;
}

// The gRPC status code names (grpc/doc/statuscodes.md), lower-case: stable across client libraries,
// unlike connect's enum names (which spell CANCELLED as Canceled).
const GRPC_CODE_NAMES: Record<Code, string> = {
  [Code.Canceled]: 'cancelled',
  [Code.Unknown]: 'unknown',
  [Code.InvalidArgument]: 'invalid_argument',
  [Code.DeadlineExceeded]: 'deadline_exceeded',
  [Code.NotFound]: 'not_found',
  [Code.AlreadyExists]: 'already_exists',
  [Code.PermissionDenied]: 'permission_denied',
  [Code.ResourceExhausted]: 'resource_exhausted',
  [Code.FailedPrecondition]: 'failed_precondition',
  [Code.Aborted]: 'aborted',
  [Code.OutOfRange]: 'out_of_range',
  [Code.Unimplemented]: 'unimplemented',
  [Code.Internal]: 'internal',
  [Code.Unavailable]: 'unavailable',
  [Code.DataLoss]: 'data_loss',
  [Code.Unauthenticated]: 'unauthenticated',
};

/** gRPC outcome label: the status code name of the error (anything else counts as unknown, as in gRPC). */
export function grpcOutcome(err: unknown): string {
  return GRPC_CODE_NAMES[ConnectError.from(err).code] ?? 'unknown';
}

/** Bounded outcome label for HTTP systems: `http_<status>`, else the error class name, never messages. */
function classifyOutcome(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; name?: unknown; statusCode?: unknown };
    if (typeof e.code === 'number') return `http_${e.code}`;
    if (typeof e.statusCode === 'number') return `http_${e.statusCode}`;
    if (typeof e.name === 'string' && /^[A-Za-z]{1,40}$/.test(e.name)) return e.name;
  }
  return 'error';
}
