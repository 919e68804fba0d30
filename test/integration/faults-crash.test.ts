// The controller daemon (`node dist/cli.js run`, leader election on, its own RBAC identity, FlyteAdmin double,
// IAM on moto) SIGKILLed at random points, many times, while ten workspaces are provisioned, then while some
// are modified and five deleted; and workspaces deleted while no controller runs (finalizer, and finalizer
// removed by force → orphan sweep). After every kill nothing that should stay was deleted and nothing foreign
// appeared; after the final restart every workspace is exactly what its document says and every deleted one
// is gone from Kubernetes, IAM and FlyteAdmin.
import { setTimeout as sleep } from 'node:timers/promises';
import { GetRoleCommand } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControllerProcess } from '../../harness/controller-process.js';
import { writeKubeconfigFile } from '../../harness/controlplane.js';
import { FINALIZER, mergeConfig, SOURCE_ANNOTATION, STATUS_ANNOTATION } from '../../src/config/config.js';
import { Project_ProjectState } from '../../src/gen/flyteidl/admin/project_pb.js';
import { parseStatus } from '../../src/reconcile/status.js';
import { putWorkspace, statusOf, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkGone,
  checkProvisioned,
  ensureDistBuilt,
  type FaultEnv,
  managedNamespaceIds,
  type Problem,
  randomBetween,
  report,
  rolesUnder,
  startFaultEnv,
  tempDir,
  waitConverged,
} from '../support/faults.js';
import { uniqueName, waitFor } from '../support/kube.js';

let env: FaultEnv;
let dir: string;
let kubeconfig: string;
let leaseName: string;
let current: ControllerProcess | undefined;
const totals = {
  kills: 0,
  killsDuringProvisioning: 0,
  killsDuringDeletion: 0,
  /** Kills after which some workspace was still not in its final state (work was cut off mid-way). */
  killsWithWorkInFlight: 0,
  controllerlessDeletions: 0,
  invariantChecks: 0,
  workspacesChecked: 0,
  problems: [] as Problem[],
};

beforeAll(async () => {
  await ensureDistBuilt();
  env = await startFaultEnv({ name: 'fcrash', deferStart: true });
  dir = tempDir('fwc-crash');
  kubeconfig = writeKubeconfigFile(env.conn, 'controller', dir);
  leaseName = uniqueName('crash-lease');
  // Slow enough that a kill lands in the middle of a workspace's provisioning or teardown.
  env.flyte.setLatency(150);
}, 240_000);

afterAll(async () => {
  report('faults-crash', {
    kills: totals.kills,
    killsDuringProvisioning: totals.killsDuringProvisioning,
    killsDuringDeletion: totals.killsDuringDeletion,
    killsWithWorkInFlight: totals.killsWithWorkInFlight,
    controllerlessDeletions: totals.controllerlessDeletions,
    invariantChecks: totals.invariantChecks,
    workspacesChecked: totals.workspacesChecked,
    problems: totals.problems.length,
    problemList: totals.problems.slice(0, 10),
  });
  await current?.kill();
  await env?.close();
});

function daemonConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return mergeConfig(env.cfg, {
    leaderElection: {
      enabled: true,
      leaseName,
      leaseDurationSeconds: 3,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.5,
    },
    reconcile: { concurrency: 4, baseBackoffMs: 200, maxBackoffMs: 3000, orphanSweepIntervalSeconds: 3600 },
    logLevel: 'info',
    shutdownGraceSeconds: 5,
    ...over,
  }) as unknown as Record<string, unknown>;
}

async function startDaemon(over: Record<string, unknown> = {}): Promise<ControllerProcess> {
  current = await ControllerProcess.start({
    name: `crash-${totals.kills}`,
    config: daemonConfig(over),
    kubeconfig,
    dir,
  });
  return current;
}

/** Starts the daemon, lets it work for a random while, SIGKILLs it. */
async function killCycle(kind: 'provisioning' | 'deletion'): Promise<void> {
  const d = await startDaemon();
  // Sometimes right after it won the lease (caches still syncing), mostly somewhere while reconciling.
  if (Math.random() < 0.2) {
    await d.waitForLog((l) => l.msg === 'became leader', 30_000);
    await sleep(randomBetween(0, 300));
  } else {
    await d.waitForLog((l) => l.msg === 'caches synced; reconciling', 30_000);
    await sleep(randomBetween(100, 2_500));
  }
  await d.kill('SIGKILL');
  current = undefined;
  totals.kills++;
  if (kind === 'provisioning') totals.killsDuringProvisioning++;
  else totals.killsDuringDeletion++;
  const cms = await env.admin.list('ConfigMap', { namespace: env.sourceNamespace });
  const unfinished = cms.filter((cm) => {
    const phase = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION])?.phase;
    return cm.metadata.deletionTimestamp !== undefined || phase !== 'Ready';
  });
  if (unfinished.length > 0) totals.killsWithWorkInFlight++;
}

const cmRef = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name });

interface Baseline {
  namespaceUid: string;
  roleId: string;
}
const baselines = new Map<string, Baseline>();

async function recordBaseline(id: string): Promise<void> {
  const ns = await env.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: `flyte-${id}` });
  const role = (await env.iamRaw.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role;
  baselines.set(id, { namespaceUid: String(ns?.metadata.uid), roleId: String(role?.RoleId) });
}

/**
 * Holds at every moment, whatever point a kill interrupted: a workspace that should stay and was Ready once
 * still has the same namespace and role (never deleted and re-created), its project is not archived, and
 * nothing exists for an id that was never asked for.
 */
async function checkInvariants(kept: string[], known: Set<string>): Promise<void> {
  const problems: Problem[] = [];
  for (const id of kept) {
    const b = baselines.get(id);
    if (!b) continue;
    totals.workspacesChecked++;
    const ns = await env.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: `flyte-${id}` });
    if (ns?.metadata.uid !== b.namespaceUid) problems.push({ kind: 'wrongly-deleted', what: `Namespace flyte-${id}` });
    if (ns?.metadata.deletionTimestamp)
      problems.push({ kind: 'wrongly-deleted', what: `Namespace flyte-${id} (terminating)` });
    let roleId: string | undefined;
    try {
      roleId = (await env.iamRaw.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role?.RoleId;
    } catch {
      roleId = undefined;
    }
    if (roleId !== b.roleId) problems.push({ kind: 'wrongly-deleted', what: `IAM role of ${id}` });
    const p = env.flyte.project(id);
    if (p?.state !== Project_ProjectState.ACTIVE)
      problems.push({ kind: 'wrongly-deleted', what: `Flyte project ${id}` });
  }
  for (const [id, ns] of await managedNamespaceIds(env.admin, env.cfg)) {
    if (ns.metadata.annotations?.[SOURCE_ANNOTATION]?.startsWith(`${env.sourceNamespace}/`) && !known.has(id)) {
      problems.push({ kind: 'leaked', what: `Namespace ${ns.metadata.name}` });
    }
  }
  for (const r of await rolesUnder(env.iamRaw, env.rolePath)) {
    if (!r.workspaceId || !known.has(r.workspaceId)) problems.push({ kind: 'leaked', what: `IAM role ${r.name}` });
  }
  for (const p of env.flyte.inspect().projects) {
    if (!known.has(p.id)) problems.push({ kind: 'leaked', what: `Flyte project ${p.id}` });
  }
  totals.invariantChecks++;
  totals.problems.push(...problems);
  expect(problems).toEqual([]);
}

async function convergeAll(keep: Map<string, Record<string, unknown>>, gone: string[], timeoutMs = 120_000) {
  for (const [id, doc] of keep) {
    totals.workspacesChecked++;
    try {
      await waitConverged(() => checkProvisioned(env, id, doc), timeoutMs, `${id} converged`);
    } catch (e) {
      totals.problems.push(...(await checkProvisioned(env, id, doc)));
      throw new Error(`${(e as Error).message}\ndaemon log:\n${current?.tail(40)}`);
    }
    // The status is written after the last step; under load it can trail the resources a little.
    await waitFor(async () => ((await statusOf(env, id))?.phase === 'Ready' ? true : undefined), {
      timeoutMs: 30_000,
      message: `${id} status Ready`,
    });
    expect((await statusOf(env, id))?.phase).toBe('Ready');
  }
  for (const id of gone) {
    totals.workspacesChecked++;
    await waitFor(async () => ((await env.admin.get(cmRef(id))) ? undefined : true), {
      timeoutMs,
      message: `${id} released`,
    });
    await waitConverged(() => checkGone(env, id), 30_000, `${id} gone`).catch(async (e) => {
      totals.problems.push(...(await checkGone(env, id)));
      throw e;
    });
  }
}

describe('controller daemon killed (SIGKILL) at random points', { tags: ['slow'] }, () => {
  const ids = Array.from({ length: 10 }, () => uniqueName('kc'));
  const known = new Set(ids);
  const docs = new Map(ids.map((id) => [id, workspaceDoc(id)] as const));

  it('during provisioning of ten workspaces, 8 times: after a restart all ten are exactly provisioned', async () => {
    await Promise.all(ids.map((id) => putWorkspace(env, id, docs.get(id))));
    for (let i = 0; i < 8; i++) {
      await killCycle('provisioning');
      await checkInvariants(ids, known);
    }
    await startDaemon();
    await convergeAll(docs, []);
    for (const id of ids) await recordBaseline(id);
    await checkInvariants(ids, known);
    // One project per workspace, each with its six attribute rows.
    expect(
      env.flyte
        .inspect()
        .projects.map((p) => p.id)
        .sort(),
    ).toEqual([...ids].sort());
    expect((await rolesUnder(env.iamRaw, env.rolePath)).map((r) => r.workspaceId).sort()).toEqual([...ids].sort());
  });

  it('while two are modified and five deleted, 8 more times: the rest stays, the five are gone everywhere', async () => {
    const deleted = ids.slice(0, 5);
    const modified = ids.slice(5, 7);
    const kept = ids.slice(5);
    for (const id of modified) {
      const doc = workspaceDoc(id);
      (doc.users as unknown[]).push({ user_id: 'u8', email: `crash-${id}@example.com`, role: 'owner' });
      docs.set(id, doc);
      await putWorkspace(env, id, doc);
    }
    for (const id of deleted) await env.admin.delete(cmRef(id));
    await current?.kill('SIGKILL');
    current = undefined;
    for (let i = 0; i < 8; i++) {
      await killCycle('deletion');
      await checkInvariants(kept, known);
    }
    await startDaemon();
    await convergeAll(new Map(kept.map((id) => [id, docs.get(id) as Record<string, unknown>])), deleted);
    await checkInvariants(kept, known);
    expect((await rolesUnder(env.iamRaw, env.rolePath)).map((r) => r.workspaceId).sort()).toEqual([...kept].sort());
    const active = env.flyte.inspect().projects.filter((p) => p.state === Project_ProjectState.ACTIVE);
    expect(active.map((p) => p.id).sort()).toEqual([...kept].sort());
    for (const id of deleted)
      expect(env.flyte.project(id)?.state ?? Project_ProjectState.ARCHIVED).toBe(Project_ProjectState.ARCHIVED);
  });

  it('ConfigMap deleted while no controller runs: cleaned up on start (finalizer)', async () => {
    const id = ids[7] as string;
    await current?.kill('SIGKILL');
    current = undefined;
    totals.kills++;
    await env.admin.delete(cmRef(id));
    const held = await env.admin.get(cmRef(id));
    expect(held?.metadata.deletionTimestamp).toBeDefined();
    expect(held?.metadata.finalizers).toContain(FINALIZER);
    totals.controllerlessDeletions++;
    await startDaemon();
    const keep = ids.slice(8);
    await convergeAll(new Map(keep.map((k) => [k, docs.get(k) as Record<string, unknown>])), [id]);
    await checkInvariants(keep, known);
  });

  it('finalizer removed by force, then deleted, while no controller runs: the orphan sweep cleans up', async () => {
    const id = ids[8] as string;
    const survivor = ids[9] as string;
    await current?.kill('SIGKILL');
    current = undefined;
    totals.kills++;
    await env.admin.mergePatch(cmRef(id), { metadata: { finalizers: [] } });
    await env.admin.delete(cmRef(id));
    expect(await env.admin.get(cmRef(id))).toBeUndefined();
    totals.controllerlessDeletions++;
    // Its namespace, role and project are still there: only the sweep can know they are orphans.
    expect(await env.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: `flyte-${id}` })).toBeDefined();
    const d = await startDaemon({
      reconcile: { concurrency: 4, baseBackoffMs: 200, maxBackoffMs: 3000, orphanSweepIntervalSeconds: 2 },
    });
    totals.workspacesChecked++;
    await waitConverged(() => checkGone(env, id), 120_000, `${id} swept`).catch(async (e) => {
      totals.problems.push(...(await checkGone(env, id)));
      throw new Error(`${(e as Error).message}\n${d.tail(40)}`);
    });
    expect(env.flyte.project(id)?.state).toBe(Project_ProjectState.ARCHIVED);
    expect(d.hasLog((l) => l.msg === 'workspace ConfigMap is gone: removing orphaned resources')).toBe(true);
    // The sweep left the live workspace alone.
    await convergeAll(new Map([[survivor, docs.get(survivor) as Record<string, unknown>]]), []);
    await checkInvariants([survivor], known);
    expect(totals.problems).toEqual([]);
  });
});
