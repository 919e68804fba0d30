// The hostile workspace.json corpus (test/data/hostile, 211 cases from scripts/gen-hostile-corpus.ts; the ones
// that are not valid UTF-8 go in as binaryData) plus a ~1 MiB ConfigMap and a document with a lone surrogate
// (which the API server turns into U+FFFD) generated here, replayed through the running controller (own
// RBAC, FlyteAdmin double, moto IAM):
//   * each as a NEW workspace ConfigMap, all at once: no crash, status Invalid naming the expected field,
//     a Warning InvalidSpec Event, nothing provisioned anywhere;
//   * over EXISTING Ready workspaces, one document after another: every resource (namespace, quota, network
//     policy, service account, bindings, IAM role, Flyte project and attributes) stays exactly as it was,
//     also through an orphan sweep, and the workspaces come back Ready on the same objects afterwards.
import { GetRoleCommand } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANAGED_KINDS } from '../../src/adapters/kubernetes.js';
import { FINALIZER, SOURCE_ANNOTATION, STATUS_ANNOTATION } from '../../src/config/config.js';
import { workspaceSelector } from '../../src/desired/kubernetes.js';
import { clipMessage, parseStatus } from '../../src/reconcile/status.js';
import { formatFieldErrors, parseWorkspace } from '../../src/spec/workspace.js';
import { putWorkspace, waitForStatus, workspaceDoc } from '../support/controller-fixture.js';
import {
  checkGone,
  checkProvisioned,
  type FaultEnv,
  managedNamespaceIds,
  type Problem,
  report,
  startFaultEnv,
  sumSeries,
  waitConverged,
} from '../support/faults.js';
import { type HostileCase, loadHostileCorpus, namesField } from '../support/hostile-corpus.js';
import { uniqueName, waitFor } from '../support/kube.js';

const cases = loadHostileCorpus();

// ~1 MiB: a well-formed document padded to just under the ConfigMap size limit (1 MiB of data in total).
const big: HostileCase = {
  name: 'generated-1MiB.json',
  field: 'workspace.json',
  document: JSON.stringify({ ...workspaceDoc('hostile-big'), padding: 'x'.repeat(1_040_000) }),
};
// A lone surrogate in the data text (not valid Unicode): the request body carries it as a "\ud800" escape,
// which the API server decodes to U+FFFD, the form in which such text reaches the controller through `data`.
const loneSurrogate: HostileCase = {
  name: 'generated-lone-surrogate-through-the-api-server',
  field: 'workspace_name',
  document: JSON.stringify({ ...workspaceDoc('hostile-surrogate'), workspace_name: 'Hostile <> WS' }).replace(
    '<>',
    '\ud800',
  ),
};
const all = [...cases, big, loneSurrogate];

/** The document as the controller reads it back from the API server. */
const stored = (c: HostileCase) => (typeof c.document === 'string' ? c.document.toWellFormed() : c.document);

let env: FaultEnv;
const totals = { hostileInputs: 0, existingWorkspaceOverwrites: 0, workspacesChecked: 0, problems: [] as Problem[] };

beforeAll(async () => {
  env = await startFaultEnv({
    name: 'hostile',
    config: {
      // As in production, where workspace-platform is a source namespace: no workspace may map onto it
      // (the corpus was generated against the default configuration).
      reservedNamespaces: ['workspace-platform'],
      aws: { orphanSweep: { enabled: true, dryRun: false } },
      reconcile: { concurrency: 4 },
    },
  });
});

afterAll(async () => {
  report('hostile-input', {
    hostileInputs: totals.hostileInputs,
    existingWorkspaceOverwrites: totals.existingWorkspaceOverwrites,
    workspacesChecked: totals.workspacesChecked,
    problems: totals.problems.length,
  });
  await env?.close();
});

/** What the controller writes as lastError for an invalid document (computed the same way). */
function expectedLastError(c: HostileCase): string {
  const parsed = parseWorkspace(stored(c), env.cfg);
  if (parsed.ok) throw new Error('expected an invalid document');
  return clipMessage(`invalid ${env.cfg.configMapKey}: ${formatFieldErrors(parsed.errors)}`);
}

/** Well-formed workspace ids named by the corpus documents (what could have been provisioned). */
function namedIds(): string[] {
  const ids = new Set<string>();
  for (const c of all) {
    try {
      const id = (JSON.parse(c.document.toString('utf8')) as { workspace_id?: unknown })?.workspace_id;
      if (typeof id === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(id) && id.length <= 63) ids.add(id);
    } catch {
      // not JSON
    }
  }
  return [...ids];
}

/**
 * Writes a hostile document with a JSON body (create, then merge patch), as a JSON client would: text into
 * data, bytes into binaryData, the other key removed. Not server-side apply: its body is read as YAML, which
 * refuses text that is not Unicode with a 400, whereas a JSON body's lone surrogates (and invalid bytes) are
 * stored as U+FFFD, which is how such text reaches the controller.
 */
async function writeHostile(name: string, document: string | Buffer): Promise<void> {
  const key = env.cfg.configMapKey;
  const data = typeof document === 'string' ? { [key]: document } : undefined;
  const binaryData = Buffer.isBuffer(document) ? { [key]: document.toString('base64') } : undefined;
  const ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name };
  if (await env.admin.get(ref)) {
    await env.admin.mergePatch(ref, { data: data ?? { [key]: null }, binaryData: binaryData ?? { [key]: null } });
    return;
  }
  await env.admin.create({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: env.sourceNamespace, labels: { app: 'workspace-config' } },
    ...(data ? { data } : { binaryData }),
  });
}

async function inBatches<T>(items: T[], size: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) {
    await Promise.all(items.slice(i, i + size).map((item, j) => fn(item, i + j)));
  }
}

describe('hostile workspace documents through the running controller', () => {
  it('the corpus is rejected by the controller configuration under test, each case naming its field', () => {
    expect(cases.length).toBeGreaterThanOrEqual(200);
    for (const c of all) {
      const parsed = parseWorkspace(stored(c), env.cfg);
      expect(parsed.ok, `${c.name} is valid under the test configuration`).toBe(false);
      if (!parsed.ok)
        expect(
          namesField(
            parsed.errors.map((e) => e.field),
            c.field,
          ),
          c.name,
        ).toBe(true);
    }
  });

  it('each as a new ConfigMap, all at once: Invalid naming the field, a Warning Event, nothing provisioned', async () => {
    env.aws.resetCounts();
    env.flyte.resetCounters();
    const name = (i: number) => `hostile-${String(i).padStart(3, '0')}`;
    await inBatches(all, 16, async (c, i) => {
      await writeHostile(name(i), c.document);
      totals.hostileInputs++;
    });
    const statuses = await waitFor(
      async () => {
        const cms = await env.admin.list('ConfigMap', { namespace: env.sourceNamespace });
        const byName = new Map(cms.map((cm) => [cm.metadata.name, cm]));
        const out = all.map((_, i) => byName.get(name(i)));
        return out.every((cm) => parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION])?.phase) ? out : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, message: 'a status on every hostile ConfigMap' },
    );
    const wrong: string[] = [];
    statuses.forEach((cm, i) => {
      const c = all[i] as HostileCase;
      const s = parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION]);
      const fields = s?.invalidFields?.map((e) => e.field) ?? [];
      if (s?.phase !== 'Invalid' || !namesField(fields, c.field)) {
        wrong.push(`${c.name}: phase ${s?.phase}, fields ${JSON.stringify(fields)}, expected ${c.field}`);
      }
      if (cm?.metadata.finalizers?.includes(FINALIZER)) wrong.push(`${c.name}: got the finalizer`);
      if (s?.owner) wrong.push(`${c.name}: marked owner`);
    });
    expect(wrong).toEqual([]);

    await env.controller.waitIdle();
    const events = await env.admin.list('Event', { namespace: env.sourceNamespace });
    const warned = new Set(
      events
        .filter((e) => e.type === 'Warning' && e.reason === 'InvalidSpec')
        .map((e) => (e.involvedObject as { name: string }).name),
    );
    expect(all.map((_, i) => name(i)).filter((n) => !warned.has(n))).toEqual([]);

    // Nothing provisioned: not a single IAM or FlyteAdmin call, no namespace from this source namespace.
    expect(env.aws.total()).toBe(0);
    expect(env.flyte.calls().reads + env.flyte.calls().writes).toBe(0);
    const fromHere = [...(await managedNamespaceIds(env.admin, env.cfg)).values()].filter((ns) =>
      ns.metadata.annotations?.[SOURCE_ANNOTATION]?.startsWith(`${env.sourceNamespace}/`),
    );
    expect(fromHere.map((ns) => ns.metadata.name)).toEqual([]);
    for (const id of namedIds()) {
      totals.workspacesChecked++;
      const problems = await checkGone(env, id);
      totals.problems.push(...problems);
      expect(problems, id).toEqual([]);
    }
    // No crash and no unexpected reconcile error; the controller still serves a valid workspace.
    const metrics = await env.metrics.render();
    expect(sumSeries(metrics, 'controller_runtime_reconcile_errors_total')).toBe(0);
    expect(sumSeries(metrics, 'flyte_workspace_step_failures_total', /step="spec"/)).toBeGreaterThanOrEqual(all.length);
    const witness = uniqueName('hw');
    await putWorkspace(env, witness, workspaceDoc(witness));
    await waitConverged(() => checkProvisioned(env, witness, workspaceDoc(witness)), 60_000, 'witness');
    totals.workspacesChecked++;
  });

  it('over existing Ready workspaces, one after another: every resource stays intact, also through an orphan sweep', async () => {
    const ids = [uniqueName('hx'), uniqueName('hx'), uniqueName('hx'), uniqueName('hx')];
    await Promise.all(ids.map((id) => putWorkspace(env, id, workspaceDoc(id))));
    for (const id of ids) {
      await waitConverged(() => checkProvisioned(env, id, workspaceDoc(id)), 60_000, `${id} provisioned`);
    }
    await env.controller.waitIdle();
    const snapshot = async () => {
      const out = new Map<string, string>();
      for (const id of ids) {
        for (const kind of MANAGED_KINDS) {
          for (const o of await env.admin.list(kind, { labelSelector: workspaceSelector(env.cfg, id) })) {
            out.set(
              `${kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`,
              `${o.metadata.uid}@${o.metadata.resourceVersion}`,
            );
          }
        }
        const role = (await env.iamRaw.send(new GetRoleCommand({ RoleName: `FlyteWorkspace-${id}-Role` }))).Role;
        out.set(`role/${id}`, `${role?.RoleId}`);
        const p = env.flyte.project(id);
        out.set(`project/${id}`, `${p?.state}/${p?.name}/${JSON.stringify(p?.labels?.values)}`);
        const attrs = env.flyte.inspect().attributes.filter((a) => a.project === id);
        out.set(`attributes/${id}`, JSON.stringify(attrs.map((a) => `${a.domain}/${a.resourceType}`).sort()));
      }
      return out;
    };
    const before = await snapshot();
    expect(before.size).toBeGreaterThan(ids.length * 8);
    env.aws.resetCounts();
    env.flyte.resetCounters();
    const kubeWritesBefore = new Map(env.controller.kube.stats.byOperation);

    // Each workspace takes a quarter of the corpus, in sequence; every document must be seen (its exact
    // lastError) before the next one is written.
    await Promise.all(
      ids.map(async (id, w) => {
        for (const c of all.filter((_, i) => i % ids.length === w)) {
          await writeHostile(id, c.document);
          totals.existingWorkspaceOverwrites++;
          totals.hostileInputs++;
          const want = expectedLastError(c);
          await waitFor(
            async () => {
              const cm = await env.admin.get({
                apiVersion: 'v1',
                kind: 'ConfigMap',
                namespace: env.sourceNamespace,
                name: id,
              });
              const s = parseStatus(cm?.metadata.annotations?.[STATUS_ANNOTATION]);
              return s?.phase === 'Invalid' && s.lastError === want ? true : undefined;
            },
            { timeoutMs: 30_000, intervalMs: 50, message: `${id} reporting ${c.name}` },
          );
        }
      }),
    );
    // While every workspace holds a hostile document (most name another, well-formed id): an orphan sweep.
    await env.controller.runOrphanSweep();
    await env.controller.waitIdle();
    const during = await snapshot();
    const changed = [...before].filter(([k, v]) => during.get(k) !== v).map(([k]) => k);
    expect(changed).toEqual([]);
    expect(env.aws.writeCounts()).toEqual({});
    expect(env.flyte.calls().writes).toBe(0);
    const kubeWrites = [...env.controller.kube.stats.byOperation]
      .filter(([op, n]) => n !== (kubeWritesBefore.get(op) ?? 0))
      .map(([op]) => op)
      .filter((op) => !/^(get|list)_/.test(op));
    // Only status on the ConfigMaps and Events: no managed object was written or deleted.
    expect(kubeWrites.every((op) => /^(apply_ConfigMap|create_Event|patch_Event)$/.test(op))).toBe(true);

    // Fixed documents: Ready again on exactly the same objects (uids; resourceVersions may move only if
    // something drifted, and nothing did).
    await Promise.all(ids.map((id) => writeHostile(id, JSON.stringify(workspaceDoc(id)))));
    for (const id of ids) {
      await waitForStatus(env, id, (s) => s.phase === 'Ready');
      totals.workspacesChecked++;
      const problems = await checkProvisioned(env, id, workspaceDoc(id));
      totals.problems.push(...problems);
      expect(problems, id).toEqual([]);
    }
    await env.controller.waitIdle();
    const after = await snapshot();
    const uid = (v: string | undefined) => v?.split('@')[0];
    expect([...before].filter(([k, v]) => uid(after.get(k)) !== uid(v)).map(([k]) => k)).toEqual([]);
    expect(totals.problems).toEqual([]);
  });
});
