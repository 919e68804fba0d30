// Two (then three) controller daemons (`node dist/cli.js run`) behind Lease leader election, each reaching
// kube-apiserver through a proxy of its own, so the proxy log is that process's audit trail of Kubernetes
// writes; their /metrics give each process's write counter across Kubernetes, IAM and FlyteAdmin. The Lease
// is sampled throughout to get the holder history. The leader is killed (SIGKILL) in the middle of
// reconciles, and another leader is frozen (SIGSTOP) past its lease and then resumed:
//   * the new leader finishes every workspace;
//   * no process ever writes while the Lease names another holder (two leaders never act at once);
//   * a follower's write counter stays at zero until it holds the Lease.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControllerProcess } from '../../harness/controller-process.js';
import { mergeConfig, STATUS_ANNOTATION } from '../../src/config/config.js';
import { parseStatus } from '../../src/reconcile/status.js';
import { putWorkspace, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkProvisioned,
  ensureDistBuilt,
  type FaultEnv,
  type KubeProxy,
  type Problem,
  report,
  startFaultEnv,
  startKubeProxy,
  tempDir,
  waitConverged,
} from '../support/faults.js';
import { kubeConfigFor, uniqueName, waitFor } from '../support/kube.js';

const NS = 'flyte-workspace-controller';
let env: FaultEnv;
let dir: string;
let leaseName: string;
const daemons: { d: ControllerProcess; proxy: KubeProxy; name: string }[] = [];
const holders: { t: number; holder: string }[] = [];
const writeSamples: { t: number; name: string; writes: number }[] = [];
let sampler: NodeJS.Timeout | undefined;
let leaseSampler: NodeJS.Timeout | undefined;
const totals = {
  leaderKills: 0,
  leaderFreezes: 0,
  workspacesChecked: 0,
  overlappingWrites: 0,
  problems: [] as Problem[],
};

beforeAll(async () => {
  await ensureDistBuilt();
  env = await startFaultEnv({ name: 'fleader', deferStart: true });
  dir = tempDir('fwc-leader');
  leaseName = uniqueName('leader-lease');
  const leases = kubeConfigFor('admin', env.conn).makeApiClient(CoordinationV1Api);
  // Separate samplers: scraping a frozen (SIGSTOPped) process blocks for its 3 s timeout, and must not
  // delay the Lease samples that the tenure checks are judged by.
  let samplingLease = false;
  leaseSampler = setInterval(async () => {
    if (samplingLease) return;
    samplingLease = true;
    try {
      const t = Date.now();
      const lease = await leases.readNamespacedLease({ name: leaseName, namespace: NS }).catch(() => undefined);
      const holder = lease?.spec?.holderIdentity ?? '';
      if (holders.at(-1)?.holder !== holder) holders.push({ t, holder });
    } finally {
      samplingLease = false;
    }
  }, 100);
  const samplingWrites = new Set<string>(); // per daemon, so a frozen one delays only its own samples
  sampler = setInterval(() => {
    for (const { d, name } of daemons) {
      if (!d.alive || samplingWrites.has(name)) continue;
      samplingWrites.add(name);
      void d
        .writeCount()
        .then((writes) => writeSamples.push({ t: Date.now(), name, writes }))
        .catch(() => undefined)
        .finally(() => samplingWrites.delete(name));
    }
  }, 100);
}, 240_000);

afterAll(async () => {
  clearInterval(sampler);
  clearInterval(leaseSampler);
  report('faults-leader', {
    leaderKills: totals.leaderKills,
    leaderFreezes: totals.leaderFreezes,
    workspacesChecked: totals.workspacesChecked,
    overlappingWrites: totals.overlappingWrites,
    leaseHolders: holders.map((h) => h.holder.slice(-8)),
    problems: totals.problems.length,
  });
  for (const { d, proxy } of daemons) {
    await d.kill();
    await proxy.close();
  }
  await env?.close();
});

async function startDaemon(name: string): Promise<{ d: ControllerProcess; proxy: KubeProxy; name: string }> {
  const proxy = await startKubeProxy(env.conn);
  const config = mergeConfig(env.cfg, {
    leaderElection: {
      enabled: true,
      leaseName,
      leaseDurationSeconds: 3,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.5,
    },
    reconcile: { concurrency: 4, baseBackoffMs: 200, maxBackoffMs: 3000 },
    logLevel: 'info',
  }) as unknown as Record<string, unknown>;
  const d = await ControllerProcess.start({ name, config, kubeconfig: proxy.kubeconfigFile('controller', dir), dir });
  const entry = { d, proxy, name };
  daemons.push(entry);
  return entry;
}

/** When the Lease (as sampled) named `identity` as holder: [from, to) intervals. */
function tenures(identity: string): [number, number][] {
  const out: [number, number][] = [];
  holders.forEach((h, i) => {
    if (h.holder === identity) out.push([h.t, holders[i + 1]?.t ?? Number.POSITIVE_INFINITY]);
  });
  return out;
}

/**
 * Every Kubernetes write a process made (other than its Lease) happened while the Lease named it. The Lease is
 * sampled every 100 ms, so a write is allowed up to one sample interval around a tenure's edges.
 */
function writesOutsideTenure(entry: { d: ControllerProcess; proxy: KubeProxy }): string[] {
  const mine = tenures(entry.d.identity);
  const slack = 250;
  return entry.proxy
    .writes()
    .filter((w) => !w.path.includes('/leases'))
    .filter((w) => !mine.some(([from, to]) => w.at >= from - slack && w.at <= to + slack))
    .map((w) => `${w.method} ${w.path} at ${new Date(w.at).toISOString()}`);
}

const phaseOf = async (name: string) => {
  const cm = await env.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });
  return parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION])?.phase;
};

async function converge(ids: string[]): Promise<void> {
  for (const id of ids) {
    totals.workspacesChecked++;
    try {
      await waitConverged(() => checkProvisioned(env, id, workspaceDoc(id)), 90_000, `${id} converged`);
    } catch (e) {
      totals.problems.push(...(await checkProvisioned(env, id, workspaceDoc(id))));
      throw e;
    }
  }
}

describe('leader election under faults', () => {
  it('leader SIGKILLed mid-reconcile: the follower takes over and finishes; never two writers at once', async () => {
    env.flyte.setLatency(400); // reconciles take seconds
    const a = await startDaemon('A');
    await a.d.waitForLog((l) => l.msg === 'caches synced; reconciling', 30_000);
    const b = await startDaemon('B');
    await b.d.waitForLog((l) => l.msg === 'following leader', 30_000);
    const ids = Array.from({ length: 6 }, () => uniqueName('ld'));
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    // Kill the leader once it has written something and while workspaces are still being provisioned.
    await waitFor(
      async () => {
        const phases = await Promise.all(ids.map(phaseOf));
        return (await a.d.writeCount()) > 0 && phases.some((p) => p !== 'Ready') ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'leader mid-reconcile' },
    );
    const followerWritesWhileFollowing = await b.d.writeCount();
    const unfinished = (await Promise.all(ids.map(phaseOf))).filter((p) => p !== 'Ready').length;
    const killedAt = Date.now();
    await a.d.kill('SIGKILL');
    totals.leaderKills++;
    await b.d.waitForLog((l) => l.msg === 'became leader', 30_000);
    env.flyte.setLatency(0);
    await converge(ids);

    expect(followerWritesWhileFollowing).toBe(0);
    expect(unfinished).toBeGreaterThan(0);
    expect(await b.d.writeCount()).toBeGreaterThan(0);
    // Lease history: A, then B, B acquiring only after A died (a lease duration later).
    const seq = holders.map((h) => h.holder).filter((h) => h === a.d.identity || h === b.d.identity);
    expect(seq).toEqual([a.d.identity, b.d.identity]);
    const bFrom = tenures(b.d.identity)[0]?.[0] ?? 0;
    expect(bFrom).toBeGreaterThan(killedAt);
    // The follower's metric stayed at zero for as long as the Lease was A's.
    const bEarly = writeSamples.filter((s) => s.name === 'B' && s.t < bFrom - 250);
    expect(bEarly.length).toBeGreaterThan(0);
    expect(bEarly.every((s) => s.writes === 0)).toBe(true);
    for (const entry of [a, b]) {
      const outside = writesOutsideTenure(entry);
      totals.overlappingWrites += outside.length;
      expect(outside, `${entry.name} wrote while not holding the Lease`).toEqual([]);
    }
    for (const id of ids) expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
  });

  it('leader frozen (SIGSTOP) past its lease, then resumed: the new leader finishes, the old one writes nothing more', async () => {
    const b = daemons.find((x) => x.name === 'B');
    expect(b?.d.alive).toBe(true);
    if (!b) return;
    const c = await startDaemon('C');
    await c.d.waitForLog((l) => l.msg === 'following leader', 30_000);
    env.flyte.setLatency(400);
    const ids = Array.from({ length: 6 }, () => uniqueName('lf'));
    const before = await b.d.writeCount();
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    await waitFor(
      async () => {
        const phases = await Promise.all(ids.map(phaseOf));
        return (await b.d.writeCount()) > before && phases.some((p) => p !== 'Ready') ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'leader mid-reconcile' },
    );
    b.d.signal('SIGSTOP');
    totals.leaderFreezes++;
    await c.d.waitForLog((l) => l.msg === 'became leader', 30_000);
    await sleep(1_500); // the new leader is at work
    const resumedAt = Date.now();
    b.d.signal('SIGCONT');
    // The old leader must notice it lost the Lease and stop (the daemon exits) without acting again.
    await Promise.race([b.d.exited, sleep(15_000)]);
    env.flyte.setLatency(0);
    await converge(ids);
    expect(b.d.alive).toBe(false);
    const outsideC = writesOutsideTenure(c);
    expect(outsideC, 'C wrote while not holding the Lease').toEqual([]);
    // The frozen process may have been stopped between deciding to send a request and sending it: such a
    // request (at most one per worker, 4) leaves the socket right after SIGCONT. Anything later, or more
    // than that, is the old leader acting on its own after losing the Lease. (Without a check of the Lease
    // before every write, it went on reconciling for hundreds of milliseconds: 11 Kubernetes writes, plus
    // its IAM and FlyteAdmin calls.)
    const outsideB = writesOutsideTenure(b);
    totals.overlappingWrites += outsideB.length + outsideC.length;
    const late = b.proxy
      .writes(resumedAt + 300)
      .filter((w) => !w.path.includes('/leases'))
      .map((w) => `${w.method} ${w.path}`);
    expect(late, 'B wrote after resuming').toEqual([]);
    expect(outsideB.length, `B wrote while not holding the Lease: ${outsideB.join(', ')}`).toBeLessThanOrEqual(4);
    for (const id of ids) expect(env.flyte.inspect().projects.filter((p) => p.id === id)).toHaveLength(1);
    expect(totals.problems).toEqual([]);
  });
});
