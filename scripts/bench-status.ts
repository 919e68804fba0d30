// Wall time of `flyte-workspace-controller status` over a large fleet, the way on-call runs it: the built
// CLI as a fresh process (Node start-up included), as the on-call identity of manifests/oncall-rbac.yaml,
// against a fresh local control plane holding N workspace ConfigMaps with realistic documents, status
// annotations (10% failing) and the two field managers the platform and the controller leave behind.
// `npm run bench:status -- [--n 5000] [--runs 5]` (scripts/bench.sh builds dist/ and the control plane).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CallStats } from '../src/adapters/call-stats.js';
import { HttpKubeApi } from '../src/adapters/kubernetes.js';
import { STATUS_ANNOTATION } from '../src/config/config.js';
import type { WorkspaceStatus } from '../src/reconcile/status.js';
import { startControlPlane } from '../test/support/controlplane.js';
import { applyManifestFile, kubeConfigFor } from '../test/support/kube.js';
import { medianOf } from './bench/trials.js';

const { values } = parseArgs({
  options: { n: { type: 'string', default: '5000' }, runs: { type: 'string', default: '5' } },
});
const n = Math.max(1, Number(values.n));
const runs = Math.max(1, Number(values.runs));
const root = join(import.meta.dirname, '..');
const NS = 'workspace-platform';

function statusOf(id: string, failing: boolean): WorkspaceStatus {
  const t = '2026-01-01T10:00:00.000Z';
  const step = { state: 'Ready' as const, reason: 'Synced', message: 'in sync', lastTransitionTime: t };
  const iam = failing
    ? { state: 'Failed' as const, reason: 'Throttling', message: 'Rate exceeded', lastTransitionTime: t }
    : step;
  return {
    phase: failing ? 'Failed' : 'Ready',
    workspaceId: id,
    specHash: 'a'.repeat(64),
    ...(failing ? {} : { observedSpecHash: 'a'.repeat(64) }),
    owner: true,
    conditions: [
      {
        type: 'Ready',
        status: failing ? 'False' : 'True',
        reason: failing ? 'Throttling' : 'Provisioned',
        message: failing ? 'iam: Rate exceeded' : 'workspace provisioned',
        lastTransitionTime: t,
      },
      { type: 'KubernetesReady', status: 'True', reason: 'Synced', message: 'in sync', lastTransitionTime: t },
      {
        type: 'IAMReady',
        status: failing ? 'False' : 'True',
        reason: iam.reason,
        message: iam.message,
        lastTransitionTime: t,
      },
      { type: 'FlyteReady', status: 'True', reason: 'Synced', message: 'in sync', lastTransitionTime: t },
    ],
    steps: { kubernetes: step, iam, flyte: step },
    namespaces: [`flyte-${id}`],
    roleArn: `arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-${id}-Role`,
    flyteProject: id,
    consoleUrl: `http://localhost:30080/console/projects/${id}`,
    ...(failing ? { lastError: 'iam: Rate exceeded' } : {}),
  };
}

function workspaceJson(id: string): string {
  const users = Array.from({ length: 5 }, (_, i) => ({
    user_id: `u${i}`,
    email: `user${i}-${id}@example.com`,
    role: i === 0 ? 'owner' : 'contributor',
  }));
  return JSON.stringify({
    workspace_id: id,
    workspace_name: `Workspace ${id}`,
    users,
    data_bucket: `${id}-data`,
    services: [{ service_type: 'flyte', config: {} }, 'sagemaker'],
    tier: 'default',
  });
}

async function pool(count: number, inFlight: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

async function timeStatus(args: string[], kubeconfig: string): Promise<{ ms: number; code: number; lines: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(root, 'dist', 'cli.js'), 'status', ...args, '--kubeconfig', kubeconfig], {
    cwd: root,
    env: { ...process.env, COLUMNS: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let lines = 0;
  child.stdout.on('data', (c: Buffer) => {
    for (const b of c) if (b === 10) lines++;
  });
  const [code] = (await once(child, 'exit')) as [number];
  return { ms: performance.now() - t0, code, lines };
}

const cp = await startControlPlane({ binDir: process.env.KUBEBUILDER_ASSETS });
try {
  const admin = kubeConfigFor('admin', cp);
  const kube = new HttpKubeApi(admin, { fieldManager: 'bench-status', stats: new CallStats('kubernetes') });
  await kube.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  await applyManifestFile(admin, join(root, 'manifests', 'oncall-rbac.yaml'));

  const t0 = performance.now();
  await pool(n, 16, async (i) => {
    const id = `ws-${String(i).padStart(5, '0')}`;
    const ref = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: id, namespace: NS } };
    await kube.apply(
      {
        ...ref,
        metadata: { ...ref.metadata, labels: { app: 'workspace-config' } },
        data: { 'workspace.json': workspaceJson(id) },
      },
      { fieldManager: 'workspace-platform' },
    );
    const status = JSON.stringify(statusOf(id, i % 10 === 0));
    await kube.apply(
      { ...ref, metadata: { ...ref.metadata, annotations: { [STATUS_ANNOTATION]: status } } },
      { fieldManager: 'flyte-workspace-controller' },
    );
  });
  console.log(`created ${n} workspace ConfigMaps in ${NS} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const oncall = cp.kubeconfigPath('oncall');
  const cases: [string, string[]][] = [
    ['status (table)', ['-n', NS]],
    ['status --not-ready', ['-n', NS, '--not-ready']],
    ['status -o json', ['-n', NS, '-o', 'json']],
  ];
  await timeStatus(cases[0]?.[1] ?? [], oncall); // warm the apiserver's and the OS's caches once
  const rows = [];
  for (const [name, args] of cases) {
    const times: number[] = [];
    let last = { ms: 0, code: 0, lines: 0 };
    for (let r = 0; r < runs; r++) {
      last = await timeStatus(args, oncall);
      times.push(last.ms);
    }
    rows.push({
      command: name,
      workspaces: n,
      'exit code': last.code,
      'output lines': last.lines,
      'median ms': Math.round(medianOf(times)),
      'min ms': Math.round(Math.min(...times)),
      'max ms': Math.round(Math.max(...times)),
    });
  }
  const empty = await timeStatus(['-n', 'default'], cp.kubeconfigPath('admin'));
  console.table(rows);
  console.log(
    `for scale: the same process against an empty namespace takes ${Math.round(empty.ms)} ms (Node start-up)`,
  );
} finally {
  await cp.stop();
}
process.exit(0);
