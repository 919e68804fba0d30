// LeaseElector against an in-memory fake of the Lease API on a fake clock (the real apiserver is exercised
// in test/integration/leader-election.test.ts; the HTTP side of an aborted request in kube-client.test.ts):
// request shapes, clock-skew tolerance, and what happens when the apiserver hangs or answers 409. Time
// moves only through clock.advance(), so every timing is asserted against the configured periods.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock, settle } from '../../harness/fake-clock.js';
import { defaultConfig } from '../../src/config/config.js';
import type { RequestOptions } from '../../src/kube/client.js';
import { ApiServerContact } from '../../src/kube/contact.js';
import { KubeStatusError } from '../../src/kube/status.js';
import {
  formatMicroTime,
  type Lease,
  type LeaseClient,
  LeaseElector,
  recordFromSpec,
  type StopReason,
} from '../../src/leader/lease-election.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';

const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const BASE = '/apis/coordination.k8s.io/v1/namespaces/ns/leases';

/** The Lease API of one apiserver, in memory: resourceVersion compare-and-swap, 404/409 as Status errors. */
class FakeLeaseApi implements LeaseClient {
  readonly contact = new ApiServerContact('https://fake-apiserver');
  lease: Lease | undefined;
  rv = 0;
  /** hang: no answer until the caller aborts; stuck: no answer ever (a client that ignores its signal). */
  mode: 'ok' | 'hang' | 'stuck' | 'conflict' = 'ok';
  requests: { method: string; path: string; body?: Lease }[] = [];
  /** Ends the 'stuck' requests (so the elector can stop at the end of a test). */
  readonly stuck: (() => void)[] = [];
  /** Hung requests the caller aborted through their signal. */
  hungAborted = 0;

  setHolder(holder: string, renewTime: string, leaseDurationSeconds = 2): void {
    this.rv++;
    this.lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'l', namespace: 'ns', resourceVersion: String(this.rv) },
      spec: { holderIdentity: holder, leaseDurationSeconds, renewTime, acquireTime: renewTime, leaseTransitions: 3 },
    };
  }

  get<T>(path: string, opts: RequestOptions = {}): Promise<T | undefined> {
    return this.answer('GET', path, undefined, opts.signal, () => {
      if (path !== `${BASE}/l`) throw status(404, 'NotFound');
      return this.lease && structuredClone(this.lease);
    }) as Promise<T | undefined>;
  }

  create<T>(path: string, obj: unknown, opts: RequestOptions = {}): Promise<T> {
    const body = structuredClone(obj) as Lease;
    return this.answer('POST', path, body, opts.signal, () => {
      if (path !== BASE) throw status(404, 'NotFound');
      if (this.lease) throw status(409, 'AlreadyExists');
      this.rv++;
      this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(this.rv) } };
      return structuredClone(this.lease);
    }) as Promise<T>;
  }

  update<T>(path: string, obj: unknown, opts: RequestOptions = {}): Promise<T> {
    const body = structuredClone(obj) as Lease;
    return this.answer('PUT', path, body, opts.signal, () => {
      if (path !== `${BASE}/l`) throw status(404, 'NotFound');
      if (this.mode === 'conflict' || body.metadata.resourceVersion !== this.lease?.metadata.resourceVersion) {
        throw status(409, 'Conflict', 'the object has been modified');
      }
      this.rv++;
      this.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(this.rv) } };
      return structuredClone(this.lease);
    }) as Promise<T>;
  }

  private answer(
    method: string,
    path: string,
    body: Lease | undefined,
    signal: AbortSignal | undefined,
    handle: () => Lease | undefined,
  ): Promise<Lease | undefined> {
    this.requests.push({ method, path, body });
    if (this.mode === 'stuck') {
      return new Promise((_, reject) => this.stuck.push(() => reject(new Error('unstuck'))));
    }
    if (this.mode === 'hang') {
      return new Promise((_, reject) => {
        signal?.addEventListener('abort', () => {
          this.hungAborted++;
          reject(signal.reason);
        });
      });
    }
    for (const t of ['renewTime', 'acquireTime'] as const) {
      const v = body?.spec?.[t];
      if (v !== undefined && !(typeof v === 'string' && MICROTIME.test(v))) {
        return Promise.reject(status(400, 'BadRequest', `cannot parse ${JSON.stringify(v)} as MicroTime`));
      }
    }
    try {
      return Promise.resolve(handle());
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

function status(code: number, reason: string, message = reason): KubeStatusError {
  return new KubeStatusError(code, reason, message);
}

const electors: LeaseElector[] = [];
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
});

let clock: FakeClock;
beforeEach(() => {
  clock = new FakeClock();
});

function leaderConfig() {
  const cfg = defaultConfig();
  cfg.leaderElection = {
    ...cfg.leaderElection,
    leaseName: 'l',
    namespace: 'ns',
    leaseDurationSeconds: 2,
    renewDeadlineSeconds: 1,
    retryPeriodSeconds: 0.25,
  };
  return cfg;
}

/** An elector on `fake` (set the fake up first: the first attempt runs at once). */
function start(fake: FakeLeaseApi, identity = 'me') {
  const metrics = new Metrics('workspace', { defaultMetrics: false });
  const elector = new LeaseElector({
    client: fake,
    cfg: leaderConfig(),
    log: createLogger({ level: 'silent' }),
    metrics,
    identity,
    clock,
  });
  electors.push(elector);
  const events = {
    started: 0,
    startedAt: -1,
    stopped: [] as StopReason[],
    stoppedAt: -1,
    leaders: [] as string[],
    signal: undefined as AbortSignal | undefined,
  };
  const done = elector.run({
    onStartedLeading: (signal) => {
      events.started++;
      events.startedAt = clock.now();
      events.signal = signal;
    },
    onStoppedLeading: (info) => {
      events.stopped.push(info?.reason ?? ('?' as StopReason));
      events.stoppedAt = clock.now();
    },
    onNewLeader: (identity) => events.leaders.push(identity),
  });
  return { elector, metrics, events, done };
}

/** Advances the fake clock in small steps until `cond` holds; fails after `limitMs` of fake time. */
async function advanceUntil(cond: () => boolean, limitMs: number, stepMs = 10): Promise<void> {
  const end = clock.now() + limitMs;
  await settle();
  while (!cond()) {
    if (clock.now() >= end) throw new Error(`condition not met within ${limitMs} ms of fake time`);
    await clock.advance(stepMs);
  }
}

describe('LeaseElector (fake Lease API, fake clock)', () => {
  it('creates the lease, then renews every retry period with PUT carrying resourceVersion and 6-digit MicroTimes', async () => {
    const fake = new FakeLeaseApi();
    const { elector, events } = start(fake);
    await advanceUntil(() => events.started === 1, 0);
    expect(elector.isLeader()).toBe(true);
    const post = fake.requests.find((r) => r.method === 'POST');
    expect(post?.body?.spec).toMatchObject({ holderIdentity: 'me', leaseDurationSeconds: 2, leaseTransitions: 0 });
    const putsAtStart = fake.requests.filter((r) => r.method === 'PUT').length;
    await clock.advance(1000);
    const puts = fake.requests.filter((r) => r.method === 'PUT');
    expect(puts.length - putsAtStart).toBe(4); // one a retry period (250 ms)
    for (const p of puts) {
      expect(p.body?.metadata.resourceVersion).toMatch(/^\d+$/);
      expect(p.body?.spec?.renewTime).toMatch(MICROTIME);
      expect(p.body?.spec?.acquireTime).toBe(post?.body?.spec?.acquireTime); // kept while renewing
    }
    // Renewals take the fast path: no GET between consecutive PUTs once leading.
    expect(fake.requests.filter((r) => r.method === 'GET')).toHaveLength(1);
  });

  it('never compares clocks: a changing record with an ancient renewTime keeps it a follower', async () => {
    const fake = new FakeLeaseApi();
    let renew = 0;
    const other = () => fake.setHolder('other', `2000-01-01T00:00:0${renew++ % 10}.000000Z`);
    other();
    const { elector, events } = start(fake);
    // The other holder keeps renewing every 300 ms (its clock is 26 years behind), for longer than leaseDuration.
    for (let t = 0; t < 2600; t += 300) {
      await clock.advance(300);
      other();
    }
    expect(events.started).toBe(0);
    expect(elector.getLeader()).toBe('other');
    expect(events.leaders).toEqual(['other']);
  });

  it('takes over a lease whose record stopped changing, after leaseDuration by its own clock, even with renewTime in the future', async () => {
    const fake = new FakeLeaseApi();
    fake.setHolder('other', '2100-01-01T00:00:00.000000Z');
    const { events } = start(fake);
    await advanceUntil(() => events.started === 1, 4000);
    // Observed at 0, valid for 2 s; acquire retries come every 250 ms × (1 + rand × 1.2).
    expect(events.startedAt).toBeGreaterThanOrEqual(2000);
    expect(events.startedAt).toBeLessThanOrEqual(2000 + 250 * 2.2 + 10);
    expect(fake.lease?.spec).toMatchObject({ holderIdentity: 'me', leaseTransitions: 4 });
    expect(fake.lease?.spec?.acquireTime).not.toBe('2100-01-01T00:00:00.000000Z');
    expect(events.leaders).toEqual(['other', 'me']);
  });

  it('a 409 on update is a lost race, not leadership', async () => {
    const fake = new FakeLeaseApi();
    fake.setHolder('', formatMicroTime(new Date()), 1); // released: free to take
    fake.mode = 'conflict';
    const { elector, events } = start(fake);
    await clock.advance(800);
    expect(events.started).toBe(0);
    expect(elector.isLeader()).toBe(false);
    expect(fake.requests.filter((r) => r.method === 'PUT').length).toBeGreaterThanOrEqual(2);
    fake.mode = 'ok';
    await advanceUntil(() => events.started === 1, 250 * 2.2 + 10);
  });

  it('loses leadership when the apiserver hangs: aborts the requests and calls onStoppedLeading at the renew deadline', async () => {
    const fake = new FakeLeaseApi();
    const { elector, metrics, events, done } = start(fake);
    await advanceUntil(() => events.started === 1, 0);
    await clock.advance(100); // between two renewals
    expect((await metrics.leaderStatus.get()).values[0]?.value).toBe(1);
    const hungAt = clock.now();
    fake.mode = 'hang';
    await advanceUntil(() => events.stopped.length > 0, 2000);
    expect(events.stopped).toEqual(['lost']);
    expect(events.signal?.aborted).toBe(true);
    // The next round starts at the next retry period (150 ms later); its deadline is 1 s.
    expect(events.stoppedAt - hungAt).toBe(150 + 1000);
    expect(elector.isLeader()).toBe(false);
    expect((await metrics.leaderStatus.get()).values[0]?.value).toBe(0);
    await done;
    expect(fake.hungAborted).toBeGreaterThan(0); // the hung request was aborted, not left open
  });

  it('release() writes holder "" and leaseDurationSeconds 1, keeping leaseTransitions', async () => {
    const fake = new FakeLeaseApi();
    const { elector, events } = start(fake);
    await advanceUntil(() => events.started === 1, 0);
    expect(await elector.release()).toBe(true);
    expect(events.stopped).toEqual(['released']);
    const rec = recordFromSpec(fake.lease?.spec);
    expect(rec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 0 });
    expect(rec.renewTime).toMatch(MICROTIME);
    expect(events.leaders).toEqual(['me', '']);
  });

  it('release() leaves alone a lease that another candidate has taken over meanwhile', async () => {
    const fake = new FakeLeaseApi();
    const { elector, events } = start(fake);
    await advanceUntil(() => events.started === 1, 0);
    fake.setHolder('other', formatMicroTime(new Date()));
    expect(await elector.release()).toBe(true);
    expect(fake.lease?.spec?.holderIdentity).toBe('other');
    expect(fake.requests.filter((r) => r.method === 'PUT' && r.body?.spec?.holderIdentity === '')).toHaveLength(0);
  });

  it('check() reports a leader whose renew loop is stuck for longer than leaseDuration + tolerance', async () => {
    const fake = new FakeLeaseApi();
    const { elector, events } = start(fake);
    await advanceUntil(() => events.started === 1, 0);
    expect(elector.check(500)).toBeUndefined();
    // A renewal that never returns, even when aborted: the renew loop cannot reach its deadline check.
    fake.mode = 'stuck';
    await clock.advance(250); // the renewal that gets stuck; observed the lease last at 0
    await clock.advance(2000 + 500 - 250);
    expect(elector.check(500)).toBeUndefined(); // exactly leaseDuration + tolerance: not yet
    await clock.advance(1);
    expect(elector.check(500)).toBe('failed election to renew leadership on lease ns/l');
    expect(events.stopped).toEqual([]);
    for (const end of fake.stuck) end();
  });

  it('validates timings like client-go', () => {
    const cfg = defaultConfig();
    const log = createLogger({ level: 'silent' });
    const client = new FakeLeaseApi();
    const bad = (le: Partial<typeof cfg.leaderElection>) => () =>
      new LeaseElector({ client, cfg: { leaderElection: { ...cfg.leaderElection, ...le } }, log });
    expect(bad({ leaseDurationSeconds: 10, renewDeadlineSeconds: 10 })).toThrow(/leaseDurationSeconds/);
    expect(bad({ renewDeadlineSeconds: 2.4, retryPeriodSeconds: 2 })).toThrow(/1\.2/);
    const e = new LeaseElector({ client, cfg, log });
    expect(e.identity).toMatch(/^.+_[0-9a-f-]{36}$/);
    expect(() => new LeaseElector({ cfg, log })).toThrow(/client.*kc/);
  });
});
