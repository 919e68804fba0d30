// The on-call commands against real workspace ConfigMaps reconciled by a running controller (out of
// process, under its own ServiceAccount), run as `node dist/cli.js` under the identity of a person on call:
// user oncall@example.com in group flyte-workspace-oncall, holding nothing but the ClusterRole and the
// example RoleBinding of manifests/oncall-rbac.yaml (bound here in the test's source namespace).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { loadAllYaml, loadYaml } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLI } from '../../harness/controller-process.js';
import { writeKubeconfigFile } from '../../harness/controlplane.js';
import { RECONCILE_REQUEST_ANNOTATION } from '../../src/config/config.js';
import { applyManifestFile, waitFor } from '../support/kube.js';
import {
  type Daemon,
  type DaemonEnv,
  daemonEnv,
  putWorkspace,
  ROOT,
  startDaemon,
  waitReady,
  workspaceDoc,
  workspaceStatus,
} from './daemon-helpers.js';

const ONCALL_RBAC = join(ROOT, 'manifests', 'oncall-rbac.yaml');

let env: DaemonEnv;
let daemon: Daemon;
let oncallKubeconfig: string;
let ns: string;
const healthy = ['alpha', 'beta'];
const BROKEN = 'broken';
/** A bucket outside the configured bucketPatterns: a document error with an exact field. */
const brokenDoc = () => workspaceDoc(`${ns}-broken`.slice(0, 40), { data_bucket: 'someone-elses-bucket' });

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { kubeconfig?: string; columns?: number } = {}): Promise<Run> {
  const child = spawnCli(args, opts);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  return once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

function spawnCli(args: string[], opts: { kubeconfig?: string; columns?: number } = {}) {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, COLUMNS: String(opts.columns ?? 0) };
  for (const k of Object.keys(childEnv)) if (k.startsWith('FWC_') || k === 'KUBECONFIG') delete childEnv[k];
  return spawn(process.execPath, [CLI, ...args, '--kubeconfig', opts.kubeconfig ?? oncallKubeconfig], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** The table's cells, split on the three-space column gap. */
const cells = (line: string) => line.split(/\s{3,}/);

beforeAll(async () => {
  env = await daemonEnv('day2', { leaderElection: { enabled: false } });
  ns = env.sourceNamespace;
  // The shipped on-call RBAC: the ClusterRole as is, the example RoleBinding moved to this namespace.
  await applyManifestFile(env.adminKc, ONCALL_RBAC);
  const binding = (loadAllYaml(readFileSync(ONCALL_RBAC, 'utf8')) as { kind: string; metadata: object }[]).find(
    (d) => d.kind === 'RoleBinding',
  );
  await env.admin.apply({ ...binding, metadata: { ...binding?.metadata, namespace: ns } } as never, {
    fieldManager: 'test-admin',
  });
  oncallKubeconfig = writeKubeconfigFile(inject('kube'), 'oncall', env.dir);
  daemon = await startDaemon(env, 'a');
  for (const name of healthy) await putWorkspace(env, name, workspaceDoc(`${ns}-${name}`.slice(0, 40)));
  await putWorkspace(env, BROKEN, brokenDoc());
  await waitReady(env, healthy, 90_000);
  await waitFor(async () => (await workspaceStatus(env, BROKEN))?.phase === 'Invalid', {
    timeoutMs: 30_000,
    message: `${BROKEN} Invalid`,
  });
}, 180_000);

afterAll(async () => {
  await env?.cleanup();
});

describe('status (as on-call)', () => {
  it('prints one line per workspace: source, id, phase, Ready and its age, failing step and reason, the error cut to the terminal', async () => {
    const r = await cli(['status', '-n', ns], { columns: 150 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(cells(lines[0] as string)).toEqual([
      'SOURCE',
      'WORKSPACE',
      'PHASE',
      'READY',
      'AGE',
      'STEP',
      'REASON',
      'MESSAGE',
    ]);
    expect(lines).toHaveLength(4);
    const byName = new Map(lines.slice(1).map((l) => [cells(l)[0], cells(l)]));
    for (const name of healthy) {
      const row = byName.get(`${ns}/${name}`);
      expect(row?.slice(1, 4)).toEqual([`${ns}-${name}`.slice(0, 40), 'Ready', 'True']);
      expect(row?.[4]).toMatch(/^\d+s$/);
      expect(row?.slice(5)).toEqual(['-', 'Provisioned', 'workspace provisioned']);
    }
    const broken = byName.get(`${ns}/${BROKEN}`);
    expect(broken?.slice(2, 4)).toEqual(['Invalid', 'False']);
    expect(broken?.slice(5, 7)).toEqual(['spec', 'InvalidSpec']);
    expect(broken?.[7]).toMatch(/^invalid workspace\.json: data_bucket/);
    // The message is cut so the line fits 150 columns; without a width it is whole.
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(150);
    expect(broken?.[7]?.endsWith('…')).toBe(true);
    const uncut = await cli(['status', '-n', ns]);
    expect(uncut.stdout).toContain((await workspaceStatus(env, BROKEN))?.lastError);
  });

  it('-o json and -o yaml carry the same rows with the full status', async () => {
    const json = await cli(['status', '-n', ns, '-o', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const items = (JSON.parse(json.stdout) as { items: Record<string, unknown>[] }).items;
    expect(items.map((i) => (i.source as { name: string }).name).sort()).toEqual([...healthy, BROKEN].sort());
    const broken = items.find((i) => (i.source as { name: string }).name === BROKEN);
    expect(broken).toMatchObject({ phase: 'Invalid', ready: 'False', failingStep: 'spec', reason: 'InvalidSpec' });
    expect((broken?.status as { invalidFields?: { field: string }[] })?.invalidFields?.[0]?.field).toBe('data_bucket');
    const yaml = await cli(['status', '-n', ns, '-o', 'yaml']);
    expect(yaml.code, yaml.stderr).toBe(0);
    expect(loadYaml(yaml.stdout)).toEqual(JSON.parse(json.stdout));
  });

  it('--not-ready lists only the workspaces that are not Ready and exits 1', async () => {
    const r = await cli(['status', '-n', ns, '--not-ready']);
    expect(r.code).toBe(1);
    const rows = r.stdout.trimEnd().split('\n').slice(1);
    expect(rows.map((l) => cells(l)[0])).toEqual([`${ns}/${BROKEN}`]);
  });

  it('-A needs cluster-wide list, which on-call does not have: exit 4 (refused), not 3', async () => {
    const r = await cli(['status', '-A']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^✗ forbidden: .*configmaps.* cannot list resource "configmaps"/m);
  });

  it('a cluster that cannot be reached is exit 3', async () => {
    const port = await closedPort();
    const kubeconfig = join(env.dir, 'nowhere.kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'x', cluster: { server: `https://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'x', user: { token: 'x' } }],
        contexts: [{ name: 'x', context: { cluster: 'x', user: 'x' } }],
        'current-context': 'x',
      }),
    );
    for (const args of [
      ['status', '-n', ns],
      ['rerun', 'alpha', '-n', ns],
    ]) {
      const r = await cli(args, { kubeconfig });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(3);
      expect(r.stderr).toMatch(new RegExp(`✗ cannot reach the cluster at https://127\\.0\\.0\\.1:${port}`));
    }
  });
});

describe('rerun (as on-call)', () => {
  it('annotates each workspace, waits for the controller to handle the token, and reports Ready: exit 0', async () => {
    const before = await Promise.all(healthy.map((n) => workspaceStatus(env, n)));
    const r = await cli(['rerun', ...healthy, '-n', ns, '--timeout', '60s']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    for (const name of healthy) {
      expect(lines).toContain(`► annotating workspace ${name} in ${ns} namespace`);
      expect(lines).toContain(`✔ workspace ${name} annotated`);
      expect(lines).toContain(`✔ workspace ${name} reconciliation completed`);
      expect(lines).toContain(`✔ workspace ${name} is Ready: workspace provisioned`);
    }
    expect(lines).toContain('◎ waiting for 2 workspace reconciliations');
    expect(lines.at(-1)).toBe('✔ 2 workspaces reconciled and Ready');
    // The token is in the annotation and echoed by the status; the patch touched that annotation only.
    for (const [i, name] of healthy.entries()) {
      const cm = await env.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name });
      const token = cm?.metadata.annotations?.[RECONCILE_REQUEST_ANNOTATION];
      expect(token).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(token).not.toBe(before[i]?.lastHandledReconcileAt);
      expect((await workspaceStatus(env, name))?.lastHandledReconcileAt).toBe(token);
      const managed = ((cm?.metadata.managedFields ?? []) as { manager: string; fieldsV1: unknown }[]).find(
        (m) => m.manager === 'flyte-workspace-controller-cli',
      );
      expect(managed?.fieldsV1).toEqual({
        'f:metadata': { 'f:annotations': { [`f:${RECONCILE_REQUEST_ANNOTATION}`]: {} } },
      });
    }
  });

  it('an Invalid workspace is handled but not Ready: the reason is printed and the exit is 1', async () => {
    const r = await cli(['rerun', BROKEN, '-n', ns, '--timeout', '60s']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`✔ workspace ${BROKEN} reconciliation completed`);
    expect(r.stderr).toMatch(
      new RegExp(
        `^✗ workspace ${BROKEN} reconciliation failed: Invalid \\(spec InvalidSpec\\): invalid workspace\\.json: data_bucket`,
        'm',
      ),
    );
  });

  it('an unknown name, or a ConfigMap that is not a workspace, fails with exit 1 and the others still run', async () => {
    await env.admin.apply(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: ns }, data: { a: 'b' } },
      { fieldManager: 'test-admin' },
    );
    const r = await cli(['rerun', 'no-such-workspace', 'unrelated', 'alpha', '-n', ns, '--timeout', '60s']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`✗ workspace no-such-workspace not found in ${ns} namespace`);
    expect(r.stderr).toContain(`✗ ConfigMap unrelated in ${ns} namespace is not a workspace`);
    expect(r.stderr).toContain('✔ workspace alpha is Ready: workspace provisioned');
    expect(r.stderr.trimEnd().split('\n').at(-1)).toBe('✗ 2 of 3 workspaces are not Ready');
    const unrelated = await env.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: 'unrelated' });
    expect(unrelated?.metadata.annotations?.[RECONCILE_REQUEST_ANNOTATION]).toBeUndefined();
  });

  it('--all-not-ready reruns exactly the workspaces that are not Ready', async () => {
    const r = await cli(['rerun', '--all-not-ready', '-n', ns, '--timeout', '60s']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`► 1 of 3 workspace(s) in ${ns} namespace are not Ready`);
    expect(r.stderr).toContain(`► annotating workspace ${BROKEN} in ${ns} namespace`);
    expect(r.stderr).not.toContain('annotating workspace alpha');
  });

  it('status --watch prints a line when a workspace changes; the fixed one turns Ready and --not-ready exits 0', async () => {
    const child = spawnCli(['status', '-n', ns, '--watch', '--not-ready']);
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    await waitFor(() => out.includes(`${ns}/${BROKEN}`), { timeoutMs: 15_000, message: 'the initial table' });
    await putWorkspace(env, BROKEN, workspaceDoc(`${ns}-broken`.slice(0, 40)));
    await waitFor(() => out.split('\n').some((l) => l.startsWith(`${ns}/${BROKEN}`) && cells(l)[3] === 'True'), {
      timeoutMs: 60_000,
      message: `a watch line with ${BROKEN} Ready`,
    });
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    const r = await cli(['status', '-n', ns, '--not-ready']);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stderr).toContain(`all 3 workspace(s) in namespace ${ns} are Ready`);
  });

  it('times out with exit 1 when no controller answers', async () => {
    await daemon.stop();
    const t0 = Date.now();
    const r = await cli(['rerun', 'alpha', '-n', ns, '--timeout', '3s']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('◎ waiting for workspace alpha reconciliation');
    expect(r.stderr).toContain('✗ timed out after 3s waiting for workspace alpha reconciliation');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
