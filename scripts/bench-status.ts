// Time of `flyte-workspace-controller status` over a large fleet, the way on-call runs it: the built CLI
// as a fresh process (Node start-up included), as the on-call identity of manifests/oncall-rbac.yaml,
// against a fresh local control plane holding N workspace ConfigMaps with realistic documents, status
// annotations (10% failing) and the two field managers the platform and the controller leave behind.
// Besides wall time, the CPU of the CLI process and of kube-apiserver per run (robust to a busy machine),
// and the same command in this process with its modules already loaded (LIST + render without start-up).
// `npm run bench:status -- [--n 5000] [--runs 5]` (scripts/bench.sh builds dist/ and the control plane).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startControlPlane } from '../harness/controlplane.js';
import { applyManifestFile, kubeConfigFor } from '../harness/kube.js';
import { CallStats } from '../src/adapters/call-stats.js';
import { HttpKubeApi } from '../src/adapters/kubernetes.js';
import { runStatus } from '../src/cli/status.js';
import { STATUS_ANNOTATION } from '../src/config/config.js';
import type { WorkspaceStatus } from '../src/reconcile/status.js';
import { controlPlanePids, processCpuSeconds } from './bench/proc.js';
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

interface Sample {
  ms: number;
  code: number;
  lines: number;
  clientCpuMs: number;
  apiserverCpuMs: number;
}

let apiserverCpuMs: () => number = () => 0;

/** One `status` run as a new process; bash's `times` reports the child's CPU on fd 3. */
async function timeStatus(args: string[], kubeconfig: string): Promise<Sample> {
  const api0 = apiserverCpuMs();
  const t0 = performance.now();
  const script = 'node "$@"; rc=$?; times >&3; exit $rc';
  const cli = join(root, 'dist', 'cli.js');
  const child = spawn('bash', ['-c', script, 'bash', cli, 'status', ...args, '--kubeconfig', kubeconfig], {
    cwd: root,
    env: { ...process.env, COLUMNS: '0' },
    stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
  });
  let lines = 0;
  child.stdout?.on('data', (c: Buffer) => {
    for (const b of c) if (b === 10) lines++;
  });
  let times = '';
  (child.stdio[3] as NodeJS.ReadableStream).setEncoding('utf8').on('data', (c: string) => {
    times += c;
  });
  const [code] = (await once(child, 'exit')) as [number];
  const ms = performance.now() - t0;
  // `times`: the shell's own user/system, then its children's: "0m1.234s 0m0.056s".
  const seconds = [...(times.trim().split('\n')[1] ?? '').matchAll(/(\d+)m([\d.]+)s/g)].map(
    (m) => Number(m[1]) * 60 + Number(m[2]),
  );
  const clientCpuMs = seconds.reduce((a, b) => a + b, 0) * 1000;
  return { ms, code, lines, clientCpuMs, apiserverCpuMs: apiserverCpuMs() - api0 };
}

/** The same command inside this process: modules loaded, output counted and dropped. */
async function timeInProcess(kubeconfig: string): Promise<Sample> {
  const api0 = apiserverCpuMs();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let lines = 0;
  const code = await runStatus({
    kubeconfig,
    scope: { allNamespaces: false, namespaces: [NS] },
    labelSelector: 'app=workspace-config',
    notReady: false,
    watch: false,
    output: 'table',
    width: 0,
    out: (text) => {
      lines += text.split('\n').length;
    },
  });
  const cpu = process.cpuUsage(cpu0);
  return {
    ms: performance.now() - t0,
    code,
    lines,
    clientCpuMs: (cpu.user + cpu.system) / 1000,
    apiserverCpuMs: apiserverCpuMs() - api0,
  };
}

const cp = await startControlPlane({ binDir: process.env.KUBEBUILDER_ASSETS });
try {
  const admin = kubeConfigFor('admin', cp);
  const apiserverPid = controlPlanePids(cp).find(([name]) => name === 'kube-apiserver')?.[1] ?? 0;
  apiserverCpuMs = () => processCpuSeconds(apiserverPid) * 1000;
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
  const cases: [string, () => Promise<Sample>][] = [
    ['status (table)', () => timeStatus(['-n', NS], oncall)],
    ['status --not-ready', () => timeStatus(['-n', NS, '--not-ready'], oncall)],
    ['status -o json', () => timeStatus(['-n', NS, '-o', 'json'], oncall)],
    ['status (table), in-process, modules loaded', () => timeInProcess(oncall)],
    ['start-up only: status on an empty namespace', () => timeStatus(['-n', 'default'], cp.kubeconfigPath('admin'))],
  ];
  await timeStatus(['-n', NS], oncall); // warm the apiserver's and the OS's caches once
  const rows = [];
  for (const [name, run] of cases) {
    const samples: Sample[] = [];
    for (let r = 0; r < runs; r++) samples.push(await run());
    const med = (f: (s: Sample) => number) => Math.round(medianOf(samples.map(f)));
    rows.push({
      command: name,
      'exit code': samples.at(-1)?.code,
      'output lines': samples.at(-1)?.lines,
      'wall ms (median)': med((x) => x.ms),
      'wall ms (min)': Math.round(Math.min(...samples.map((x) => x.ms))),
      'CLI CPU ms': med((x) => x.clientCpuMs),
      'apiserver CPU ms': med((x) => x.apiserverCpuMs),
    });
  }
  const [load1] = loadavg();
  console.table(rows);
  console.log(
    `${n} workspaces, ${runs} runs each (medians); load average at the end: ${load1?.toFixed(1)} on ${cpus().length} CPUs`,
  );
} finally {
  await cp.stop();
}
process.exit(0);
