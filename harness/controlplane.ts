// A real Kubernetes control plane for integration tests: etcd + kube-apiserver + kube-controller-manager,
// started from local binaries (scripts/build-control-plane.sh), the way controller-runtime's envtest does,
// but with static-token users so tests can act as the controller's real RBAC identity.
// docs/external-systems.md (Kubernetes) says what this needs to reproduce and why.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type Identity = 'admin' | 'controller' | 'oncall';

export const CONTROLLER_NAMESPACE = 'flyte-workspace-controller';
export const CONTROLLER_SERVICE_ACCOUNT = 'flyte-workspace-controller';
export const CONTROLLER_USERNAME = `system:serviceaccount:${CONTROLLER_NAMESPACE}:${CONTROLLER_SERVICE_ACCOUNT}`;
export const CONTROLLER_GROUPS = [
  'system:serviceaccounts',
  `system:serviceaccounts:${CONTROLLER_NAMESPACE}`,
  'system:authenticated',
];
export const ADMIN_USERNAME = 'admin';
export const ADMIN_GROUPS = ['system:masters'];
/** A person on call: no rights of their own, only what manifests/oncall-rbac.yaml grants the group. */
export const ONCALL_USERNAME = 'oncall@example.com';
export const ONCALL_GROUPS = ['flyte-workspace-oncall', 'system:authenticated'];

/** The facts a test needs to talk to the control plane (serialisable: passed from globalSetup to workers). */
export interface KubeConnection {
  server: string;
  /** base64 of the PEM serving certificate chain (leaf + self-signed CA) of kube-apiserver. */
  caData: string;
  adminToken: string;
  controllerToken: string;
  oncallToken: string;
}

export interface ControlPlaneOptions {
  /** Directory with kube-apiserver, kube-controller-manager, etcd. Default: $KUBEBUILDER_ASSETS. */
  binDir?: string;
  /** Start kube-controller-manager (namespace deletion, GC, default ServiceAccounts, quota status). Default true. */
  controllerManager?: boolean;
  /** Time allowed for each component to become ready. Default 60 s. */
  startTimeoutMs?: number;
  /** Time between SIGTERM and SIGKILL on stop. Default 10 s. */
  stopTimeoutMs?: number;
  /** Progress messages (default: none). */
  log?: (msg: string) => void;
}

export interface ControlPlane extends KubeConnection {
  /** Temp dir holding data, certs, tokens, kubeconfigs and process logs (removed by stop()). */
  dir: string;
  /** Path of a kubeconfig file for the identity (for kubectl or out-of-process runs). */
  kubeconfigPath(identity: Identity): string;
  /** Stops kube-apiserver and starts it again on the same port and storage; resolves when /readyz is ok. */
  restartApiServer(opts?: { downtimeMs?: number }): Promise<void>;
  /** Last lines of every component's stderr, for failure reports. */
  logTails(lines?: number): string;
  stop(): Promise<void>;
}

const BINARIES = ['kube-apiserver', 'kube-controller-manager', 'etcd'] as const;
const KCM_CONTROLLERS = [
  'namespace-controller',
  'garbage-collector-controller',
  'serviceaccount-controller',
  'resourcequota-controller',
];
const TAIL_LINES = 40;

export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
}

// ---------------------------------------------------------------------------------------------------------
// Processes

function tailOf(file: string, lines = TAIL_LINES): string {
  if (!existsSync(file)) return '(no log)';
  const all = readFileSync(file, 'utf8').trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

class ManagedProcess {
  child: ChildProcess | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly stdoutLog: string;
  readonly stderrLog: string;

  constructor(
    readonly name: string,
    readonly bin: string,
    readonly args: string[],
    dir: string,
    private readonly onPidsChanged: () => void,
  ) {
    this.stdoutLog = join(dir, `${name}.stdout.log`);
    this.stderrLog = join(dir, `${name}.stderr.log`);
  }

  get running(): boolean {
    return this.child !== undefined && this.exit === undefined;
  }

  start(): void {
    // Append: a restarted process keeps its earlier output in the same file.
    const out = openSync(this.stdoutLog, 'a');
    const err = openSync(this.stderrLog, 'a');
    try {
      writeFileSync(err, `\n==== ${new Date().toISOString()} ${this.bin} ${this.args.join(' ')}\n`);
      this.exit = undefined;
      // Own process group: a terminal Ctrl-C (npm run local) must reach the controller first, which then
      // releases its Lease against a still-running apiserver; we stop these ourselves afterwards.
      const child = spawn(this.bin, this.args, { stdio: ['ignore', out, err], detached: true });
      this.child = child;
      this.exited = new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          this.exit = { code, signal };
          resolve();
        });
        child.once('error', (e) => {
          this.exit = { code: null, signal: null };
          writeFileSync(this.stderrLog, `spawn error: ${e.message}\n`, { flag: 'a' });
          resolve();
        });
      });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    this.onPidsChanged();
  }

  /** Throws if the process has exited (it is never supposed to while the control plane is up). */
  assertRunning(): void {
    if (this.exit === undefined) return;
    const { code, signal } = this.exit;
    const tail = tailOf(this.stderrLog);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const inUse = tail.split('\n').find((l) => /address already in use/i.test(l));
    if (inUse) {
      throw new PortInUseError(
        `${this.name} could not bind its port: ${inUse.trim()}\nLast lines of ${this.stderrLog}:\n${tail}`,
      );
    }
    throw new ControlPlaneError(
      `${this.name} exited early (${how}). Last ${TAIL_LINES} lines of ${this.stderrLog}:\n${tail}`,
    );
  }

  async stop(timeoutMs: number): Promise<void> {
    const child = this.child;
    if (!child || this.exit !== undefined) return;
    child.kill('SIGTERM');
    // Cancel the timer once the process is gone, or it would keep the runner alive for timeoutMs.
    const timer = new AbortController();
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      sleep(timeoutMs, true, { signal: timer.signal }).catch(() => false),
    ]);
    timer.abort();
    if (timedOut && this.exit === undefined) {
      child.kill('SIGKILL');
      await this.exited;
    }
    this.onPidsChanged();
  }

  killNow(): void {
    if (this.child?.pid !== undefined && this.exit === undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

class PortInUseError extends ControlPlaneError {
  override name = 'PortInUseError';
}

/** `n` distinct free loopback ports (held open together while picking, so they cannot coincide). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (srv) =>
        new Promise<number>((resolve, reject) => {
          srv.unref();
          srv.on('error', reject);
          srv.listen(0, '127.0.0.1', () => {
            const addr = srv.address();
            resolve(typeof addr === 'object' && addr ? addr.port : 0);
          });
        }),
    ),
  );
  await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(resolve))));
  return ports;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP probes

interface Probe {
  status: number;
  body: string;
}

function get(url: string, opts: { ca?: string; token?: string; insecure?: boolean } = {}): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      {
        method: 'GET',
        headers,
        ca: opts.ca,
        rejectUnauthorized: !opts.insecure,
        timeout: 5_000,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: GET ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `check` until it returns true, failing fast when a watched process exits. */
async function until(
  what: string,
  timeoutMs: number,
  procs: ManagedProcess[],
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt yet';
  for (;;) {
    for (const p of procs) p.assertRunning();
    try {
      if (await check()) return;
      last = 'not ready';
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) {
      const tails = procs.map((p) => `--- ${p.name} (${p.stderrLog}):\n${tailOf(p.stderrLog)}`).join('\n');
      throw new ControlPlaneError(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})\n${tails}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Files

/** Writes `<dir>/<identity>.kubeconfig` for a connection (e.g. for a controller started as a child process). */
/** User name and bearer token of a static-token identity of the test control plane. */
export function credentialsOf(identity: Identity, conn: KubeConnection): { user: string; token: string } {
  switch (identity) {
    case 'admin':
      return { user: ADMIN_USERNAME, token: conn.adminToken };
    case 'controller':
      return { user: CONTROLLER_USERNAME, token: conn.controllerToken };
    case 'oncall':
      return { user: ONCALL_USERNAME, token: conn.oncallToken };
  }
}

export function writeKubeconfigFile(conn: KubeConnection, identity: Identity, dir: string): string {
  const file = join(dir, `${identity}.kubeconfig`);
  const { user, token } = credentialsOf(identity, conn);
  writeFileSync(file, kubeconfigYaml(conn.server, conn.caData, user, token), { mode: 0o600 });
  return file;
}

function kubeconfigYaml(server: string, caData: string, user: string, token: string): string {
  // JSON is valid YAML; no dependency needed.
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fwc-test', cluster: { server, 'certificate-authority-data': caData } }],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: user, context: { cluster: 'fwc-test', user } }],
      'current-context': user,
    },
    null,
    2,
  );
}

function resolveBinaries(binDir: string | undefined): Record<(typeof BINARIES)[number], string> {
  const how =
    'Build them with `bash scripts/build-control-plane.sh` (prints their directory) and set KUBEBUILDER_ASSETS to it; `npm test` does both.';
  if (!binDir) throw new ControlPlaneError(`KUBEBUILDER_ASSETS is not set and no binDir was given. ${how}`);
  const out: Partial<Record<(typeof BINARIES)[number], string>> = {};
  const missing: string[] = [];
  for (const b of BINARIES) {
    const p = join(binDir, b);
    try {
      accessSync(p, constants.X_OK);
      out[b] = p;
    } catch {
      missing.push(b);
    }
  }
  if (missing.length > 0) {
    throw new ControlPlaneError(`missing control-plane binary ${missing.join(', ')} in ${binDir}. ${how}`);
  }
  return out as Record<(typeof BINARIES)[number], string>;
}

function supportsFlag(bin: string, flag: string): boolean {
  try {
    const help = execFileSync(bin, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return help.includes(flag);
  } catch (e) {
    // Some binaries print help on stderr or exit non-zero for --help.
    const err = e as { stdout?: string; stderr?: string };
    return `${err.stdout ?? ''}${err.stderr ?? ''}`.includes(flag);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup if the runner dies

const live = new Set<{ killNow(): void }>();
let handlersInstalled = false;

function killAllNow(): void {
  for (const cp of live) cp.killNow();
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAllNow();
      // Keep the default behaviour (terminate) unless someone else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

// A detached shell that outlives a SIGKILLed runner: when the parent is gone, it kills the pids listed in
// the pid file and removes the temp dir. stop() kills it.
const WATCHDOG = `
parent="$1"; pidfile="$2"; dir="$3"
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
pids="$(cat "$pidfile" 2>/dev/null)"
if [ -n "$pids" ]; then kill -TERM $pids 2>/dev/null; sleep 5; kill -KILL $pids 2>/dev/null; fi
rm -rf "$dir"
`;

// ---------------------------------------------------------------------------------------------------------

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bins = resolveBinaries(opts.binDir ?? process.env.KUBEBUILDER_ASSETS);
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'fwc-controlplane-'));
  const pki = join(dir, 'pki');
  const pidFile = join(dir, 'pids');
  const procs: ManagedProcess[] = [];
  const writePids = () => {
    const pids = procs.filter((p) => p.running && p.child?.pid).map((p) => p.child?.pid);
    try {
      writeFileSync(pidFile, pids.join(' '));
    } catch {
      // dir removed during stop
    }
  };

  const watchdog = spawn('sh', ['-c', WATCHDOG, 'fwc-watchdog', String(process.pid), pidFile, dir], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();

  let stopped = false;
  const entry = {
    killNow() {
      for (const p of procs) p.killNow();
      try {
        watchdog.kill('SIGKILL');
      } catch {
        // gone
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(entry);
  installExitHandlers();

  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    // Reverse start order: KCM, apiserver, etcd.
    for (const p of [...procs].reverse()) await p.stop(stopTimeoutMs);
    watchdog.kill('SIGKILL');
    live.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };

  const logTails = (lines = TAIL_LINES) =>
    procs.map((p) => `--- ${p.name} (last ${lines} lines of stderr):\n${tailOf(p.stderrLog, lines)}`).join('\n');

  try {
    const t0 = Date.now();
    // ---- etcd
    const noFsync = supportsFlag(bins.etcd, '--unsafe-no-fsync');
    let etcdUrl = '';
    await withFreshPorts('etcd', async () => {
      const [client, peer] = await freePorts(2);
      etcdUrl = `http://127.0.0.1:${client}`;
      const peerUrl = `http://127.0.0.1:${peer}`;
      rmSync(join(dir, 'etcd-data'), { recursive: true, force: true });
      const etcd = new ManagedProcess(
        'etcd',
        bins.etcd,
        [
          '--name=fwc-test',
          `--data-dir=${join(dir, 'etcd-data')}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=fwc-test=${peerUrl}`,
          ...(noFsync ? ['--unsafe-no-fsync=true'] : []),
        ],
        dir,
        writePids,
      );
      procs.push(etcd);
      etcd.start();
      try {
        await until('etcd /health', startTimeoutMs, [etcd], async () => {
          const r = await get(`${etcdUrl}/health`);
          return r.status === 200 && r.body.includes('"health":"true"');
        });
      } catch (e) {
        await etcd.stop(stopTimeoutMs);
        procs.splice(procs.indexOf(etcd), 1);
        throw e;
      }
    });
    log(`etcd ready at ${etcdUrl} (${Date.now() - t0} ms)`);

    // ---- kube-apiserver
    mkdirSync(pki, { recursive: true });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    writeFileSync(join(pki, 'sa.key'), privateKey, { mode: 0o600 });
    writeFileSync(join(pki, 'sa.pub'), publicKey);
    const adminToken = randomBytes(24).toString('hex');
    const controllerToken = randomBytes(24).toString('hex');
    const oncallToken = randomBytes(24).toString('hex');
    const tokensFile = join(dir, 'tokens.csv');
    writeFileSync(
      tokensFile,
      [
        `${adminToken},${ADMIN_USERNAME},admin-uid,"${ADMIN_GROUPS.join(',')}"`,
        `${controllerToken},${CONTROLLER_USERNAME},flyte-workspace-controller-uid,"${CONTROLLER_GROUPS.join(',')}"`,
        `${oncallToken},${ONCALL_USERNAME},oncall-uid,"${ONCALL_GROUPS.join(',')}"`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    let port = 0;
    let apiserver: ManagedProcess | undefined;
    const apiserverArgs = (p: number) => [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      // 127.0.0.1 is not a valid Endpoints address; nothing in the tests needs the kubernetes Service endpoints.
      '--endpoint-reconciler-type=none',
      '--shutdown-watch-termination-grace-period=2s',
      `--secure-port=${p}`,
      `--cert-dir=${pki}`,
      `--token-auth-file=${tokensFile}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      // No token controller runs, so the ServiceAccount admission plugin would reject pods; the
      // ValidatingAdmissionPolicy plugin (default-enabled) must stay on for manifests/admission-policy.yaml.
      '--disable-admission-plugins=ServiceAccount',
      `--service-account-issuer=https://127.0.0.1:${p}/`,
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
    ];
    const waitApiserverReady = async (proc: ManagedProcess) => {
      await until('kube-apiserver /readyz', startTimeoutMs, [...procs.filter((p) => p !== proc), proc], async () => {
        const r = await get(`https://127.0.0.1:${port}/readyz`, { insecure: true });
        return r.status === 200;
      });
    };
    await withFreshPorts('kube-apiserver', async () => {
      port = (await freePorts(1))[0] ?? 0;
      rmSync(join(pki, 'apiserver.crt'), { force: true });
      rmSync(join(pki, 'apiserver.key'), { force: true });
      apiserver = new ManagedProcess('kube-apiserver', bins['kube-apiserver'], apiserverArgs(port), dir, writePids);
      procs.push(apiserver);
      apiserver.start();
      try {
        await waitApiserverReady(apiserver);
      } catch (e) {
        await apiserver.stop(stopTimeoutMs);
        procs.splice(procs.indexOf(apiserver), 1);
        throw e;
      }
    });
    const api = apiserver as unknown as ManagedProcess;
    const server = `https://127.0.0.1:${port}`;
    // Self-generated serving cert: the file holds the leaf and its self-signed CA.
    const caPem = readFileSync(join(pki, 'apiserver.crt'), 'utf8');
    const caData = Buffer.from(caPem).toString('base64');
    log(`kube-apiserver ready at ${server} (${Date.now() - t0} ms)`);

    // Verifies the CA and the admin token, and that the apiserver bootstrapped its namespaces.
    await until('the default namespace', startTimeoutMs, procs, async () => {
      const r = await get(`${server}/api/v1/namespaces/default`, { ca: caPem, token: adminToken });
      if (r.status === 401 || r.status === 403) {
        throw new ControlPlaneError(`admin token rejected (${r.status}): ${r.body}`);
      }
      return r.status === 200;
    });

    const kubeconfigs: Record<Identity, string> = {
      admin: join(dir, 'admin.kubeconfig'),
      controller: join(dir, 'controller.kubeconfig'),
      oncall: join(dir, 'oncall.kubeconfig'),
    };
    writeFileSync(kubeconfigs.admin, kubeconfigYaml(server, caData, ADMIN_USERNAME, adminToken), { mode: 0o600 });
    writeFileSync(kubeconfigs.controller, kubeconfigYaml(server, caData, CONTROLLER_USERNAME, controllerToken), {
      mode: 0o600,
    });
    writeFileSync(kubeconfigs.oncall, kubeconfigYaml(server, caData, ONCALL_USERNAME, oncallToken), { mode: 0o600 });

    // ---- kube-controller-manager
    if (opts.controllerManager ?? true) {
      const kcm = new ManagedProcess(
        'kube-controller-manager',
        bins['kube-controller-manager'],
        [
          `--kubeconfig=${kubeconfigs.admin}`,
          `--controllers=${KCM_CONTROLLERS.join(',')}`,
          '--leader-elect=false',
          '--use-service-account-credentials=false',
          '--secure-port=0',
        ],
        dir,
        writePids,
      );
      procs.push(kcm);
      kcm.start();
      // The serviceaccount controller creates default/default: proof that KCM is up and talking to us.
      await until('kube-controller-manager (ServiceAccount default/default)', startTimeoutMs, procs, async () => {
        const r = await get(`${server}/api/v1/namespaces/default/serviceaccounts/default`, {
          ca: caPem,
          token: adminToken,
        });
        return r.status === 200;
      });
      log(`kube-controller-manager ready (${Date.now() - t0} ms)`);
    }

    return {
      server,
      caData,
      adminToken,
      controllerToken,
      oncallToken,
      dir,
      kubeconfigPath: (identity) => kubeconfigs[identity],
      logTails,
      async restartApiServer({ downtimeMs = 0 } = {}) {
        if (stopped) throw new ControlPlaneError('control plane is stopped');
        await api.stop(stopTimeoutMs);
        if (downtimeMs > 0) await sleep(downtimeMs);
        api.start();
        await waitApiserverReady(api);
      },
      stop: stopAll,
    };
  } catch (e) {
    const message = (e as Error).message;
    // Add the logs of the components the message does not already show.
    const others = procs
      .filter((p) => !message.includes(p.stderrLog))
      .map((p) => `--- ${p.name} (last ${TAIL_LINES} lines of ${p.stderrLog}):\n${tailOf(p.stderrLog)}`)
      .join('\n');
    await stopAll().catch(() => {});
    const full = others ? `${message}\n\nOther components:\n${others}` : message;
    if (e instanceof ControlPlaneError) {
      e.message = full;
      throw e;
    }
    throw new ControlPlaneError(`control plane failed to start: ${full}`);
  }
}

/** Runs `attempt` again (new random ports) if the component lost a port race, up to 3 times. */
async function withFreshPorts(what: string, attempt: () => Promise<void>): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await attempt();
      return;
    } catch (e) {
      if (!(e instanceof PortInUseError) || i >= 3) throw e;
      process.stderr.write(`[controlplane] ${what}: port in use, retrying with another port (${i}/3)\n`);
    }
  }
}
