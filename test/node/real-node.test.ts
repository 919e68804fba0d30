// The artifact a platform team deploys, on a real kubelet: manifests/ applied unchanged except the image
// reference and what an operator sets anyway (FlyteAdmin and AWS endpoints in the config, AWS credentials
// where there is no IRSA), the image imported into containerd, against moto and the FlyteAdmin double
// reachable from the pods. Needs root; `npm test` runs it as its own phase after building the image.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  type KubernetesObject,
  loadAllYaml,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FlyteAdminDouble } from '../../harness/flyteadmin-double.js';
import { type Moto, startMoto } from '../../harness/moto.js';
import { kubeConfigOf, podOf, type RealNode, realNodeUnavailableReason, startNode } from '../../harness/node/node.js';
import { applyManifestFile, describeError, statusOf, waitFor } from '../support/kube.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const NS = 'flyte-workspace-controller';
const DEPLOYMENT = 'flyte-workspace-controller';
const LEASE = 'flyte-workspace-controller';
const SELECTOR = 'app.kubernetes.io/name=flyte-workspace-controller,app.kubernetes.io/component=controller';
const STATUS = 'workspaces.flyte.org/status';
const SA_USER = 'system:serviceaccount:flyte-workspace-controller:flyte-workspace-controller';
const AWS_SECRET = 'flyte-workspace-controller-aws';
/** Applied as they ship (monitoring.yaml needs the Prometheus Operator's CRDs, which this cluster lacks). */
const UNCHANGED = [
  'namespace.yaml',
  'rbac.yaml',
  'workspace-roles.yaml',
  'admission-policy.yaml',
  'service.yaml',
  'pdb.yaml',
];

const say = (m: string) => process.stderr.write(`[real-node] ${m}\n`);

let node: RealNode;
let moto: Moto;
let flyte: FlyteAdminDouble;
let kc: KubeConfig;
let core: CoreV1Api;
let apps: AppsV1Api;
let leases: CoordinationV1Api;
let leaseDurationMs = 0;
const manifestDir = mkdtempSync(join(tmpdir(), 'fwc-real-node-'));

function docsOf(file: string): KubernetesObject[] {
  const text = readFileSync(join(root, 'manifests', file), 'utf8');
  return text
    .split(/^---[ \t]*$/m)
    .filter((c) => c.split('\n').some((l) => l.trim() && !l.trim().startsWith('#')))
    .flatMap((c) => loadAllYaml(c) as KubernetesObject[]);
}

/** Applies documents (JSON is YAML) through the same server-side apply as the unchanged files. */
async function applyDocs(name: string, docs: KubernetesObject[]): Promise<void> {
  const file = join(manifestDir, name);
  writeFileSync(file, docs.map((d) => JSON.stringify(d)).join('\n---\n'));
  await applyManifestFile(kc, file);
}

/** Runs scripts/build-control-plane.sh --node (a no-op when the five binaries exist). */
function nodeBinDir(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(root, 'scripts/build-control-plane.sh'), '--node'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = out.trim().split('\n').pop() ?? '';
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`scripts/build-control-plane.sh --node failed (exit ${code})`));
    });
  });
}

async function controllerPods(): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: NS, labelSelector: SELECTOR })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
}

const isReady = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function leaseHolderPod(): Promise<string | undefined> {
  const lease = await leases.readNamespacedLease({ namespace: NS, name: LEASE });
  const holder = lease.spec?.holderIdentity;
  // The controller's identity is `<hostname>_<uuid>`; a pod's hostname is its name.
  return holder ? holder.split('_')[0] : undefined;
}

/** A container that exited twice will not become Available: stop waiting and say why. */
class CrashLoop extends Error {}

async function waitAvailable(timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      for (const p of await controllerPods()) {
        for (const c of p.status?.containerStatuses ?? []) {
          const last = c.lastState?.terminated;
          if (c.restartCount >= 2 && last) {
            return new CrashLoop(
              `pod ${p.metadata?.name} container ${c.name} restarted ${c.restartCount} times, last exit code ${last.exitCode} (${last.reason}):\n${podLogTails(8)}`,
            );
          }
        }
      }
      const d = await apps.readNamespacedDeployment({ namespace: NS, name: DEPLOYMENT });
      const s = d.status;
      return (
        (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
        s?.replicas === 3 &&
        s?.updatedReplicas === 3 &&
        s?.availableReplicas === 3
      );
    },
    { timeoutMs, intervalMs: 500, message: 'Deployment 3/3 updated and Available' },
  ).then((r) => {
    if (r instanceof CrashLoop) throw r;
  });
}

interface Status {
  phase: string;
  steps: Record<string, { state: string; reason: string }>;
  roleArn?: string;
  flyteProject?: string;
}

async function waitWorkspaceReady(name: string, timeoutMs: number): Promise<Status> {
  return waitFor(
    async () => {
      const cm = await core.readNamespacedConfigMap({ namespace: 'workspace-platform', name });
      const raw = cm.metadata?.annotations?.[STATUS];
      const status = raw ? (JSON.parse(raw) as Status) : undefined;
      return status?.phase === 'Ready' ? status : undefined;
    },
    { timeoutMs, intervalMs: 500, message: `workspace ${name} Ready` },
  );
}

/** Last lines of each controller container's log (the kubelet's files), for failure reports. */
function podLogTails(lines = 15): string {
  const out: string[] = [];
  try {
    for (const podDir of readdirSync(node.podLogsDir).filter((d) => d.startsWith(`${NS}_`))) {
      const dir = join(node.podLogsDir, podDir, 'controller');
      for (const f of readdirSync(dir)) {
        const text = readFileSync(join(dir, f), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
        out.push(`--- ${podDir}/${f}:\n${text}`);
      }
    }
  } catch (e) {
    out.push(`(pod logs: ${(e as Error).message})`);
  }
  return out.join('\n');
}

beforeAll(async () => {
  const unavailable = realNodeUnavailableReason();
  if (unavailable) throw new Error(`THE REAL-NODE SUITE CANNOT RUN ON THIS MACHINE: ${unavailable}`);
  const archive = process.env.FWC_IMAGE_ARCHIVE;
  const ref = process.env.FWC_IMAGE_REF;
  if (!archive || !ref) {
    throw new Error(
      'FWC_IMAGE_ARCHIVE and FWC_IMAGE_REF must name the image archive and its reference (npm test sets them)',
    );
  }
  const t0 = Date.now();
  node = await startNode({ binDir: await nodeBinDir(), images: [{ archive, ref }], log: say });
  kc = kubeConfigOf(node.controlPlane);
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
  leases = kc.makeApiClient(CoordinationV1Api);
  // The pods reach the host only on the node's address.
  moto = await startMoto({ host: node.nodeIp });
  flyte = await FlyteAdminDouble.start({ host: node.nodeIp });

  for (const f of UNCHANGED) await applyManifestFile(kc, join(root, 'manifests', f));
  // Flyte's own namespace exists wherever FlyteAdmin runs.
  await core.createNamespace({ body: { metadata: { name: 'flyte' } } });

  // What an operator sets anyway: where FlyteAdmin and AWS are.
  const [configMap] = docsOf('config.yaml') as [KubernetesObject & { data: Record<string, string> }];
  const config = JSON.parse(configMap.data['config.json'] ?? '{}');
  config.flyte.endpoint = flyte.url;
  config.aws.endpoint = moto.endpoint;
  leaseDurationMs = config.leaderElection.leaseDurationSeconds * 1000;
  configMap.data['config.json'] = JSON.stringify(config, null, 2);
  await applyDocs('config.json', [configMap]);

  // AWS credentials: on EKS the IRSA annotation on the ServiceAccount; without IRSA (as here), from a Secret.
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: AWS_SECRET },
      stringData: { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' },
    },
  });
  const [deployment] = docsOf('deployment.yaml') as [
    KubernetesObject & { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } },
  ];
  const container = deployment.spec.template.spec.containers[0] as { image: string; envFrom?: unknown[] };
  container.image = ref;
  container.envFrom = [{ secretRef: { name: AWS_SECRET } }];
  await applyDocs('deployment.json', [deployment]);
  say(`manifests applied ${Date.now() - t0} ms after start`);
}, 600_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail' && node) {
    say(`FAILED: ${ctx.task.name}\n${podLogTails()}\n${node.logTails(20)}`);
  }
});

afterAll(async () => {
  const t0 = Date.now();
  try {
    // The node first: the controller's pods shut down while FlyteAdmin and AWS still answer.
    await node?.stop();
  } finally {
    await flyte?.close().catch(() => {});
    await moto?.stop().catch(() => {});
    rmSync(manifestDir, { recursive: true, force: true });
    say(`teardown ${Date.now() - t0} ms`);
  }
}, 180_000);

describe('the shipped manifests on a real node', () => {
  it('runs 3/3 replicas Available through the manifest probes, admitted under the restricted Pod Security level', async () => {
    await waitAvailable(150_000);
    const ns = await core.readNamespace({ name: NS });
    expect(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    // Enforcement is live: the same namespace refuses a pod the restricted level forbids.
    const refused = await core
      .createNamespacedPod({
        namespace: NS,
        dryRun: 'All',
        body: {
          metadata: { name: 'privileged-probe' },
          spec: { containers: [{ name: 'c', image: 'x', securityContext: { privileged: true } }] },
        },
      })
      .then(
        () => 'admitted',
        (e: unknown) => describeError(e),
      );
    expect(refused).toMatch(/violates PodSecurity "restricted:latest"/);
    const pods = await controllerPods();
    expect(pods).toHaveLength(3);
    for (const p of pods) {
      expect(isReady(p)).toBe(true);
      expect(p.spec?.nodeName).toBe(node.nodeName);
    }
  });

  it('runs each container as uid 65532 with a read-only root, no capabilities, and only the projected token and CA', async () => {
    const rootCa = (await core.readNamespacedConfigMap({ namespace: NS, name: 'kube-root-ca.crt' })).data?.['ca.crt'];
    const tasks = new Map(
      node
        .ctr(['tasks', 'ls'])
        .split('\n')
        .slice(1)
        .filter(Boolean)
        .map((l) => {
          const [id, pid] = l.split(/\s+/);
          return [id, Number(pid)] as const;
        }),
    );
    for (const pod of await controllerPods()) {
      const name = pod.metadata?.name ?? '';
      const containerId = pod.status?.containerStatuses?.[0]?.containerID?.replace('containerd://', '') ?? '';
      const pid = tasks.get(containerId);
      expect(pid, `container of ${name}`).toBeGreaterThan(0);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const field = (k: string) => status.match(new RegExp(`^${k}:\\s*(.*)$`, 'm'))?.[1]?.trim();
      expect(field('Uid'), name).toBe('65532\t65532\t65532\t65532');
      expect(field('Gid'), name).toBe('65532\t65532\t65532\t65532');
      expect(field('CapEff'), name).toBe('0000000000000000');
      expect(field('CapPrm'), name).toBe('0000000000000000');
      expect(field('NoNewPrivs'), name).toBe('1');
      expect(field('Seccomp'), name).toBe('2');
      // Mount options of the container's root: read-only.
      const mountinfo = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n');
      const rootMount = mountinfo.map((l) => l.split(' ')).find((f) => f[4] === '/');
      expect(rootMount?.[5]?.split(','), `${name}: root mount`).toContain('ro');
      expect(mountinfo.some((l) => l.split(' ')[4] === '/tmp')).toBe(true);
      // Credentials: the projected ServiceAccount token bound to this pod, the cluster CA; no kubeconfig.
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(environ.filter((e) => e.startsWith('KUBECONFIG='))).toEqual([]);
      expect(cmdline.filter((a) => a.includes('kubeconfig'))).toEqual([]);
      expect(environ).toContain('KUBERNETES_SERVICE_PORT=443');
      // Where the projected volume is mounted inside the container (/var/run is a symlink to /run there,
      // and an absolute symlink under /proc/<pid>/root would resolve against the host's root).
      const saMount = mountinfo
        .map((l) => l.split(' ')[4] ?? '')
        .find((m) => m.endsWith('/secrets/kubernetes.io/serviceaccount'));
      expect(saMount, `${name}: ServiceAccount volume`).toBeDefined();
      const sa = `/proc/${pid}/root${saMount}`;
      const token = readFileSync(`${sa}/token`, 'utf8');
      const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
      expect(claims.sub).toBe(SA_USER);
      expect(claims['kubernetes.io']?.pod?.name).toBe(name);
      expect(readFileSync(`${sa}/ca.crt`, 'utf8')).toBe(rootCa);
    }
    // ...and those credentials are what the controller used: its writes carry the pod-bound token.
    const writers = new Set(
      node
        .auditedWrites()
        .filter((e) => e.user.username === SA_USER)
        .map(podOf),
    );
    expect(writers.size).toBeGreaterThan(0);
    const names = new Set((await controllerPods()).map((p) => p.metadata?.name));
    for (const w of writers) expect(names.has(w), `writer ${w}`).toBe(true);
  });

  it('elects one leader by the Lease and reconciles the example workspace to Ready (Kubernetes, IAM, Flyte)', async () => {
    const holder = await waitFor(leaseHolderPod, { timeoutMs: 30_000, message: 'a Lease holder' });
    const names = (await controllerPods()).map((p) => p.metadata?.name);
    expect(names).toContain(holder);
    await applyManifestFile(kc, join(root, 'manifests', 'example-workspace.yaml'));
    const status = await waitWorkspaceReady('ml-research', 60_000);
    expect(status.steps.kubernetes?.state).toBe('Ready');
    expect(status.steps.iam?.state).toBe('Ready');
    expect(status.steps.flyte?.state).toBe('Ready');
    await core.readNamespace({ name: 'flyte-ml-research' });
    const iam = new IAMClient({
      endpoint: moto.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const role = await iam.send(new GetRoleCommand({ RoleName: 'FlyteWorkspace-ml-research-Role' }));
    expect(role.Role?.Arn).toBe(status.roleArn);
    expect(flyte.project('ml-research')?.name).toContain('ML Research');
    // Only the leader writes.
    const writers = new Set(
      node
        .auditedWrites()
        .filter((e) => e.objectRef?.resource !== 'leases')
        .map(podOf),
    );
    expect([...writers]).toEqual([holder]);
  });

  it('hands the Lease to another replica within the lease duration when the leader pod is deleted, with no write from the old leader after its release', async () => {
    const old = await waitFor(leaseHolderPod, { message: 'a Lease holder' });
    const t0 = Date.now();
    await core.deleteNamespacedPod({ namespace: NS, name: old });
    const next = await waitFor(
      async () => {
        const h = await leaseHolderPod();
        return h && h !== old ? h : undefined;
      },
      { timeoutMs: leaseDurationMs, intervalMs: 100, message: `a new Lease holder after deleting ${old}` },
    );
    const handover = Date.now() - t0;
    say(`Lease ${old} -> ${next} in ${handover} ms`);
    expect(handover).toBeLessThan(leaseDurationMs);
    // Let the old pod finish (it has stopped writing or is about to), then read what it did.
    await waitFor(
      async () => statusOf(await core.readNamespacedPod({ namespace: NS, name: old }).catch((e) => e)) === 404,
      {
        timeoutMs: 40_000,
        intervalMs: 500,
        message: `pod ${old} gone`,
      },
    );
    const oldWrites = node.auditedWrites().filter((e) => podOf(e) === old);
    // The release: holder emptied (a renewal, or a leader that crashed, leaves the holder set).
    const release = oldWrites.find(
      (e) =>
        e.objectRef?.resource === 'leases' && e.requestObject !== undefined && !e.requestObject.spec?.holderIdentity,
    );
    expect(release, `${old} released the Lease`).toBeDefined();
    const after = oldWrites.filter((e) => e.stageTimestamp > (release?.stageTimestamp ?? ''));
    expect(after.map((e) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.name}`)).toEqual([]);
    await waitAvailable(90_000);
  });

  it('keeps a leader through a rollout restart and loses no work started during it', async () => {
    const samples: Array<{ at: number; holder: string | undefined }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push({ at: Date.now(), holder: await leaseHolderPod().catch(() => undefined) });
        await sleep(250);
      }
    })();
    const before = new Set((await controllerPods()).map((p) => p.metadata?.name));
    await apps.patchNamespacedDeployment(
      {
        namespace: NS,
        name: DEPLOYMENT,
        body: {
          spec: {
            template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } },
          },
        },
      },
      // What `kubectl rollout restart` sends.
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    // Work that arrives while replicas come and go.
    const [workspace] = docsOf('example-workspace.yaml') as [KubernetesObject & { data: Record<string, string> }];
    const doc = JSON.parse(workspace.data['workspace.json'] ?? '{}');
    doc.workspace_id = 'rollout-check';
    doc.workspace_name = 'Rollout Check';
    doc.data_bucket = 'rollout-check-data';
    workspace.metadata = { ...workspace.metadata, name: 'rollout-check' };
    workspace.data['workspace.json'] = JSON.stringify(doc);
    await sleep(2_000);
    await applyDocs('rollout-check.json', [workspace]);
    await waitAvailable(150_000);
    const after = (await controllerPods()).map((p) => p.metadata?.name);
    expect(after.filter((n) => before.has(n))).toEqual([]);
    await waitWorkspaceReady('rollout-check', 60_000);
    await waitWorkspaceReady('ml-research', 10_000);
    const holder = await waitFor(leaseHolderPod, { message: 'a Lease holder after the rollout' });
    expect(after).toContain(holder);
    sampling = false;
    await sampler;
    let longestGap = 0;
    let since: number | undefined;
    for (const s of samples) {
      if (!s.holder) since ??= s.at;
      else if (since !== undefined) {
        longestGap = Math.max(longestGap, s.at - since);
        since = undefined;
      }
    }
    say(`rollout restart: ${samples.length} Lease samples, longest time without a holder ${longestGap} ms`);
    expect(longestGap).toBeLessThan(leaseDurationMs);
  });

  it('keeps the PodDisruptionBudget: an eviction that would leave two replicas unavailable is refused', async () => {
    const policy = kc.makeApiClient(PolicyV1Api);
    await waitFor(
      async () => {
        const pdb = await policy.readNamespacedPodDisruptionBudget({ namespace: NS, name: DEPLOYMENT });
        return pdb.status?.currentHealthy === 3 && pdb.status.disruptionsAllowed === 1;
      },
      { timeoutMs: 30_000, message: 'the PDB to allow exactly one disruption' },
    );
    const [first, second] = (await controllerPods()).map((p) => p.metadata?.name ?? '');
    const evict = (name: string) =>
      core
        .createNamespacedPodEviction({
          namespace: NS,
          name,
          body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace: NS } },
        })
        .then(
          () => 'evicted',
          (e: unknown) => describeError(e),
        );
    expect(await evict(first ?? '')).toBe('evicted');
    const refused = await evict(second ?? '');
    expect(refused).toMatch(/HTTP 429: .*disruption budget/);
  });
});
