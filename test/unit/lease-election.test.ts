// LeaseElector against a small in-process fake of the Lease API (the real apiserver is exercised in
// test/integration/leader-election.test.ts): request shapes, clock-skew tolerance, and what happens when
// the apiserver hangs or answers 409.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { formatMicroTime, LeaseElector, recordFromSpec, type StopReason } from '../../src/leader/lease-election.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';

const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const BASE = '/apis/coordination.k8s.io/v1/namespaces/ns/leases';

interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: Record<string, unknown>;
}

class FakeLeaseApi {
  lease: Lease | undefined;
  rv = 0;
  mode: 'ok' | 'hang' | 'conflict' = 'ok';
  requests: { method: string; path: string; body?: Lease }[] = [];
  hungClosed = 0;
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      void this.handle(req).then((r) => {
        if (!r) return;
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(r.body));
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  setHolder(holder: string, renewTime: string, leaseDurationSeconds = 2): void {
    this.rv++;
    this.lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'l', namespace: 'ns', resourceVersion: String(this.rv) },
      spec: { holderIdentity: holder, leaseDurationSeconds, renewTime, acquireTime: renewTime, leaseTransitions: 3 },
    };
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body: unknown } | undefined> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as Lease) : undefined;
    const path = (req.url ?? '').split('?')[0] ?? '';
    this.requests.push({ method: req.method ?? '', path, body });
    if (this.mode === 'hang') {
      req.socket.once('close', () => this.hungClosed++);
      return undefined;
    }
    const status = (code: number, reason: string, message = reason) => ({
      status: code,
      body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code },
    });
    for (const t of ['renewTime', 'acquireTime']) {
      const v = body?.spec?.[t];
      if (v !== undefined && !(typeof v === 'string' && MICROTIME.test(v))) {
        return status(400, 'BadRequest', `cannot parse ${JSON.stringify(v)} as MicroTime`);
      }
    }
    if (req.method === 'GET' && path === `${BASE}/l`) {
      return this.lease ? { status: 200, body: this.lease } : status(404, 'NotFound');
    }
    if (req.method === 'POST' && path === BASE && body) {
      if (this.lease) return status(409, 'AlreadyExists');
      this.rv++;
      this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(this.rv) } } as Lease;
      return { status: 201, body: this.lease };
    }
    if (req.method === 'PUT' && path === `${BASE}/l` && body) {
      if (this.mode === 'conflict' || body.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) {
        return status(409, 'Conflict', 'the object has been modified');
      }
      this.rv++;
      this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(this.rv) } };
      return { status: 200, body: this.lease };
    }
    return status(404, 'NotFound');
  }
}

const fakes: FakeLeaseApi[] = [];
const electors: LeaseElector[] = [];
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
});

async function setup(identity = 'me') {
  const fake = new FakeLeaseApi();
  fakes.push(fake);
  const server = await fake.start();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }], // plain HTTP needs it
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const cfg = defaultConfig();
  cfg.leaderElection = {
    ...cfg.leaderElection,
    leaseName: 'l',
    namespace: 'ns',
    leaseDurationSeconds: 2,
    renewDeadlineSeconds: 1,
    retryPeriodSeconds: 0.25,
  };
  const metrics = new Metrics('workspace', { defaultMetrics: false });
  const elector = new LeaseElector({ kc, cfg, log: createLogger({ level: 'silent' }), metrics, identity });
  electors.push(elector);
  const events = {
    started: 0,
    startedAt: 0,
    stopped: [] as StopReason[],
    stoppedAt: 0,
    signal: undefined as AbortSignal | undefined,
  };
  const done = elector.run({
    onStartedLeading: (signal) => {
      events.started++;
      events.startedAt = Date.now();
      events.signal = signal;
    },
    onStoppedLeading: (info) => {
      events.stopped.push(info?.reason ?? ('?' as StopReason));
      events.stoppedAt = Date.now();
    },
  });
  return { fake, elector, metrics, events, done };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('LeaseElector (fake Lease API)', () => {
  it('creates the lease, then renews with PUT carrying resourceVersion and 6-digit MicroTimes', async () => {
    const { fake, elector, events } = await setup();
    await until(() => events.started === 1);
    expect(elector.isLeader()).toBe(true);
    await new Promise((r) => setTimeout(r, 800));
    const post = fake.requests.find((r) => r.method === 'POST');
    expect(post?.body?.spec).toMatchObject({ holderIdentity: 'me', leaseDurationSeconds: 2, leaseTransitions: 0 });
    const puts = fake.requests.filter((r) => r.method === 'PUT');
    expect(puts.length).toBeGreaterThanOrEqual(2);
    for (const p of puts) {
      expect(p.body?.metadata.resourceVersion).toMatch(/^\d+$/);
      expect(p.body?.spec.renewTime).toMatch(MICROTIME);
      expect(p.body?.spec.acquireTime).toBe(post?.body?.spec.acquireTime); // kept while renewing
    }
    // Renewals take the fast path: no GET between consecutive PUTs once leading.
    expect(fake.requests.filter((r) => r.method === 'GET')).toHaveLength(1);
  });

  it('never compares clocks: a changing record with an ancient renewTime keeps it a follower', async () => {
    const { fake, elector, events } = await setup();
    let renew = 0;
    const other = () => fake.setHolder('other', `2000-01-01T00:00:0${renew++ % 10}.000000Z`);
    other();
    const t = setInterval(other, 300); // the other holder keeps renewing (its clock is 26 years behind)
    try {
      await new Promise((r) => setTimeout(r, 2600)); // > leaseDuration
      expect(events.started).toBe(0);
      expect(elector.getLeader()).toBe('other');
    } finally {
      clearInterval(t);
    }
  });

  it('takes over a lease whose record stopped changing, after leaseDuration by its own clock, even with renewTime in the future', async () => {
    const { fake, events } = await setup();
    fake.setHolder('other', '2100-01-01T00:00:00.000000Z');
    const t0 = Date.now();
    await until(() => events.started === 1, 6000);
    const took = events.startedAt - t0;
    expect(took).toBeGreaterThanOrEqual(1900);
    expect(took).toBeLessThan(2000 + 2 * 250 * 2.2 + 500);
    expect(fake.lease?.spec).toMatchObject({ holderIdentity: 'me', leaseTransitions: 4 });
    expect(fake.lease?.spec.acquireTime).not.toBe('2100-01-01T00:00:00.000000Z');
  });

  it('a 409 on update is a lost race, not leadership', async () => {
    const { fake, elector, events } = await setup();
    fake.setHolder('', formatMicroTime(new Date()), 1); // released: free to take
    fake.mode = 'conflict';
    await new Promise((r) => setTimeout(r, 800));
    expect(events.started).toBe(0);
    expect(elector.isLeader()).toBe(false);
    expect(fake.requests.filter((r) => r.method === 'PUT').length).toBeGreaterThanOrEqual(1);
    fake.mode = 'ok';
    await until(() => events.started === 1);
  });

  it('loses leadership when the apiserver hangs: aborts the requests and calls onStoppedLeading at the renew deadline', async () => {
    const { fake, elector, metrics, events, done } = await setup();
    await until(() => events.started === 1);
    expect((await metrics.leaderStatus.get()).values[0]?.value).toBe(1);
    const hungAt = Date.now();
    fake.mode = 'hang';
    await until(() => events.stopped.length > 0, 5000);
    const took = events.stoppedAt - hungAt;
    expect(events.stopped).toEqual(['lost']);
    expect(events.signal?.aborted).toBe(true);
    // The round in progress started at most one retry period before the hang; its deadline is 1 s.
    expect(took).toBeGreaterThan(700);
    expect(took).toBeLessThan(1000 + 250 + 1500); // slack for a loaded CI machine
    expect(elector.isLeader()).toBe(false);
    expect((await metrics.leaderStatus.get()).values[0]?.value).toBe(0);
    await done;
    await until(() => fake.hungClosed > 0, 2000); // the hung request was aborted, not left open
  });

  it('release() writes holder "" and leaseDurationSeconds 1, keeping leaseTransitions', async () => {
    const { fake, elector, events } = await setup();
    await until(() => events.started === 1);
    expect(await elector.release()).toBe(true);
    expect(events.stopped).toEqual(['released']);
    const rec = recordFromSpec(fake.lease?.spec as never);
    expect(rec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 0 });
    expect(rec.renewTime).toMatch(MICROTIME);
  });

  it('validates timings like client-go', () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'http://127.0.0.1:1' }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const cfg = defaultConfig();
    const log = createLogger({ level: 'silent' });
    const bad = (le: Partial<typeof cfg.leaderElection>) => () =>
      new LeaseElector({ kc, cfg: { leaderElection: { ...cfg.leaderElection, ...le } }, log });
    expect(bad({ leaseDurationSeconds: 10, renewDeadlineSeconds: 10 })).toThrow(/leaseDurationSeconds/);
    expect(bad({ renewDeadlineSeconds: 2.4, retryPeriodSeconds: 2 })).toThrow(/1\.2/);
    const e = new LeaseElector({ kc, cfg, log });
    expect(e.identity).toMatch(/^.+_[0-9a-f-]{36}$/);
  });
});
