// Two daemons (`node dist/cli.js run`, controller identity) sharing one Lease with short settings
// (lease 4 s, renew deadline 3 s, retry 0.5 s): exactly one leads, the probes say what Kubernetes needs to
// hear, a SIGKILLed leader is replaced within lease duration + retry, and a SIGTERMed leader stops within
// its grace period, releases the Lease and leaves the rest of the work to the other.
import { Watch } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import type { ControllerProcess } from '../../harness/controller-process.js';
import { uniqueName, waitFor } from '../support/kube.js';
import {
  type DaemonEnv,
  daemonEnv,
  idleScrape,
  LEASE,
  LEASE_NAMESPACE,
  leaseHolder,
  MAX_JITTERED_RETRY_MS,
  putWorkspace,
  readLease,
  startDaemon,
  waitReady,
  workspaceDoc,
} from './daemon-helpers.js';

const CONTROLLER = 'workspace';
let env: DaemonEnv | undefined;

afterEach(async () => {
  await env?.cleanup();
  env = undefined;
});

/** Starts two daemons and waits until one of them holds the Lease and both report it in their metrics. */
async function pair(prefix: string, config: Record<string, unknown> = {}) {
  env = await daemonEnv(prefix, config);
  const e = env;
  const [a, b] = await Promise.all([startDaemon(e, 'a'), startDaemon(e, 'b')]);
  const holder = await waitFor(
    async () => {
      const h = await leaseHolder(e);
      return h === a.identity || h === b.identity ? h : undefined;
    },
    { timeoutMs: 20_000, message: 'one of the two daemons to hold the Lease' },
  );
  const leader = holder === a.identity ? a : b;
  const follower = leader === a ? b : a;
  await waitFor(async () => (await status(leader)) === 1 && (await status(follower)) === 0, {
    timeoutMs: 10_000,
    message: 'leader_election_master_status 1 on the leader and 0 on the follower',
  });
  return { env: e, leader, follower };
}

async function status(d: ControllerProcess): Promise<number | undefined> {
  return (await d.scrape()).get('leader_election_master_status', { name: env?.leaseName ?? '' });
}

/** Records every holderIdentity the Lease takes, from a watch (a release is visible only for ~1 retry). */
async function watchHolders(e: DaemonEnv): Promise<{ holders: string[]; stop(): void }> {
  const holders: string[] = [];
  const ctl = await new Watch(e.adminKc).watch(
    `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NAMESPACE}/leases`,
    { fieldSelector: `metadata.name=${e.leaseName}` },
    (_type, obj: { spec?: { holderIdentity?: string } }) => {
      const h = obj?.spec?.holderIdentity ?? '';
      if (holders.at(-1) !== h) holders.push(h);
    },
    () => undefined,
  );
  return { holders, stop: () => ctl.abort() };
}

describe('two daemons on one Lease', () => {
  it('exactly one leads; /healthz is 200 on both, /readyz 200 on the follower and on the leader once synced; only the leader reconciles', async () => {
    const { env: e, leader, follower } = await pair('opf');
    // Stable over several renewals: same holder, same 1/0 in the metrics.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 400));
      expect(await leaseHolder(e)).toBe(leader.identity);
      expect([await status(leader), await status(follower)]).toEqual([1, 0]);
    }
    for (const d of [leader, follower]) {
      const h = await d.http('health', '/healthz?verbose');
      expect(h.status, `${d.name} /healthz: ${h.body}`).toBe(200);
      expect(h.body).toMatch(/\[\+\]ping ok/);
      expect(h.body).toMatch(/\[\+\]leader-election ok/);
    }
    const followerReady = await follower.http('health', '/readyz?verbose');
    expect(followerReady.status, followerReady.body).toBe(200);
    const leaderReady = await waitFor(
      async () => {
        const r = await leader.http('health', '/readyz?verbose');
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 20_000, message: 'leader /readyz 200 after its caches synced' },
    );
    expect(leaderReady.body).toMatch(/\[\+\]controller ok/);

    const id = uniqueName('opf');
    await putWorkspace(e, id, workspaceDoc(id));
    await waitReady(e, [id]);
    const led = await idleScrape(leader);
    const followed = await follower.scrape();
    expect(
      led.get('controller_runtime_reconcile_total', { controller: CONTROLLER, result: 'success' }),
    ).toBeGreaterThan(0);
    expect(followed.sum('controller_runtime_reconcile_total')).toBe(0);
    expect(followed.sum('flyte_workspace_external_requests_total', { access: 'write', system: 'flyte' })).toBe(0);
  });

  it('kill -9 of the leader: the follower takes the Lease within lease duration + retry and reconciles a workspace created after the kill', async () => {
    const { env: e, leader, follower } = await pair('opk');
    const transitionsBefore = (await readLease(e))?.spec?.leaseTransitions ?? 0;
    const killedAt = Date.now();
    leader.child.kill('SIGKILL');
    await leader.exited;
    const id = uniqueName('opk');
    await putWorkspace(e, id, workspaceDoc(id));

    const tookOverAt = await waitFor(
      async () => ((await leaseHolder(e)) === follower.identity ? Date.now() : undefined),
      {
        timeoutMs: 20_000,
        intervalMs: 50,
        message: 'the follower to take the Lease',
      },
    );
    const took = tookOverAt - killedAt;
    const leaseMs = LEASE.leaseDurationSeconds * 1000;
    // The follower expires the lease leaseDuration after it last saw it change (≤ one jittered retry
    // before the kill) and tries again within one jittered retry; 1.5 s slack for scheduling.
    expect(took, `takeover after ${took} ms`).toBeLessThanOrEqual(leaseMs + MAX_JITTERED_RETRY_MS + 1500);
    expect(took, `takeover after ${took} ms: before the old lease could have expired`).toBeGreaterThanOrEqual(
      leaseMs - MAX_JITTERED_RETRY_MS - 500,
    );
    expect((await readLease(e))?.spec?.leaseTransitions).toBe(transitionsBefore + 1);

    await waitReady(e, [id], 60_000);
    expect(await status(follower)).toBe(1);
    const s = await idleScrape(follower);
    expect(s.get('controller_runtime_reconcile_total', { controller: CONTROLLER, result: 'success' })).toBeGreaterThan(
      0,
    );
    expect((await follower.http('health', '/readyz')).status).toBe(200);
  });

  it.each([
    {
      what: 'reconciles that finish within the grace period are drained',
      graceSeconds: 8,
      latencyMs: 300,
      workspaces: 6,
      abandoned: false,
    },
    {
      what: 'reconciles that outlast it are abandoned and redone by the follower',
      graceSeconds: 3,
      latencyMs: 1500,
      workspaces: 4,
      abandoned: true,
    },
  ])(
    'SIGTERM of the leader mid-reconcile ($what): it exits 0 within its grace period, releases the Lease (holder empty), and the follower finishes every workspace',
    async ({ graceSeconds, latencyMs, workspaces, abandoned }) => {
      const {
        env: e,
        leader,
        follower,
      } = await pair('opt', {
        reconcile: { concurrency: 2 },
        shutdownGraceSeconds: graceSeconds,
      });
      // Slow FlyteAdmin: every call waits first, so a new workspace takes a while to provision.
      e.flyte.setLatency(latencyMs);
      const ids = Array.from({ length: workspaces }, () => uniqueName('opt'));
      for (const id of ids) await putWorkspace(e, id, workspaceDoc(id));
      const busy = await waitFor(
        async () => {
          const s = await leader.scrape();
          const active = s.get('controller_runtime_active_workers', { controller: CONTROLLER }) ?? 0;
          return active > 0 ? active : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100, message: 'the leader to be reconciling' },
      );
      expect(busy).toBeGreaterThan(0);

      const watch = await watchHolders(e);
      try {
        const termAt = Date.now();
        leader.child.kill('SIGTERM');
        const exit = await Promise.race([
          leader.exited,
          new Promise<undefined>((r) => setTimeout(() => r(undefined), (graceSeconds + 10) * 1000)),
        ]);
        const took = Date.now() - termAt;
        expect(exit, `leader still running ${took} ms after SIGTERM:\n${leader.tail()}`).toBeDefined();
        expect(exit?.code, leader.tail()).toBe(0);
        expect(took, `exit after ${took} ms`).toBeLessThanOrEqual(graceSeconds * 1000);
        expect(leader.logs.some((l) => l.includes('shutting down'))).toBe(true);
        expect(leader.logs.some((l) => l.includes('shutdown hook timed out'))).toBe(false);
        // Drained: a reconcile in flight at SIGTERM still completed its last step before the exit.
        // Abandoned: none did; the daemon said it left them to the next leader.
        const afterTerm = leader.logs.slice(leader.logs.findIndex((l) => l.includes('shutting down')));
        const completed = afterTerm.filter((l) => l.includes('"step":"flyte"') && l.includes('step applied changes'));
        expect(completed.length > 0, leader.tail()).toBe(!abandoned);
        if (abandoned) expect(afterTerm.some((l) => l.includes('in-flight reconciles abandoned'))).toBe(true);

        await waitFor(async () => (await leaseHolder(e)) === follower.identity, {
          timeoutMs: 10_000,
          message: 'the follower to take the released Lease',
        });
        // Released: the holder went to "" (not left to expire), then the follower took it. The Lease watch
        // may deliver the follower's update a moment after the GET above saw it.
        await waitFor(() => watch.holders.at(-1) === follower.identity, {
          timeoutMs: 10_000,
          message: `the Lease watch to see the follower take over: ${JSON.stringify(watch.holders)}`,
        });
        const i = watch.holders.lastIndexOf(leader.identity);
        expect(watch.holders.slice(Math.max(0, i)), JSON.stringify(watch.holders)).toEqual([
          ...(i >= 0 ? [leader.identity] : []),
          '',
          follower.identity,
        ]);
      } finally {
        watch.stop();
      }

      await waitReady(e, ids, 120_000);
      const s = await idleScrape(follower);
      expect(
        s.get('controller_runtime_reconcile_total', { controller: CONTROLLER, result: 'success' }),
      ).toBeGreaterThan(0);
      expect(s.get('flyte_workspace_workspaces', { phase: 'Ready' })).toBe(ids.length);
    },
  );
});
