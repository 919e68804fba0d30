// Lease leader election against the real kube-apiserver, with the electors authenticated as the
// controller's ServiceAccount, so the leader-election Role in manifests/rbac.yaml (leases get/create/update
// in flyte-workspace-controller only) is what allows it.
import { Writable } from 'node:stream';
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { formatMicroTime, LeaseElector, type StopReason } from '../../src/leader/lease-election.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { describeError, kubeConfigFor, statusOf, uniqueName, waitFor } from '../support/kube.js';

const NS = 'flyte-workspace-controller';
// Short timings: lease 3 s, renew deadline 2 s, retry 0.5 s (constraints: 3 > 2 > 1.2 × 0.5).
const LEASE_S = 3;
const RENEW_S = 2;
const RETRY_S = 0.5;
const MAX_JITTERED_RETRY_MS = RETRY_S * 1000 * 2.2;
const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

let controllerKc: KubeConfig;
let adminLeases: CoordinationV1Api;
const running: LeaseElector[] = [];

beforeAll(() => {
  controllerKc = kubeConfigFor('controller');
  adminLeases = kubeConfigFor('admin').makeApiClient(CoordinationV1Api);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((e) => e.stop()));
});

interface Candidate {
  elector: LeaseElector;
  metrics: Metrics;
  logs: string[];
  startedAt?: number;
  stopped: StopReason[];
  leaders: string[];
  leadingSignal?: AbortSignal;
  done: Promise<void>;
}

function candidate(leaseName: string, opts: { namespace?: string; identity?: string } = {}): Candidate {
  const cfg = defaultConfig();
  cfg.leaderElection = {
    ...cfg.leaderElection,
    leaseName,
    namespace: opts.namespace ?? NS,
    leaseDurationSeconds: LEASE_S,
    renewDeadlineSeconds: RENEW_S,
    retryPeriodSeconds: RETRY_S,
  };
  const logs: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        logs.push(String(chunk));
        cb();
      },
    }),
  });
  const metrics = new Metrics('workspace', { defaultMetrics: false });
  const elector = new LeaseElector({ kc: controllerKc, cfg, log, metrics, identity: opts.identity });
  const c: Candidate = { elector, metrics, logs, stopped: [], leaders: [], done: Promise.resolve() };
  c.done = elector.run({
    onStartedLeading: (signal) => {
      c.startedAt = Date.now();
      c.leadingSignal = signal;
    },
    onStoppedLeading: (info) => {
      c.stopped.push(info?.reason ?? ('?' as StopReason));
    },
    onNewLeader: (id) => {
      c.leaders.push(id);
    },
  });
  running.push(elector);
  return c;
}

async function readLease(name: string): Promise<V1Lease> {
  return adminLeases.readNamespacedLease({ name, namespace: NS });
}

async function leaderGauge(c: Candidate): Promise<number | undefined> {
  const v = (await c.metrics.leaderStatus.get()).values.find((x) => x.labels.name === c.elector.name);
  return v?.value;
}

const leaderOf = (cs: Candidate[]) => waitFor(() => cs.find((c) => c.elector.isLeader()), { message: 'a leader' });

describe('LeaseElector on a real kube-apiserver (controller identity)', () => {
  it('elects exactly one of two candidates and writes MicroTimes the server accepts', async () => {
    const lease = uniqueName('le-one');
    const a = candidate(lease);
    const b = candidate(lease);
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    // Stays that way over several renew rounds.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, RETRY_S * 1000));
      expect([a, b].filter((c) => c.elector.isLeader())).toEqual([leader]);
    }
    expect(leader.startedAt).toBeDefined();
    expect(follower.startedAt).toBeUndefined();
    expect(await leaderGauge(leader)).toBe(1);
    expect(await leaderGauge(follower)).toBe(0);
    expect(follower.elector.getLeader()).toBe(leader.elector.identity);
    await waitFor(() => follower.leaders.includes(leader.elector.identity), { message: 'onNewLeader on follower' });

    const l = await readLease(lease);
    expect(l.spec?.holderIdentity).toBe(leader.elector.identity);
    expect(l.spec?.leaseDurationSeconds).toBe(LEASE_S);
    expect(l.spec?.leaseTransitions).toBe(0); // created by the winner
    // client-node hands MicroTime back as the wire string: exactly 6 fractional digits.
    expect(String(l.spec?.renewTime)).toMatch(MICROTIME);
    expect(String(l.spec?.acquireTime)).toMatch(MICROTIME);
    // Renewals move renewTime but keep acquireTime.
    const first = String(l.spec?.renewTime);
    await new Promise((r) => setTimeout(r, RETRY_S * 2000 + 200));
    const l2 = await readLease(lease);
    expect(String(l2.spec?.renewTime)).not.toBe(first);
    expect(String(l2.spec?.acquireTime)).toBe(String(l.spec?.acquireTime));
    expect(leader.elector.identity).toMatch(/^.+_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('the server rejects a plain JS Date as MicroTime and accepts the 6-digit form', async () => {
    const name = uniqueName('le-wire');
    const now = new Date();
    let rejected: unknown;
    try {
      await adminLeases.createNamespacedLease({
        namespace: NS,
        // A plain Date serialises to 3 fractional digits; the apiserver's MicroTime layout needs 6.
        body: { metadata: { name }, spec: { holderIdentity: 'x', renewTime: now as never } },
      });
    } catch (e) {
      rejected = e;
    }
    expect(statusOf(rejected), describeError(rejected)).toBe(400);
    expect(formatMicroTime(now)).toMatch(MICROTIME);
    const created = await adminLeases.createNamespacedLease({
      namespace: NS,
      body: { metadata: { name }, spec: { holderIdentity: 'x', renewTime: formatMicroTime(now) as never } },
    });
    expect(String(created.spec?.renewTime)).toBe(formatMicroTime(now));
    await adminLeases.deleteNamespacedLease({ name, namespace: NS });
  });

  it('a killed leader (no release) is replaced within leaseDuration + retry, counting a transition', async () => {
    const lease = uniqueName('le-kill');
    const a = candidate(lease);
    const b = candidate(lease);
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    const before = await readLease(lease);
    await new Promise((r) => setTimeout(r, 1000)); // the follower has seen a few renewals

    const killedAt = Date.now();
    await leader.elector.stop(); // stops renewing, leaves the lease held
    expect(leader.stopped).toEqual(['stopped']);
    expect(leader.leadingSignal?.aborted).toBe(true);
    expect((await readLease(lease)).spec?.holderIdentity).toBe(leader.elector.identity);

    await waitFor(() => follower.startedAt, { timeoutMs: 15_000, intervalMs: 50, message: 'takeover' });
    const took = (follower.startedAt as number) - killedAt;
    // The follower waits a full lease duration from the last change it observed (its own clock), then
    // acquires at its next jittered retry: between ~leaseDuration − one retry and leaseDuration + two.
    expect(took).toBeGreaterThan(LEASE_S * 1000 - MAX_JITTERED_RETRY_MS - 200);
    expect(took).toBeLessThan(LEASE_S * 1000 + 2 * MAX_JITTERED_RETRY_MS + 1000);

    const after = await readLease(lease);
    expect(after.spec?.holderIdentity).toBe(follower.elector.identity);
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
    expect(String(after.spec?.acquireTime)).not.toBe(String(before.spec?.acquireTime));
    expect(String(after.spec?.acquireTime)).toMatch(MICROTIME);
  });

  it('a graceful release hands over in about one retry period', async () => {
    const lease = uniqueName('le-release');
    const a = candidate(lease);
    const b = candidate(lease);
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    await new Promise((r) => setTimeout(r, 1000));
    const before = await readLease(lease);

    const releasedAt = Date.now();
    expect(await leader.elector.release()).toBe(true);
    expect(leader.stopped).toEqual(['released']);
    expect(leader.elector.isLeader()).toBe(false);
    expect(await leaderGauge(leader)).toBe(0);

    await waitFor(() => follower.startedAt, { timeoutMs: 10_000, intervalMs: 50, message: 'takeover' });
    const took = (follower.startedAt as number) - releasedAt;
    expect(took).toBeLessThan(MAX_JITTERED_RETRY_MS + 1000);
    expect(took).toBeLessThan(LEASE_S * 1000);
    const after = await readLease(lease);
    expect(after.spec?.holderIdentity).toBe(follower.elector.identity);
    expect(after.spec?.leaseDurationSeconds).toBe(LEASE_S);
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
    expect(await leaderGauge(follower)).toBe(1);
  });

  it('a release leaves holder empty and leaseDurationSeconds 1 when nobody takes over', async () => {
    const lease = uniqueName('le-alone');
    const a = candidate(lease);
    await leaderOf([a]);
    expect(await a.elector.release()).toBe(true);
    const l = await readLease(lease);
    expect(l.spec?.holderIdentity ?? '').toBe('');
    expect(l.spec?.leaseDurationSeconds).toBe(1);
    expect(String(l.spec?.renewTime)).toMatch(MICROTIME);
    await waitFor(() => a.leaders.includes(''), { message: "onNewLeader('') after release" });

    // A new candidate takes the released lease at once (transition +1), no lease-duration wait.
    const t0 = Date.now();
    const b = candidate(lease);
    await leaderOf([b]);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect((await readLease(lease)).spec?.leaseTransitions).toBe((l.spec?.leaseTransitions ?? 0) + 1);
  });

  it('loses leadership when it cannot renew before the renew deadline', async () => {
    const lease = uniqueName('le-lost');
    const a = candidate(lease);
    await leaderOf([a]);
    // Someone else (an admin here) writes the lease: our fast-path PUT gets 409, and the record we then
    // read names another holder whose lease is valid by our clock, so every renew fails.
    const cur = await readLease(lease);
    const now = formatMicroTime(new Date());
    const stolenAt = Date.now();
    await adminLeases.replaceNamespacedLease({
      name: lease,
      namespace: NS,
      body: {
        ...cur,
        spec: {
          ...cur.spec,
          holderIdentity: 'intruder',
          renewTime: now as never,
          acquireTime: now as never,
          leaseDurationSeconds: 60,
        },
      },
    });
    await waitFor(() => a.stopped.length > 0, { timeoutMs: 10_000, intervalMs: 50, message: 'onStoppedLeading' });
    const took = Date.now() - stolenAt;
    expect(a.stopped).toEqual(['lost']);
    expect(a.leadingSignal?.aborted).toBe(true);
    expect(a.elector.isLeader()).toBe(false);
    expect(await leaderGauge(a)).toBe(0);
    // It keeps trying for the renew deadline, not longer than deadline + one round.
    expect(took).toBeLessThan(RENEW_S * 1000 + RETRY_S * 1000 + 1500);
    await a.done; // the run loop ended
    expect(a.logs.join('')).toMatch(/409|lost the race|held by another/);
    expect((await readLease(lease)).spec?.holderIdentity).toBe('intruder');
  });

  it('cannot take a lease outside its namespace (RBAC)', async () => {
    const c = candidate(uniqueName('le-rbac'), { namespace: 'default' });
    await new Promise((r) => setTimeout(r, 1500));
    expect(c.elector.isLeader()).toBe(false);
    expect(c.startedAt).toBeUndefined();
    expect(c.logs.join('')).toMatch(/HTTP 403/);
    await c.elector.stop();
    expect(c.stopped).toEqual([]); // never led
  });
});
