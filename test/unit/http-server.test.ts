import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics/metrics.js';
import { EventLoopWatchdog, HttpServers } from '../../src/server/http.js';

const servers: HttpServers[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function make(opts: { metricsPort?: number; healthPort?: number; maxBlock?: number; window?: number } = {}) {
  const metrics = new Metrics('workspace', { defaultMetrics: false });
  const s = new HttpServers({
    cfg: { server: { metricsPort: opts.metricsPort ?? 0, healthPort: opts.healthPort ?? 0, bindAddress: '127.0.0.1' } },
    metrics,
    maxEventLoopBlockSeconds: opts.maxBlock,
    eventLoopStallWindowSeconds: opts.window,
    checkTimeoutMs: 300,
  });
  servers.push(s);
  return { s, metrics };
}

async function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
}

describe('HttpServers', () => {
  it('serves /metrics from the registry with its content type, only on the metrics port', async () => {
    const { s, metrics } = make();
    metrics.leaderStatus.set({ name: 'flyte-workspace-controller' }, 1);
    const { metricsPort, healthPort } = await s.start();
    expect(metricsPort).not.toBe(healthPort);
    const r = await get(metricsPort, '/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toBe(metrics.registry.contentType);
    expect(r.body).toContain('leader_election_master_status{name="flyte-workspace-controller"} 1');
    expect(r.body).toContain('# TYPE controller_runtime_reconcile_total counter');
    expect(r.body).toContain('workqueue_depth');
    expect((await get(healthPort, '/metrics')).status).toBe(404);
    expect((await get(metricsPort, '/readyz')).status).toBe(404);
    expect((await get(metricsPort, '/nope')).status).toBe(404);
    const post = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
  });

  it('/readyz flips with the registered checks and lists failures like ?verbose', async () => {
    const { s } = make();
    let synced = false;
    let leader: boolean | string = 'not leader yet';
    s.addReadyCheck('informer-sync', () => synced);
    s.addReadyCheck('leader', () => leader);
    const { healthPort } = await s.start();

    let r = await get(healthPort, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toContain('[-]informer-sync failed: not ready');
    expect(r.body).toContain('[-]leader failed: not leader yet');
    expect(r.body.trimEnd().endsWith('readyz check failed')).toBe(true);

    synced = true;
    r = await get(healthPort, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toContain('[+]informer-sync ok');
    expect(r.body).toContain('[-]leader failed');

    expect((await get(healthPort, '/readyz?exclude=leader')).status).toBe(200);
    expect((await get(healthPort, '/readyz/informer-sync')).status).toBe(200);
    expect((await get(healthPort, '/readyz/leader')).status).toBe(503);
    expect((await get(healthPort, '/readyz/unknown')).status).toBe(404);

    leader = true;
    r = await get(healthPort, '/readyz');
    expect(r).toMatchObject({ status: 200, body: 'ok' });
    r = await get(healthPort, '/readyz?verbose');
    expect(r.status).toBe(200);
    expect(r.body).toBe('[+]informer-sync ok\n[+]leader ok\nreadyz check passed\n');

    s.addReadyCheck('throws', () => {
      throw new Error('cache\nbroken');
    });
    s.addReadyCheck('slow', () => new Promise<boolean>(() => {}));
    r = await get(healthPort, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toContain('[-]throws failed: cache broken');
    expect(r.body).toContain('[-]slow failed: timed out after 300 ms');
  });

  it('/healthz is ok while the process and event loop are fine; health checks can fail it', async () => {
    const { s } = make();
    const { healthPort } = await s.start();
    expect(await get(healthPort, '/healthz')).toMatchObject({ status: 200, body: 'ok' });
    const v = await get(healthPort, '/healthz?verbose');
    expect(v.body).toContain('[+]ping ok');
    expect(v.body).toContain('[+]eventloop ok');
    let stuck: string | boolean = true;
    s.addHealthCheck('leader-election', () => stuck);
    expect((await get(healthPort, '/healthz')).status).toBe(200);
    stuck = 'failed election to renew leadership';
    const r = await get(healthPort, '/healthz');
    expect(r.status).toBe(503);
    expect(r.body).toContain('[-]leader-election failed: failed election to renew leadership');
  });

  it('/healthz fails after the event loop was blocked longer than the limit, and recovers', async () => {
    const { s } = make({ maxBlock: 0.3, window: 1 });
    const { healthPort } = await s.start();
    await new Promise((r) => setTimeout(r, 300)); // a heartbeat or two
    const until = performance.now() + 700;
    while (performance.now() < until) {
      // block the event loop
    }
    await new Promise((r) => setTimeout(r, 300)); // let the late heartbeat record the stall
    const r = await get(healthPort, '/healthz');
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/\[-\]eventloop failed: event loop blocked for 0\.\d s \(limit 0\.3 s\)/);
    await new Promise((r) => setTimeout(r, 1200)); // the stall leaves the window
    expect((await get(healthPort, '/healthz')).status).toBe(200);
  });

  it('serves everything on one port when both ports are equal', async () => {
    const probe = make();
    const { metricsPort: free } = await probe.s.start();
    await probe.s.stop();
    const { s } = make({ metricsPort: free, healthPort: free });
    const ports = await s.start();
    expect(ports).toEqual({ metricsPort: free, healthPort: free });
    expect((await get(free, '/metrics')).status).toBe(200);
    expect((await get(free, '/healthz')).status).toBe(200);
    expect((await get(free, '/readyz')).status).toBe(200);
    await s.stop();
    await expect(fetch(`http://127.0.0.1:${free}/healthz`)).rejects.toThrow();
  });
});

describe('EventLoopWatchdog', () => {
  it('reports the current and the recent stall', () => {
    const w = new EventLoopWatchdog(1000);
    const t0 = performance.now();
    w.tick(t0 + 250);
    expect(w.currentStallMs(t0 + 400)).toBe(0);
    expect(w.currentStallMs(t0 + 2250)).toBeCloseTo(1750);
    w.tick(t0 + 2250); // 1750 ms late
    expect(w.recentStallMs(t0 + 2300)).toBeCloseTo(1750);
    expect(w.recentStallMs(t0 + 3500)).toBe(0); // older than the window
  });
});
