// Whether this process can reach kube-apiserver, and in words a person can act on when it cannot.
//
// Every Kubernetes call (REST, LIST/WATCH, the Lease) reports its outcome here, keyed by server URL, so that
// /readyz can say "never reached https://10.0.0.1:443: connection refused" instead of answering 200 while
// the log repeats "fetch failed". One tracker per server per process, like client-go's global metrics
// adapters: the callers are built in many places from one kubeconfig, and all must feed the same record.

/** A failure reduced to what an operator checks first: the network path, DNS, TLS, or the credentials. */
export interface ContactFailure {
  /** Short machine-readable class: connection-refused, dns, tls, timeout, unauthorized, forbidden, ... */
  cause: string;
  /** One sentence naming the server and the cause, with the underlying error code. */
  message: string;
}

const NETWORK_CAUSES: Record<string, [cause: string, words: string]> = {
  ECONNREFUSED: ['connection-refused', 'connection refused'],
  ECONNRESET: ['connection-reset', 'connection reset by peer'],
  EHOSTUNREACH: ['unreachable', 'host unreachable'],
  ENETUNREACH: ['unreachable', 'network unreachable'],
  EPIPE: ['connection-reset', 'connection closed'],
  ETIMEDOUT: ['timeout', 'connection timed out'],
  ENOTFOUND: ['dns', 'host name not found (DNS)'],
  EAI_AGAIN: ['dns', 'DNS lookup failed temporarily'],
  UND_ERR_CONNECT_TIMEOUT: ['timeout', 'connection timed out'],
  UND_ERR_HEADERS_TIMEOUT: ['timeout', 'no response headers in time'],
  UND_ERR_BODY_TIMEOUT: ['timeout', 'response body stalled'],
  UND_ERR_SOCKET: ['connection-reset', 'socket closed by the server'],
  UND_ERR_ABORTED: ['timeout', 'request aborted'],
  ERR_TLS_CERT_ALTNAME_INVALID: ['tls', 'TLS: the server certificate does not name this host'],
  CERT_HAS_EXPIRED: ['tls', 'TLS: the server certificate has expired'],
  DEPTH_ZERO_SELF_SIGNED_CERT: ['tls', 'TLS: self-signed server certificate not trusted (check the CA)'],
  SELF_SIGNED_CERT_IN_CHAIN: ['tls', 'TLS: self-signed certificate in the chain not trusted (check the CA)'],
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: ['tls', 'TLS: server certificate not signed by a trusted CA (check the CA)'],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: ['tls', 'TLS: issuer of the server certificate not trusted (check the CA)'],
  EPROTO: ['tls', 'TLS handshake failed (is the server speaking TLS on this port?)'],
  ERR_SSL_WRONG_VERSION_NUMBER: ['tls', 'TLS handshake failed (is the server speaking TLS on this port?)'],
};

const HTTP_CAUSES: Record<number, [cause: string, words: string]> = {
  401: ['unauthorized', '401 Unauthorized: the credentials were rejected (expired or invalid token/certificate)'],
  403: ['forbidden', '403 Forbidden'],
};

/** The error codes in `err` and its `cause` chain (fetch wraps the socket error as `cause`). */
function codesOf(err: unknown): { codes: string[]; innermost: string } {
  const codes: string[] = [];
  let innermost = '';
  let e: unknown = err;
  for (let depth = 0; e && typeof e === 'object' && depth < 8; depth++) {
    const rec = e as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof rec.code === 'string') codes.push(rec.code);
    if (typeof rec.name === 'string' && (rec.name === 'TimeoutError' || rec.name === 'AbortError'))
      codes.push(rec.name);
    if (typeof rec.message === 'string' && rec.message) innermost = rec.message;
    // AggregateError from happy-eyeballs connects: take the first attempt's code.
    if (Array.isArray(rec.errors) && rec.errors.length > 0 && !rec.cause) e = rec.errors[0];
    else e = rec.cause;
  }
  return { codes, innermost };
}

/** An HTTP status carried by a KubeStatusError (or any error with a numeric `code`, like client-node's). */
function httpStatusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
}

/**
 * Describes why a call to `server` failed, or undefined when the failure is an ordinary API answer (404,
 * 409, 422, ...) that says the server was reached. 401/403 count: the server is reachable but refuses us.
 */
export function describeContactFailure(server: string, err: unknown): ContactFailure | undefined {
  const status = httpStatusOf(err);
  if (status !== undefined) {
    const known = HTTP_CAUSES[status];
    if (!known) return status >= 500 ? { cause: `http-${status}`, message: `${server} answered ${status}` } : undefined;
    return { cause: known[0], message: `the Kubernetes API server ${server} answered ${known[1]}` };
  }
  const { codes, innermost } = codesOf(err);
  for (const code of codes) {
    const known = NETWORK_CAUSES[code];
    if (known)
      return { cause: known[0], message: `cannot reach the Kubernetes API server ${server}: ${known[1]} (${code})` };
    if (code === 'TimeoutError' || code === 'AbortError') {
      return { cause: 'timeout', message: `cannot reach the Kubernetes API server ${server}: no answer in time` };
    }
  }
  const detail = innermost || String(err);
  return { cause: 'unknown', message: `cannot reach the Kubernetes API server ${server}: ${detail}` };
}

/** `failing`: the first failure after a success (or at start); `restored`: the first success after failures. */
export type ContactEvent = 'failing' | 'restored';

export interface ContactSnapshot {
  server: string;
  /** performance.now() of the last call that reached the server; undefined if none has yet. */
  lastSuccessAt: number | undefined;
  /** The last failure since the last success, if any. */
  failure: (ContactFailure & { at: number; since: number }) | undefined;
}

/** The record of one server: the last success and the failures since. */
export class ApiServerContact {
  private lastSuccessAt: number | undefined;
  private failure: (ContactFailure & { at: number; since: number }) | undefined;
  private readonly listeners = new Set<(event: ContactEvent, s: ContactSnapshot) => void>();

  constructor(
    readonly server: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  succeeded(): void {
    const wasFailing = this.failure !== undefined;
    this.lastSuccessAt = this.now();
    this.failure = undefined;
    if (wasFailing) this.emit('restored');
  }

  /** Records `err` if it means the server was not reached (or refused our credentials); returns it. */
  failed(err: unknown): ContactFailure | undefined {
    const described = describeContactFailure(this.server, err);
    if (!described) {
      this.succeeded();
      return undefined;
    }
    const at = this.now();
    const first = this.failure === undefined;
    this.failure = { ...described, at, since: this.failure?.since ?? at };
    if (first) this.emit('failing');
    return described;
  }

  snapshot(): ContactSnapshot {
    return { server: this.server, lastSuccessAt: this.lastSuccessAt, failure: this.failure };
  }

  /**
   * A readiness verdict: true while the server was reached at least once and has not been failing for
   * longer than `toleranceMs` (the renew deadline: beyond it a leader has lost its lease anyway), else the
   * reason.
   */
  readiness(toleranceMs: number): true | string {
    if (this.lastSuccessAt === undefined) {
      return this.failure
        ? `never reached: ${this.failure.message}`
        : `not contacted the Kubernetes API server ${this.server} yet`;
    }
    if (!this.failure) return true;
    const failingMs = this.now() - this.failure.since;
    if (failingMs <= toleranceMs) return true;
    return `lost for ${Math.round(failingMs / 1000)}s: ${this.failure.message}`;
  }

  onChange(listener: (event: ContactEvent, s: ContactSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: ContactEvent): void {
    const s = this.snapshot();
    for (const l of this.listeners) l(event, s);
  }
}

const trackers = new Map<string, ApiServerContact>();

/** The process-wide record for `server` (trailing slashes ignored). */
export function apiServerContact(server: string): ApiServerContact {
  const key = server.replace(/\/+$/, '');
  let t = trackers.get(key);
  if (!t) {
    t = new ApiServerContact(key);
    trackers.set(key, t);
  }
  return t;
}

/**
 * Runs `call`, recording whether it reached `contact`'s server; rethrows the call's error unchanged. A call
 * aborted through the caller's own `signal` (shutdown, a watch being stopped) says nothing either way.
 */
export async function trackContact<T>(
  contact: ApiServerContact,
  call: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  try {
    const out = await call();
    contact.succeeded();
    return out;
  } catch (err) {
    if (!signal?.aborted) contact.failed(err);
    throw err;
  }
}
