// The controller's small HTTP endpoints, on node:http:
//   metrics port:  GET /metrics   Prometheus text from metrics.registry (its own content type)
//   health port:   GET /healthz   process alive and event loop responsive (+ registered health checks)
//                  GET /readyz    every registered readiness check passes (200) or not (503)
// When metricsPort === healthPort (and is not 0) one server serves all three. Port 0 binds a random port
// (tests); start() returns the ports actually bound.
//
// Bodies follow kube-apiserver's /healthz and /readyz: "ok" on success; with ?verbose, or on failure, one
// line per check ("[+]name ok" / "[-]name failed: reason") and a final "<endpoint> check passed|failed".
// ?exclude=name skips a check; /readyz/<name> runs a single check.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import type { Metrics } from '../metrics/metrics.js';

/** true = passing; false = failing; a string = failing with that reason. May be async. */
export type CheckResult = boolean | string;
export type Check = () => CheckResult | Promise<CheckResult>;

export interface HttpServerOptions {
  cfg: Pick<ControllerConfig, 'server'>;
  metrics: Pick<Metrics, 'registry'>;
  log?: Logger;
  /** /healthz fails when the event loop has been blocked longer than this (now or within the last window). Default 10 s. */
  maxEventLoopBlockSeconds?: number;
  /** How long a past event-loop stall keeps /healthz failing. Default 30 s. */
  eventLoopStallWindowSeconds?: number;
  /** A check that has not answered after this long fails. Default 5 s. */
  checkTimeoutMs?: number;
}

export interface BoundPorts {
  metricsPort: number;
  healthPort: number;
}

interface NamedCheck {
  name: string;
  check: Check;
}

const HEARTBEAT_MS = 250;

/**
 * Measures event-loop responsiveness with an unref'd heartbeat timer: a late tick means the loop was busy
 * for (delay − interval). A loop that is blocked right now cannot answer /healthz at all (the kubelet's
 * probe times out), so what /healthz can report is a stall that just ended or is still growing.
 */
export class EventLoopWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private lastTick = performance.now();
  /** Largest stall seen, and when; replaced by any stall once it is older than the window. */
  private worst = { ms: 0, at: Number.NEGATIVE_INFINITY };

  constructor(private readonly windowMs = 30_000) {}

  start(): void {
    if (this.timer) return;
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(performance.now()), HEARTBEAT_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One heartbeat at `now` (exposed for tests). */
  tick(now: number): void {
    const stall = now - this.lastTick - HEARTBEAT_MS;
    if (stall > 0 && (stall >= this.worst.ms || now - this.worst.at > this.windowMs)) {
      this.worst = { ms: stall, at: now };
    }
    this.lastTick = now;
  }

  /** How long the loop has been blocked so far (ms): time since the last heartbeat beyond its interval. */
  currentStallMs(now = performance.now()): number {
    return Math.max(0, now - this.lastTick - HEARTBEAT_MS);
  }

  /** Largest stall that ended within the window before `now` (ms). */
  recentStallMs(now = performance.now()): number {
    return now - this.worst.at <= this.windowMs ? this.worst.ms : 0;
  }
}

export class HttpServers {
  private readonly readyChecks: NamedCheck[] = [];
  private readonly healthChecks: NamedCheck[] = [];
  private readonly servers: Server[] = [];
  private readonly watchdog: EventLoopWatchdog;
  private readonly maxBlockMs: number;
  private readonly checkTimeoutMs: number;

  constructor(private readonly opts: HttpServerOptions) {
    this.maxBlockMs = (opts.maxEventLoopBlockSeconds ?? 10) * 1000;
    this.watchdog = new EventLoopWatchdog((opts.eventLoopStallWindowSeconds ?? 30) * 1000);
    this.checkTimeoutMs = opts.checkTimeoutMs ?? 5000;
    this.healthChecks.push({ name: 'ping', check: () => true });
    this.healthChecks.push({ name: 'eventloop', check: () => this.eventLoopCheck() });
  }

  /** Registers (or replaces) a readiness check shown as `name` in /readyz. */
  addReadyCheck(name: string, check: Check): void {
    upsert(this.readyChecks, name, check);
  }

  removeReadyCheck(name: string): void {
    const i = this.readyChecks.findIndex((c) => c.name === name);
    if (i >= 0) this.readyChecks.splice(i, 1);
  }

  /** Registers (or replaces) a liveness check shown as `name` in /healthz (e.g. the leader-election check). */
  addHealthCheck(name: string, check: Check): void {
    upsert(this.healthChecks, name, check);
  }

  async start(): Promise<BoundPorts> {
    if (this.servers.length > 0) throw new Error('HttpServers already started');
    const { metricsPort, healthPort, bindAddress } = this.opts.cfg.server;
    this.watchdog.start();
    if (metricsPort === healthPort && metricsPort !== 0) {
      const port = await this.listen(['metrics', 'health'], metricsPort, bindAddress);
      return { metricsPort: port, healthPort: port };
    }
    const m = await this.listen(['metrics'], metricsPort, bindAddress);
    const h = await this.listen(['health'], healthPort, bindAddress);
    return { metricsPort: m, healthPort: h };
  }

  async stop(): Promise<void> {
    this.watchdog.stop();
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }

  private async listen(roles: ('metrics' | 'health')[], port: number, host: string): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(roles, req, res).catch((err: unknown) => {
        this.opts.log?.error({ err, path: req.url }, 'http handler failed');
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.opts.log?.error({ err }, 'http server error'));
    this.servers.push(server);
    const bound = (server.address() as AddressInfo).port;
    this.opts.log?.info({ port: bound, host, serves: roles }, 'http server listening');
    return bound;
  }

  private async handle(roles: string[], req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'method not allowed\n');
    }
    if (roles.includes('metrics') && path === '/metrics') {
      const body = await this.opts.metrics.registry.metrics();
      res.setHeader('Content-Type', this.opts.metrics.registry.contentType);
      res.setHeader('Cache-Control', 'no-store');
      return send(res, 200, body, req.method === 'HEAD');
    }
    if (roles.includes('health')) {
      for (const [endpoint, checks] of [
        ['healthz', this.healthChecks],
        ['livez', this.healthChecks],
        ['readyz', this.readyChecks],
      ] as const) {
        if (path === `/${endpoint}`) return this.runChecks(endpoint, checks, url, req, res);
        if (path.startsWith(`/${endpoint}/`)) {
          const name = decodeURIComponent(path.slice(endpoint.length + 2));
          const one = checks.filter((c) => c.name === name);
          if (one.length === 0) return send(res, 404, `no check named "${name}"\n`);
          return this.runChecks(endpoint, one, url, req, res);
        }
      }
    }
    return send(res, 404, 'not found\n');
  }

  private async runChecks(
    endpoint: string,
    checks: NamedCheck[],
    url: URL,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const excluded = new Set(url.searchParams.getAll('exclude'));
    const verbose = url.searchParams.has('verbose');
    const selected = checks.filter((c) => !excluded.has(c.name));
    const results = await Promise.all(selected.map(async (c) => ({ name: c.name, ...(await this.evaluate(c)) })));
    const failed = results.filter((r) => !r.ok);
    const lines = results.map((r) => (r.ok ? `[+]${r.name} ok` : `[-]${r.name} failed: ${r.reason}`));
    for (const name of excluded) {
      if (checks.some((c) => c.name === name)) lines.push(`[+]${name} excluded: ok`);
    }
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (failed.length > 0) {
      this.opts.log?.debug({ endpoint, failed: failed.map((f) => f.name) }, `${endpoint} check failed`);
      return send(res, 503, `${lines.join('\n')}\n${endpoint} check failed\n`, req.method === 'HEAD');
    }
    const body = verbose ? `${lines.join('\n')}\n${endpoint} check passed\n` : 'ok';
    return send(res, 200, body, req.method === 'HEAD');
  }

  private async evaluate(c: NamedCheck): Promise<{ ok: boolean; reason: string }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve(`timed out after ${this.checkTimeoutMs} ms`), this.checkTimeoutMs);
      });
      const r = await Promise.race([Promise.resolve().then(c.check), timeout]);
      if (r === true) return { ok: true, reason: '' };
      return { ok: false, reason: typeof r === 'string' && r !== '' ? oneLine(r) : 'not ready' };
    } catch (err) {
      return { ok: false, reason: oneLine(err instanceof Error ? err.message : String(err)) };
    } finally {
      clearTimeout(timer);
    }
  }

  private eventLoopCheck(): CheckResult {
    const now = performance.now();
    const current = this.watchdog.currentStallMs(now);
    const recent = this.watchdog.recentStallMs(now);
    const worst = Math.max(current, recent);
    if (worst > this.maxBlockMs) {
      return `event loop blocked for ${(worst / 1000).toFixed(1)} s (limit ${this.maxBlockMs / 1000} s)`;
    }
    return true;
  }
}

function upsert(list: NamedCheck[], name: string, check: Check): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`invalid check name "${name}"`);
  const existing = list.find((c) => c.name === name);
  if (existing) existing.check = check;
  else list.push({ name, check });
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 300);
}

function send(res: ServerResponse, status: number, body: string, headOnly = false): void {
  res.statusCode = status;
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(headOnly ? undefined : body);
}
