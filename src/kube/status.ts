// The one error for a Kubernetes API answer that is not a success: a metav1.Status (code, reason, message,
// details), as client-go's StatusError. Every call through src/kube throws it, whatever the verb.

export interface StatusCause {
  reason?: string;
  field?: string;
  message?: string;
}

/** metav1.StatusDetails: which object the answer is about, and the field-level causes of an Invalid. */
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** A failed API call: the HTTP code, the Status `reason` (NotFound, Conflict, Forbidden, Expired, …). */
export class KubeStatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details: StatusDetails = {},
  ) {
    super(message);
    this.name = 'KubeStatusError';
  }

  /** Field-level causes (details.causes), e.g. of a 422 Invalid. */
  get causes(): StatusCause[] {
    return this.details.causes ?? [];
  }
}

/** The parts of a metav1.Status the client reads. */
export interface StatusBody {
  code?: number;
  reason?: string;
  message?: string;
  details?: StatusDetails;
}

/** The metav1.Status of an error answer, or {} for a body that is not one (a proxy's error page). */
export function statusBodyOf(text: string): StatusBody {
  try {
    const parsed = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? parsed : {};
  } catch {
    return {};
  }
}

/**
 * The error for a non-2xx answer to `what` (e.g. `GET /api/v1/namespaces/x`): the Status body's reason
 * and message when there is one, else the start of the body.
 */
export function statusErrorOf(code: number, body: string, what: string): KubeStatusError {
  const status = statusBodyOf(body);
  return new KubeStatusError(
    code,
    status.reason ?? `HTTP${code}`,
    `${what}: ${code} ${status.message ?? body.slice(0, 200)}`,
    status.details ?? {},
  );
}

/** The error an in-stream watch ERROR event (a Status object) stands for. */
export function statusErrorOfEvent(status: StatusBody, what: string): KubeStatusError {
  const code = status.code ?? 0;
  return new KubeStatusError(
    code,
    status.reason ?? 'Unknown',
    `${what}: ${code} ${status.message ?? 'ERROR event'}`,
    status.details ?? {},
  );
}

/** 410 Gone / reason Expired: a resourceVersion or continue token too old for the server; relist. */
export function isExpired(err: unknown): boolean {
  return err instanceof KubeStatusError && (err.code === 410 || err.reason === 'Expired' || err.reason === 'Gone');
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeStatusError && err.code === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof KubeStatusError && err.code === 409;
}
