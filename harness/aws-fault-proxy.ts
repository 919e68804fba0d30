// A tiny HTTP proxy in front of moto for fault injection: it counts requests per AWS Query-protocol
// Action (IAM: POST form body `Action=GetRole&…`) and can answer the next N requests (optionally only
// those of one Action) with an AWS error instead of forwarding them.
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultKind = 'Throttling' | 'ServiceUnavailable' | 'MalformedPolicyDocument' | 'LimitExceeded';

export interface Fault {
  /** A known kind, or any AWS error code with its HTTP status. */
  error: FaultKind | { code: string; status: number; type?: 'Sender' | 'Receiver'; message?: string };
  /** How many matching requests get the error. Default 1. */
  times?: number;
  /** Only requests of this Action (e.g. PutRolePolicy); default any. */
  action?: string;
}

export interface FaultProxy {
  /** http://127.0.0.1:<port>, to use as the AWS endpoint. */
  endpoint: string;
  inject(fault: Fault): void;
  /** Drops pending faults. */
  clearFaults(): void;
  /** Requests seen per Action (forwarded and failed alike), since the last resetCounts(). */
  counts(): Record<string, number>;
  /** Requests seen for one Action. */
  count(action: string): number;
  /** Requests answered with an injected error, per Action. */
  injectedCounts(): Record<string, number>;
  /** Requests per Action among those the step names as writes (anything but Get/List). */
  writeCounts(): Record<string, number>;
  total(): number;
  /** Every request in arrival order (action and the RoleName it names, if any), bounded to the last 100,000. */
  requests(): readonly ProxiedRequest[];
  resetCounts(): void;
  stop(): Promise<void>;
}

export interface ProxiedRequest {
  action: string;
  roleName?: string;
}

const REQUEST_LOG_LIMIT = 100_000;

const KNOWN: Record<FaultKind, { code: string; status: number; type: 'Sender' | 'Receiver'; message: string }> = {
  Throttling: { code: 'Throttling', status: 400, type: 'Sender', message: 'Rate exceeded' },
  ServiceUnavailable: {
    code: 'ServiceUnavailable',
    status: 503,
    type: 'Receiver',
    message: 'Service is unable to handle request.',
  },
  MalformedPolicyDocument: {
    code: 'MalformedPolicyDocument',
    status: 400,
    type: 'Sender',
    message: 'Syntax errors in policy. (injected)',
  },
  LimitExceeded: {
    code: 'LimitExceeded',
    status: 409,
    type: 'Sender',
    message: 'Cannot exceed quota for RolesPerAccount: 1000 (injected)',
  },
};

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const faults: { fault: Fault; left: number }[] = [];
  let seen = new Map<string, number>();
  let injected = new Map<string, number>();
  let requestSeq = 0;
  let log: ProxiedRequest[] = [];
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const action = actionOf(req, body);
      bump(seen, action);
      const roleName = formField(req, body, 'RoleName');
      log.push(roleName ? { action, roleName } : { action });
      if (log.length > REQUEST_LOG_LIMIT) log = log.slice(-REQUEST_LOG_LIMIT / 2);
      const i = faults.findIndex((f) => f.left > 0 && (!f.fault.action || f.fault.action === action));
      if (i >= 0) {
        const f = faults[i] as { fault: Fault; left: number };
        f.left--;
        if (f.left === 0) faults.splice(i, 1);
        bump(injected, action);
        const e = typeof f.fault.error === 'string' ? KNOWN[f.fault.error] : f.fault.error;
        const xml =
          '<?xml version="1.0" encoding="UTF-8"?>\n' +
          `<ErrorResponse><Error><Type>${e.type ?? 'Sender'}</Type><Code>${e.code}</Code>` +
          `<Message>${escapeXml(e.message ?? 'injected fault')}</Message></Error>` +
          `<RequestId>fault-${++requestSeq}</RequestId></ErrorResponse>`;
        res.writeHead(e.status, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(xml) });
        res.end(xml);
        return;
      }
      const headers = { ...req.headers, host: upstream.host };
      const up = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: upstream error: ${err.message}`);
      });
      up.end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    inject(fault) {
      faults.push({ fault, left: fault.times ?? 1 });
    },
    clearFaults() {
      faults.length = 0;
    },
    counts: () => Object.fromEntries(seen),
    count: (action) => seen.get(action) ?? 0,
    injectedCounts: () => Object.fromEntries(injected),
    writeCounts: () => Object.fromEntries([...seen].filter(([a]) => !/^(Get|List)/.test(a))),
    total: () => [...seen.values()].reduce((a, b) => a + b, 0),
    requests: () => log,
    resetCounts() {
      seen = new Map();
      injected = new Map();
      log = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function formField(req: IncomingMessage, body: Buffer, name: string): string | undefined {
  const fromQuery = new URL(req.url ?? '/', 'http://x').searchParams.get(name);
  if (fromQuery) return fromQuery;
  const type = String(req.headers['content-type'] ?? '');
  if (!type.includes('application/x-www-form-urlencoded')) return undefined;
  return new URLSearchParams(body.toString('utf8')).get(name) ?? undefined;
}

function actionOf(req: IncomingMessage, body: Buffer): string {
  const action = formField(req, body, 'Action');
  if (action) return action;
  const target = req.headers['x-amz-target'];
  if (typeof target === 'string') return target.split('.').pop() ?? target;
  return `${req.method} ${req.url}`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
