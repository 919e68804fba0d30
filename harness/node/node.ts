// A real single-node Kubernetes cluster, the way controller-runtime's envtest gives a control plane: our
// own etcd + kube-apiserver + kube-controller-manager (harness/controlplane.ts) plus kube-scheduler
// and a kubelet, all built from the same Kubernetes version (scripts/build-control-plane.sh --node), on
// the OS's containerd, runc and CNI plugins, with no registry: images are imported from archives.
//
// Host quirks it handles (Debian bookworm, root, no systemd as PID 1, cgroup v1+v2 hybrid):
// - kubelet >= 1.35 refuses cgroup v1 unless `failCgroupV1: false`; the hybrid counts as v1.
// - root may lack CAP_SYS_RESOURCE, so runc cannot set the oom_score_adj CRI asks for: containerd's
//   `restrict_oom_score_adj`.
// - the kubelet refuses a loopback node IP and pods cannot reach the host's loopback: a bridge of our own
//   carries the node IP, kube-apiserver binds to it, and so must every service the pods call.
// - no kube-proxy: one DNAT rule sends the `kubernetes` Service's IP:443 to kube-apiserver.
// Everything it changes on the host is recorded first and put back on stop (host.ts), also after a crash.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { type ControlPlane, KUBERNETES_SERVICE_IP, ManagedProcess, startControlPlane, until } from '../controlplane.js';
import { prepareHost, restoreHost } from './host.js';
import { PAUSE_IMAGE, pauseImageArchive } from './pause.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE_NAME = 'fwc-node';
const BRIDGE = 'fwc-node0';
/** The node's (and kube-apiserver's) address, the gateway of the pod network. */
export const NODE_IP = '10.244.0.1';
const POD_SUBNET = '10.244.0.0/24';
const KUBE_VERSION = '1.35.4';
/** kube-controller-manager controllers a node needs besides the control plane's own four. */
const NODE_CONTROLLERS = [
  'deployment-controller',
  'replicaset-controller',
  'disruption-controller',
  'root-ca-certificate-publisher-controller',
  // Lifts the node.kubernetes.io/not-ready taint the kubelet registers with, once the node is Ready.
  'node-lifecycle-controller',
];
/** Namespaces whose workloads stop() leaves alone (nothing of ours runs there). */
const SYSTEM_NAMESPACES = new Set(['kube-system', 'kube-public', 'kube-node-lease', 'default']);

export interface ImageArchive {
  /** An archive `ctr images import` takes: `podman save` output or an OCI layout tar. */
  archive: string;
  /** The image reference it holds, e.g. localhost/flyte-workspace-controller:dev. */
  ref: string;
}

export interface NodeOptions {
  /** Directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet. */
  binDir: string;
  /** Images to import into containerd before the kubelet starts (the pause image is always there). */
  images?: ImageArchive[];
  /** Where containerd, the kubelet and the host record live. Default $FWC_NODE_DIR or /var/lib/flyte-workspace-controller-node. */
  baseDir?: string;
  /** Where the built pause image is cached. Default ~/.cache/flyte-workspace-controller/node. */
  cacheDir?: string;
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface PhaseTimes {
  [phase: string]: number;
}

export interface RealNode {
  controlPlane: ControlPlane;
  nodeName: string;
  /** The address pods reach the host on: services the pods call must listen here. */
  nodeIp: string;
  /** Where the kubelet writes container logs (<namespace>_<pod>_<uid>/<container>/<n>.log). */
  podLogsDir: string;
  /** How long each start-up phase took (ms). */
  timings: PhaseTimes;
  /** kube-apiserver's audit log: every write made by a ServiceAccount, at Metadata level. */
  auditLogPath: string;
  /** The writes recorded so far in the audit log. */
  auditedWrites(): AuditEvent[];
  /** Runs `ctr` against this node's containerd (namespace k8s.io); returns stdout. */
  ctr(args: string[]): string;
  /** Last lines of every component's log, for failure reports. */
  logTails(lines?: number): string;
  /** Deletes the workloads, stops everything and restores the host. Safe to call twice. */
  stop(): Promise<void>;
}

/** The fields of an audit.k8s.io/v1 Event the suite reads. */
export interface AuditEvent {
  verb: string;
  stage: string;
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  user: { username: string; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number };
  /** Leases only: the object sent, to tell a release (empty holder) from a renewal. */
  requestObject?: { spec?: { holderIdentity?: string } };
}

/** Who made the write: the pod a bound ServiceAccount token was issued to. */
export function podOf(event: AuditEvent): string | undefined {
  return event.user.extra?.['authentication.kubernetes.io/pod-name']?.[0];
}

// Writes by ServiceAccounts (the controller's pods), with the pod each token was bound to.
const WRITES = ['create', 'update', 'patch', 'delete', 'deletecollection'];
const AUDIT_POLICY = JSON.stringify({
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    // Lease writes with their body, to tell a release (holder emptied) from a renewal.
    {
      level: 'Request',
      userGroups: ['system:serviceaccounts'],
      verbs: WRITES,
      resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }],
    },
    { level: 'Metadata', userGroups: ['system:serviceaccounts'], verbs: WRITES },
    { level: 'None' },
  ],
});

export class RealNodeUnavailable extends Error {
  override name = 'RealNodeUnavailable';
}

/**
 * Why a real node cannot run here, or undefined when it can. Checked before anything is changed: root,
 * containerd, runc, the CNI plugins, iptables, gcc (for the pause image).
 */
export function realNodeUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'the real-node suite needs root (containerd, kubelet, iptables, mounts)';
  const missing = [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['runc', 'runc'],
    ['iptables', 'iptables'],
    ['gcc', 'gcc'],
    ['ip', 'iproute2'],
  ].filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status !== 0);
  if (!existsSync('/usr/lib/cni/bridge')) missing.push(['/usr/lib/cni/bridge', 'containernetworking-plugins']);
  if (missing.length > 0) {
    return `missing ${missing.map(([b, p]) => `${b} (package ${p})`).join(', ')}: install them with apt-get, or run scripts/test.sh as root with apt`;
  }
  return undefined;
}

function defaultCacheDir(): string {
  const root =
    process.env.FWC_CACHE_DIR ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'flyte-workspace-controller');
  return join(root, 'node');
}

/**
 * What identifies the image an archive holds, without hashing hundreds of MB: the config digest of a
 * docker-archive (`podman save`), the manifest digest of an OCI layout. A re-saved unchanged image gives
 * the same identity even though the archive's own bytes (file times) differ.
 */
function archiveIdentity(path: string): string {
  for (const [member, pick] of [
    ['manifest.json', (j: unknown) => (j as Array<{ Config?: string }>)[0]?.Config],
    ['index.json', (j: unknown) => (j as { manifests?: Array<{ digest?: string }> }).manifests?.[0]?.digest],
  ] as const) {
    // Members may be stored as `name` or `./name` depending on the tool that wrote the archive (tar then
    // exits 2 for the one it did not find, so only the output counts).
    const r = spawnSync('tar', ['-xOf', path, '--wildcards', member, `./${member}`], {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    });
    if (r.stdout) {
      const id = pick(JSON.parse(r.stdout));
      if (id) return id;
    }
  }
  throw new Error(`${path}: neither a docker-archive (manifest.json) nor an OCI layout (index.json)`);
}

function runOrThrow(cmd: string, args: string[], what: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0)
    throw new Error(`${what} failed (${cmd} ${args.join(' ')}): ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  return r.stdout;
}

export function containerdConfig(base: string, socket: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${join(base, 'containerd')}"
state = "${join(base, 'run', 'containerd')}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "${socket}"

[ttrpc]
  address = "${socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "${join(base, 'run', 'opt')}"

[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  # root here may lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below the caller's.
  restrict_oom_score_adj = true

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  # runc's state under our base dir, so a crashed run's containers can be found and removed.
  Root = "${join(base, 'run', 'runc')}"
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "${join(base, 'cni', 'net.d')}"
`;
}

function cniConfig(base: string): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'fwc-node',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: POD_SUBNET, rangeStart: '10.244.0.10', gateway: NODE_IP }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: join(base, 'cni', 'networks'),
          },
        },
        { type: 'loopback' },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(base: string, socket: string, port: number): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // cgroup v1 + v2 hybrid counts as v1, which kubelet 1.35 refuses by default.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      containerRuntimeEndpoint: `unix://${socket}`,
      address: NODE_IP,
      port,
      readOnlyPort: 0,
      healthzPort: 0,
      // The API server reaches the kubelet only for logs/exec, which the suite does not use; nothing
      // else can reach this address.
      authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
      authorization: { mode: 'AlwaysAllow' },
      podLogsDir: join(base, 'pod-logs'),
      failSwapOn: false,
      // The images come from archives: never garbage-collect them, there is no registry to pull again.
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      serializeImagePulls: false,
      registerNode: true,
      maxPods: 20,
    },
    null,
    2,
  );
}

/** Kills the node's processes and restores the host if the runner dies without stop() (SIGKILL). */
function startWatchdog(base: string): () => void {
  const script = `
parent="$1"; base="$2"; node="$3"; tsx="$4"; restore="$5"
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
sleep 6
exec "$node" "$tsx" "$restore" "$base" >>"$base/watchdog.log" 2>&1
`;
  const child = spawn(
    'sh',
    [
      '-c',
      script,
      'fwc-node-watchdog',
      String(process.pid),
      base,
      process.execPath,
      join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
      join(ROOT, 'harness', 'node', 'restore-host.ts'),
    ],
    { detached: true, stdio: 'ignore' },
  );
  child.unref();
  return () => {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  };
}

export async function startNode(opts: NodeOptions): Promise<RealNode> {
  const unavailable = realNodeUnavailableReason();
  if (unavailable) throw new RealNodeUnavailable(unavailable);
  const log = opts.log ?? (() => {});
  const base = opts.baseDir ?? process.env.FWC_NODE_DIR ?? '/var/lib/flyte-workspace-controller-node';
  const startTimeoutMs = opts.startTimeoutMs ?? 90_000;
  const timings: PhaseTimes = {};
  let t = Date.now();
  const phase = (name: string) => {
    timings[name] = Date.now() - t;
    log(`${name}: ${timings[name]} ms`);
    t = Date.now();
  };

  mkdirSync(base, { recursive: true });
  prepareHost(base, { name: BRIDGE, address: `${NODE_IP}/24` }, log);
  const stopWatchdog = startWatchdog(base);
  const runDir = join(base, 'run');
  const logDir = join(runDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  mkdirSync(join(base, 'cni', 'net.d'), { recursive: true });
  const socket = join(runDir, 'containerd.sock');
  const procs: ManagedProcess[] = [];
  let controlPlane: ControlPlane | undefined;
  let stopped = false;

  const ctr = (args: string[]) =>
    runOrThrow('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], `ctr ${args[0]}`);
  const logTails = (lines = 40) => {
    const own = procs
      .map((p) => {
        const text = existsSync(p.stderrLog)
          ? readFileSync(p.stderrLog, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
          : '(no log)';
        return `--- ${p.name} (last ${lines} lines of ${p.stderrLog}):\n${text}`;
      })
      .join('\n');
    return `${controlPlane?.logTails(lines) ?? ''}\n${own}`;
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const problems: string[] = [];
    const t0 = Date.now();
    const kubelet = procs.find((p) => p.name === 'kubelet');
    if (controlPlane && kubelet?.running) {
      await removeWorkloads(controlPlane, log).catch((e: unknown) =>
        problems.push(`removing workloads: ${(e as Error).message}`),
      );
    }
    for (const p of [...procs].reverse()) {
      if (p.name === 'containerd' && p.running) removeContainers(ctr, problems);
      await p.stop(15_000);
    }
    await controlPlane?.stop().catch((e: unknown) => problems.push(`control plane stop: ${(e as Error).message}`));
    problems.push(...restoreHost(base, log));
    stopWatchdog();
    log(`node stopped and host restored in ${Date.now() - t0} ms`);
    if (problems.length > 0) throw new Error(`node teardown left problems:\n  - ${problems.join('\n  - ')}`);
  };

  try {
    const pauseArchive = pauseImageArchive(opts.cacheDir ?? defaultCacheDir(), KUBE_VERSION);
    phase('pause image');

    const auditLogPath = join(runDir, 'audit.log');
    writeFileSync(join(runDir, 'audit-policy.json'), AUDIT_POLICY);
    controlPlane = await startControlPlane({
      binDir: opts.binDir,
      extraApiServerArgs: [
        `--audit-policy-file=${join(runDir, 'audit-policy.json')}`,
        `--audit-log-path=${auditLogPath}`,
      ],
      bindAddress: NODE_IP,
      extraControllers: NODE_CONTROLLERS,
      serviceAccountAdmission: true,
      startTimeoutMs,
    });
    phase('control plane');
    const apiPort = Number(new URL(controlPlane.server).port);
    // The kubelet and the scheduler get copies inside the base dir: a crashed run's processes are found by it.
    const kubeconfig = join(runDir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, readFileSync(controlPlane.kubeconfigPath('admin')), { mode: 0o600 });

    writeFileSync(join(runDir, 'containerd.toml'), containerdConfig(base, socket));
    writeFileSync(join(base, 'cni', 'net.d', '10-fwc-node.conflist'), cniConfig(base));
    const containerd = new ManagedProcess(
      'containerd',
      'containerd',
      ['--config', join(runDir, 'containerd.toml')],
      logDir,
      () => {},
    );
    procs.push(containerd);
    containerd.start();
    await until(
      'containerd',
      startTimeoutMs,
      [containerd],
      async () =>
        existsSync(socket) && spawnSync('ctr', ['--address', socket, 'version'], { stdio: 'ignore' }).status === 0,
    );
    phase('containerd');

    await importImages(ctr, base, [{ archive: pauseArchive, ref: PAUSE_IMAGE }, ...(opts.images ?? [])], log);
    phase('image import');

    // No kube-proxy: the one Service the pods need is `kubernetes` (KUBERNETES_SERVICE_HOST).
    runOrThrow(
      'iptables',
      [
        '-w',
        '5',
        '-t',
        'nat',
        '-A',
        'PREROUTING',
        '-d',
        `${KUBERNETES_SERVICE_IP}/32`,
        '-p',
        'tcp',
        '--dport',
        '443',
        '-m',
        'comment',
        '--comment',
        'fwc-node kubernetes service',
        '-j',
        'DNAT',
        '--to-destination',
        `${NODE_IP}:${apiPort}`,
      ],
      'the kubernetes Service DNAT rule',
    );

    const scheduler = new ManagedProcess(
      'kube-scheduler',
      join(opts.binDir, 'kube-scheduler'),
      [`--kubeconfig=${kubeconfig}`, '--leader-elect=false', '--secure-port=0'],
      logDir,
      () => {},
    );
    procs.push(scheduler);
    scheduler.start();

    const kubeletPort = await freePort();
    writeFileSync(join(runDir, 'kubelet.json'), kubeletConfig(base, socket, kubeletPort));
    const kubelet = new ManagedProcess(
      'kubelet',
      join(opts.binDir, 'kubelet'),
      [
        `--config=${join(runDir, 'kubelet.json')}`,
        `--kubeconfig=${kubeconfig}`,
        `--root-dir=${join(base, 'kubelet')}`,
        `--node-ip=${NODE_IP}`,
        `--hostname-override=${NODE_NAME}`,
      ],
      logDir,
      () => {},
    );
    procs.push(kubelet);
    kubelet.start();

    const core = kubeConfigOf(controlPlane).makeApiClient(CoreV1Api);
    await until(`node ${NODE_NAME} Ready and untainted`, startTimeoutMs, [...procs], async () => {
      const node = await core.readNode({ name: NODE_NAME });
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      return ready && (node.spec?.taints ?? []).length === 0;
    });
    // kube-root-ca.crt is what every pod's projected volume carries as the API server's CA.
    await until('ConfigMap default/kube-root-ca.crt', startTimeoutMs, [...procs], async () => {
      await core.readNamespacedConfigMap({ namespace: 'default', name: 'kube-root-ca.crt' });
      return true;
    });
    phase('node up');

    return {
      controlPlane,
      nodeName: NODE_NAME,
      nodeIp: NODE_IP,
      podLogsDir: join(base, 'pod-logs'),
      timings,
      auditLogPath,
      auditedWrites: () =>
        existsSync(auditLogPath)
          ? readFileSync(auditLogPath, 'utf8')
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as AuditEvent)
          : [],
      ctr,
      logTails,
      stop,
    };
  } catch (e) {
    const tails = logTails();
    await stop().catch((err: unknown) => log(`teardown after failed start: ${(err as Error).message}`));
    throw new Error(`real node failed to start: ${(e as Error).message}\n${tails}`);
  }
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, NODE_IP, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function kubeConfigOf(cp: ControlPlane): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fwc-node', server: cp.server, caData: cp.caData, skipTLSVerify: false }],
    users: [{ name: 'admin', token: cp.adminToken }],
    contexts: [{ name: 'admin', cluster: 'fwc-node', user: 'admin' }],
    currentContext: 'admin',
  });
  return kc;
}

/**
 * Imports each archive unless this containerd already holds the same archive's image: containerd's
 * store persists across runs in the base dir, which saves the import (30-45 s for our image) on warm runs.
 */
export async function importImages(
  ctr: (args: string[]) => string,
  base: string,
  images: ImageArchive[],
  log: (m: string) => void,
): Promise<void> {
  const stampFile = join(base, 'containerd', 'fwc-imported.json');
  const stamps: Record<string, string> = existsSync(stampFile) ? JSON.parse(readFileSync(stampFile, 'utf8')) : {};
  const present = new Set(ctr(['images', 'ls', '-q']).split('\n').filter(Boolean));
  for (const { archive, ref } of images) {
    const digest = archiveIdentity(archive);
    if (present.has(ref) && stamps[ref] === digest) {
      log(`image ${ref} already imported`);
      continue;
    }
    ctr(['images', 'import', '--no-unpack=false', archive]);
    const after = new Set(ctr(['images', 'ls', '-q']).split('\n').filter(Boolean));
    if (!after.has(ref))
      throw new Error(`importing ${archive} did not yield image ${ref} (containerd has: ${[...after].join(', ')})`);
    stamps[ref] = digest;
    writeFileSync(stampFile, JSON.stringify(stamps, null, 2));
    log(`image ${ref} imported`);
  }
}

/** Deletes every workload outside the system namespaces and waits for its pods to go (graceful first). */
async function removeWorkloads(cp: ControlPlane, log: (m: string) => void): Promise<void> {
  const kc = kubeConfigOf(cp);
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const namespaces = (await core.listNamespace()).items
    .map((n) => n.metadata?.name ?? '')
    .filter((n) => n && !SYSTEM_NAMESPACES.has(n));
  for (const namespace of namespaces) {
    await apps.deleteCollectionNamespacedDeployment({ namespace });
    await apps.deleteCollectionNamespacedReplicaSet({ namespace });
    await core.deleteCollectionNamespacedPod({ namespace });
  }
  const t0 = Date.now();
  const deadline = t0 + 40_000;
  let slowReported = false;
  for (;;) {
    const pods = (await core.listPodForAllNamespaces()).items.filter(
      (p) => !SYSTEM_NAMESPACES.has(p.metadata?.namespace ?? ''),
    );
    if (pods.length === 0) {
      log(`workloads removed in ${Date.now() - t0} ms`);
      return;
    }
    if (!slowReported && Date.now() - t0 > 10_000) {
      slowReported = true;
      const state = (p: V1Pod) =>
        `${p.metadata?.name} (${p.status?.phase}, ready ${p.status?.containerStatuses?.[0]?.ready}, started ${p.status?.containerStatuses?.[0]?.started})`;
      log(`still terminating after 10 s: ${pods.map(state).join(', ')}`);
    }
    if (Date.now() > deadline) {
      log(
        `pods still there after ${Date.now() - t0} ms, deleting them at once: ${pods.map((p) => p.metadata?.name).join(', ')}`,
      );
      for (const p of pods) {
        await core
          .deleteNamespacedPod({
            namespace: p.metadata?.namespace ?? '',
            name: p.metadata?.name ?? '',
            gracePeriodSeconds: 0,
          })
          .catch(() => {});
      }
      return;
    }
    await sleep(500);
  }
}

/** Containers the kubelet left (it does not remove sandboxes on the way out): tasks killed, then removed. */
function removeContainers(ctr: (args: string[]) => string, problems: string[]): void {
  try {
    for (const line of ctr(['tasks', 'ls']).split('\n').slice(1).filter(Boolean)) {
      const id = line.split(/\s+/)[0] ?? '';
      try {
        ctr(['tasks', 'kill', '--signal', 'SIGKILL', id]);
      } catch {
        // already stopped
      }
      try {
        ctr(['tasks', 'delete', '--force', id]);
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
    const ids = ctr(['containers', 'ls', '-q']).split('\n').filter(Boolean);
    if (ids.length > 0) ctr(['containers', 'delete', ...ids]);
  } catch (e) {
    problems.push(`removing containers: ${(e as Error).message}`);
  }
}
