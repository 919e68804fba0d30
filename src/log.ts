// The process's one pino root logger: JSON lines on stdout, ISO timestamps, `level` as a label, a fixed
// `service` field, and credentials redacted wherever they appear in the first three levels of a log
// object (pino's redaction takes explicit paths; `*` stands for exactly one key).
import { randomUUID } from 'node:crypto';
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export const SERVICE_NAME = 'flyte-workspace-controller';
export const REDACTED = '[REDACTED]';

/** Keys whose values are credentials, redacted at the top level, one and two levels down. */
export const SENSITIVE_KEYS = [
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'idToken',
  'id_token',
  'bearerToken',
  'sessionToken',
  'SessionToken',
  'secret',
  'secrets',
  'secretKey',
  'secretAccessKey',
  'SecretAccessKey',
  'clientSecret',
  'client_secret',
  'password',
  'passwd',
  'apiKey',
  'api_key',
  'privateKey',
  'clientKeyData',
  'keyData',
  'authorization',
  'Authorization',
  'cookie',
] as const;

function keyPath(prefix: string, key: string): string {
  const part = /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `["${key}"]`;
  return prefix ? `${prefix}${part}` : part.replace(/^\./, '');
}

/** The pino redact paths: every sensitive key at depth 0–2, plus HTTP header spellings. */
export const REDACT_PATHS: string[] = [
  ...SENSITIVE_KEYS.flatMap((k) => [keyPath('', k), keyPath('*', k), keyPath('*.*', k)]),
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
  '*.headers["proxy-authorization"]',
  'headers["proxy-authorization"]',
];

export interface CreateLoggerOptions {
  /** pino level: trace, debug, info, warn, error, fatal, silent. Default 'info'. */
  level?: string;
  /** Where lines go; default stdout (synchronous writes, so nothing is lost on exit). */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Extra fields on every line, merged with `service`. */
  base?: Record<string, unknown>;
}

export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: SERVICE_NAME, ...opts.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
  };
  const dest = opts.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(options, dest as DestinationStream);
}

export interface ReconcileLogFields {
  controller: string;
  namespace: string;
  name: string;
  workspace?: string;
  /** Default: a new random UUID, as controller-runtime does per reconcile. */
  reconcileID?: string;
}

/** Child logger for one reconcile of one key; every line carries these bindings. */
export function reconcileLogger(root: Logger, fields: ReconcileLogFields): Logger {
  const bindings: Record<string, string> = {
    controller: fields.controller,
    namespace: fields.namespace,
    name: fields.name,
    reconcileID: fields.reconcileID ?? randomUUID(),
  };
  if (fields.workspace !== undefined) bindings.workspace = fields.workspace;
  return root.child(bindings);
}

/** Flushes buffered log lines (a no-op for synchronous destinations); never rejects, bounded by timeoutMs. */
export function flushLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    try {
      logger.flush((err) => {
        clearTimeout(timer);
        if (err) process.stderr.write(`log flush failed: ${err.message}\n`);
        resolve();
      });
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}
