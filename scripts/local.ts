// `npm run local` (through scripts/local.sh, which builds dist/ first): a real kube-apiserver + etcd +
// kube-controller-manager, moto (IAM) and the FlyteAdmin double on this machine; the controller's RBAC,
// roles and admission policy applied as admin; the controller itself started as a child process
// (`node dist/cli.js run`, under its own ServiceAccount identity); the example workspace applied; and once
// it is Ready, a summary of everything it provisioned. Then it keeps running until Ctrl-C (a second
// Ctrl-C forces), or exits at once with --once.
//
// State lives in .local/ (gitignored; LOCAL_RUN_DIR or --dir to move it): config.json, the kubeconfigs,
// controller.log and workspaces/<name>.json (edit one while running: it is applied to its ConfigMap).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  unwatchFile,
  watchFile,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { GetRoleCommand, IAMClient, ListRolePoliciesCommand } from '@aws-sdk/client-iam';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { ControllerProcess, FAKE_AWS_ENV } from '../harness/controller-process.js';
import {
  CONTROLLER_NAMESPACE,
  CONTROLLER_SERVICE_ACCOUNT,
  type ControlPlane,
  startControlPlane,
} from '../harness/controlplane.js';
import { FlyteAdminDouble } from '../harness/flyteadmin-double.js';
import { applyDocs, describeError, manifestDocs } from '../harness/kube.js';
import { type Moto, startMoto } from '../harness/moto.js';
import {
  defaultConfig,
  MANAGED_BY_LABEL,
  mergeConfig,
  STATUS_ANNOTATION,
  validateConfig,
} from '../src/config/config.js';
import { MatchableResource } from '../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { Project_ProjectState } from '../src/gen/flyteidl/admin/project_pb.js';
import { parseStatus, type WorkspaceStatus } from '../src/reconcile/status.js';

const ROOT = resolve(import.meta.dirname, '..');
const NAMESPACES = [CONTROLLER_NAMESPACE, 'workspace-platform', 'flyte'];
const MANIFESTS = ['manifests/rbac.yaml', 'manifests/workspace-roles.yaml', 'manifests/admission-policy.yaml'];
const EXAMPLE = 'manifests/example-workspace.yaml';
const CONFIG_MANIFEST = 'manifests/config.yaml';
const WORKSPACE_LABEL = { app: 'workspace-config' };
const ROLE_ARN_ANNOTATION = 'eks.amazonaws.com/role-arn';
const FIELD_MANAGER = 'local-run';
/** Two signals closer than this are one Ctrl-C delivered twice (terminal + npm/tsx forwarding it). */
const SIGNAL_DEBOUNCE_MS = 1000;

const USAGE = `Usage: npm run local -- [options]

Starts a local control plane, moto (IAM), a FlyteAdmin double and the controller, applies
${EXAMPLE}, waits until it is Ready and prints what was provisioned. Runs until Ctrl-C.

  --once                 exit 0 right after the summary (env LOCAL_RUN_ONCE=1)
  --metrics-port N       controller /metrics port (env LOCAL_RUN_METRICS_PORT; default: a free port)
  --health-port N        controller /healthz, /readyz port (env LOCAL_RUN_HEALTH_PORT; default: a free port)
  --dir DIR              state directory (env LOCAL_RUN_DIR; default .local)
  --ready-timeout S      seconds to wait for the workspace to become Ready (default 180)
  -h, --help             this text`;

// ---------------------------------------------------------------------------------------------------------
// Output

const t0 = Date.now();
const elapsed = (since = t0) => `${((Date.now() - since) / 1000).toFixed(1)}s`;
const progress = (msg: string) => process.stderr.write(`[local +${elapsed()}] ${msg}\n`);
const out = (line = '') => process.stdout.write(`${line}\n`);
const rel = (p: string) => {
  const r = relative(process.cwd(), p);
  return r === '' ? '.' : r.startsWith('..') ? p : r;
};

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  progress(`${what} …`);
  const v = await fn();
  progress(`${what}: done in ${elapsed(start)}`);
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Arguments

interface Options {
  once: boolean;
  metricsPort?: number;
  healthPort?: number;
  dir: string;
  readyTimeoutMs: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      once: { type: 'boolean' },
      'metrics-port': { type: 'string' },
      'health-port': { type: 'string' },
      dir: { type: 'string' },
      'ready-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    out(USAGE);
    process.exit(0);
  }
  const env = process.env;
  const port = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`${name}: "${v}" is not a port number`);
    return n;
  };
  const dir = values.dir ?? env.LOCAL_RUN_DIR ?? join(ROOT, '.local');
  const readyTimeout = Number(values['ready-timeout'] ?? 180);
  if (!Number.isFinite(readyTimeout) || readyTimeout <= 0) throw new Error('--ready-timeout must be positive');
  return {
    once: values.once === true || /^(1|true|yes)$/i.test(env.LOCAL_RUN_ONCE ?? ''),
    metricsPort: port('--metrics-port', values['metrics-port'] ?? env.LOCAL_RUN_METRICS_PORT),
    healthPort: port('--health-port', values['health-port'] ?? env.LOCAL_RUN_HEALTH_PORT),
    dir: isAbsolute(dir) ? dir : resolve(process.cwd(), dir),
    readyTimeoutMs: readyTimeout * 1000,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(p));
    });
  });
}

function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

function docsOf(file: string): KubernetesObject[] {
  return manifestDocs(readFileSync(file, 'utf8'), rel(file));
}

async function apply(kc: KubeConfig, docs: KubernetesObject[], source: string): Promise<void> {
  await applyDocs(kc, docs, source, FIELD_MANAGER);
}

/** Runs scripts/build-control-plane.sh (instant when cached), its progress passed through on stderr. */
async function controlPlaneBinaries(): Promise<string> {
  const script = join(ROOT, 'scripts/build-control-plane.sh');
  const start = Date.now();
  // The Go build is silent for minutes at a time: say that it is still going.
  const heartbeat = setInterval(() => {
    progress(
      `still building the control plane (${elapsed(start)} so far; the first run takes about 9 minutes on 2 cores)`,
    );
  }, 30_000);
  try {
    return await new Promise<string>((resolveDir, reject) => {
      const child = spawn('bash', [script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (c: string) => {
        stdout += c;
      });
      child.on('error', reject);
      child.on('exit', (code) => {
        const dir = stdout.trim().split('\n').pop() ?? '';
        if (code === 0 && dir) resolveDir(dir);
        else reject(new Error(`${rel(script)} failed (exit ${code}); its output is above`));
      });
    });
  } finally {
    clearInterval(heartbeat);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The example workspace

interface ExampleWorkspace {
  namespace: string;
  name: string;
  /** The raw workspace.json text. */
  json: string;
  workspaceId?: string;
}

const FALLBACK_EXAMPLE: KubernetesObject & { data: Record<string, string> } = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'ml-research', namespace: 'workspace-platform', labels: { ...WORKSPACE_LABEL } },
  data: {
    'workspace.json': JSON.stringify(
      {
        workspace_id: 'ml-research',
        workspace_name: 'ML Research',
        users: [
          { user_id: 'u1', email: 'alice@example.com', role: 'owner' },
          { user_id: 'u2', email: 'bob@example.com', role: 'contributor' },
        ],
        data_bucket: 'ml-research-data',
        services: [{ service_type: 'flyte', config: {} }, 'sagemaker'],
        tier: 'default',
      },
      null,
      2,
    ),
  },
};

function loadExample(): { docs: KubernetesObject[]; workspaces: ExampleWorkspace[]; fallback: boolean } {
  const file = join(ROOT, EXAMPLE);
  const fallback = !existsSync(file);
  const docs = fallback ? [FALLBACK_EXAMPLE] : docsOf(file);
  const workspaces: ExampleWorkspace[] = [];
  for (const d of docs) {
    const cm = d as KubernetesObject & { data?: Record<string, string> };
    if (cm.kind !== 'ConfigMap' || cm.metadata?.labels?.app !== WORKSPACE_LABEL.app) continue;
    const json = cm.data?.['workspace.json'];
    if (!cm.metadata?.name || json === undefined) continue;
    let workspaceId: string | undefined;
    try {
      workspaceId = (JSON.parse(json) as { workspace_id?: string }).workspace_id;
    } catch {
      // reported by the controller as Invalid
    }
    workspaces.push({
      namespace: cm.metadata.namespace ?? 'workspace-platform',
      name: cm.metadata.name,
      json,
      workspaceId,
    });
  }
  if (workspaces.length === 0) {
    throw new Error(`${EXAMPLE} holds no ConfigMap labelled app=workspace-config with a workspace.json key`);
  }
  return { docs, workspaces, fallback };
}

// ---------------------------------------------------------------------------------------------------------
// Controller process

async function waitHttp200(url: string, timeoutMs: number, proc: ControllerProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (proc.exit) {
      throw new Error(
        `the controller exited (code ${proc.exit.code}, signal ${proc.exit.signal}); last lines of ${rel(logPath)}:\n${tail(logPath)}`,
      );
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      last = `HTTP ${res.status}: ${(await res.text()).trim().split('\n').slice(-3).join(' | ')}`;
      if (res.status === 200) return;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(250);
  }
  throw new Error(
    `${url} not 200 after ${timeoutMs / 1000}s (last: ${last}); last lines of ${rel(logPath)}:\n${tail(logPath)}`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Status and summary

async function readStatus(
  core: CoreV1Api,
  ws: ExampleWorkspace,
): Promise<{ status?: WorkspaceStatus; raw?: string; resourceVersion?: string }> {
  const cm = await core.readNamespacedConfigMap({ namespace: ws.namespace, name: ws.name });
  const raw = cm.metadata?.annotations?.[STATUS_ANNOTATION];
  return { status: parseStatus(raw), raw, resourceVersion: cm.metadata?.resourceVersion };
}

async function waitReady(
  core: CoreV1Api,
  ws: ExampleWorkspace,
  timeoutMs: number,
  proc: ControllerProcess,
  logPath: string,
) {
  const deadline = Date.now() + timeoutMs;
  let lastPhase = '';
  let status: WorkspaceStatus | undefined;
  while (Date.now() < deadline) {
    if (proc.exit) throw new Error(`the controller exited; last lines of ${rel(logPath)}:\n${tail(logPath)}`);
    try {
      status = (await readStatus(core, ws)).status;
    } catch (e) {
      status = undefined;
      lastPhase = `(cannot read: ${describeError(e)})`;
    }
    const phase = status?.phase ?? '(no status yet)';
    if (phase !== lastPhase) {
      progress(`${ws.namespace}/${ws.name}: ${phase}${status?.lastError ? ` (${status.lastError})` : ''}`);
      lastPhase = phase;
    }
    if (status?.phase === 'Ready') return status;
    await sleep(300);
  }
  throw new Error(
    `${ws.namespace}/${ws.name} not Ready after ${timeoutMs / 1000}s; status: ${JSON.stringify(status ?? null)}\n` +
      `last lines of ${rel(logPath)}:\n${tail(logPath)}`,
  );
}

interface Env {
  opts: Options;
  cp: ControlPlane;
  moto: Moto;
  flyte: FlyteAdminDouble;
  admin: KubeConfig;
  configPath: string;
  kubeconfigs: { admin: string; controller: string };
  logPath: string;
  metricsPort: number;
  healthPort: number;
  workspaceFiles: Map<string, string>;
  tiers: string[];
}

async function summary(env: Env, ws: ExampleWorkspace, status: WorkspaceStatus): Promise<void> {
  const core = env.admin.makeApiClient(CoreV1Api);
  const rbac = env.admin.makeApiClient(RbacAuthorizationV1Api);
  const managed = `${MANAGED_BY_LABEL}=flyte-workspace-controller`;
  const row = (k: string, v: string) => out(`  ${`${k}:`.padEnd(18)} ${v}`);
  out();
  out(`Workspace ${status.workspaceId ?? ws.workspaceId ?? '?'}  (ConfigMap ${ws.namespace}/${ws.name})`);
  row('status phase', status.phase);
  row('namespace(s)', (status.namespaces ?? []).join(', ') || '(none)');
  for (const ns of status.namespaces ?? []) {
    const quotas = await core.listNamespacedResourceQuota({ namespace: ns, labelSelector: managed });
    for (const q of quotas.items) {
      const hard = Object.entries(q.spec?.hard ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      row('quota', `${ns}/${q.metadata?.name}: ${hard}`);
    }
    const bindings = await rbac.listNamespacedRoleBinding({ namespace: ns, labelSelector: managed });
    for (const b of bindings.items) {
      const subjects = (b.subjects ?? []).map((s) => `${s.kind} ${s.name}`).join(', ');
      row('rbac', `${subjects} → ${b.roleRef.kind} ${b.roleRef.name}  (RoleBinding ${ns}/${b.metadata?.name})`);
    }
    const sas = await core.listNamespacedServiceAccount({ namespace: ns, labelSelector: managed });
    for (const sa of sas.items) {
      const arn = sa.metadata?.annotations?.[ROLE_ARN_ANNOTATION];
      row('service account', `${ns}/${sa.metadata?.name}  ${ROLE_ARN_ANNOTATION}=${arn ?? '(none)'}`);
    }
    const contexts = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: managed });
    for (const c of contexts.items) {
      const d = c.data ?? {};
      const endpoint = d.FLYTE_PLATFORM_URL ?? '(unset)';
      row(
        'user context',
        `${ns}/${c.metadata?.name}  project=${d.FLYTE_DEFAULT_PROJECT} domain=${d.FLYTE_DEFAULT_DOMAIN} endpoint=${endpoint}`,
      );
    }
  }
  if (status.roleArn) {
    const iam = new IAMClient({
      region: FAKE_AWS_ENV.AWS_REGION,
      endpoint: env.moto.endpoint,
      credentials: { accessKeyId: FAKE_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: FAKE_AWS_ENV.AWS_SECRET_ACCESS_KEY },
      maxAttempts: 2,
    });
    try {
      const roleName = status.roleArn.split('/').pop() ?? '';
      const role = (await iam.send(new GetRoleCommand({ RoleName: roleName }))).Role;
      const policies = (await iam.send(new ListRolePoliciesCommand({ RoleName: roleName }))).PolicyNames ?? [];
      row('IAM role (moto)', `${role?.Arn}  inline policies: ${policies.join(', ') || '(none)'}`);
    } catch (e) {
      row('IAM role (moto)', `${status.roleArn}: not found in moto (${(e as Error).message})`);
    } finally {
      iam.destroy();
    }
  } else {
    row('IAM role (moto)', '(none: IAM step off or workspace without flyte)');
  }
  const project = status.flyteProject ? env.flyte.project(status.flyteProject) : undefined;
  if (project) {
    const attrs = env.flyte
      .inspect()
      .attributes.filter((a) => a.project === project.id)
      .map((a) => `${a.domain || '(project)'}/${MatchableResource[a.resourceType]}`)
      .sort();
    row(
      'Flyte project',
      `${project.id} "${project.name}" ${Project_ProjectState[project.state]} (FlyteAdmin double ${env.flyte.url})`,
    );
    row('Flyte attributes', attrs.join(', ') || '(none)');
  } else {
    row('Flyte project', status.flyteProject ? `${status.flyteProject}: not found in the double` : '(none)');
  }
  row('console URL', status.consoleUrl ?? '(none)');
}

function printEndpoints(env: Env): void {
  const row = (k: string, v: string) => out(`  ${`${k}:`.padEnd(18)} ${v}`);
  out();
  out('Controller (node dist/cli.js run, as ServiceAccount flyte-workspace-controller/flyte-workspace-controller)');
  row('metrics', `http://127.0.0.1:${env.metricsPort}/metrics`);
  row('health', `http://127.0.0.1:${env.healthPort}/healthz  http://127.0.0.1:${env.healthPort}/readyz?verbose`);
  row('log', rel(env.logPath));
  row('config', rel(env.configPath));
  row('kubeconfig', `${rel(env.kubeconfigs.admin)} (admin), ${rel(env.kubeconfigs.controller)} (controller identity)`);
  row('control plane', `${env.cp.server}  (component logs in ${env.cp.dir})`);
  row('IAM emulator', env.moto.endpoint);
  row('FlyteAdmin', `${env.flyte.url} (double)`);
}

function planCommand(env: Env, file: string, ws: ExampleWorkspace): string {
  const aws = `AWS_ACCESS_KEY_ID=${FAKE_AWS_ENV.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${FAKE_AWS_ENV.AWS_SECRET_ACCESS_KEY}`;
  return `${aws} node ${rel(join(ROOT, 'dist/cli.js'))} plan -f ${rel(file)} --source ${ws.namespace}/${ws.name} --config ${rel(env.configPath)} --kubeconfig ${rel(env.kubeconfigs.controller)}`;
}

/** Runs the printed plan command once, so the summary shows that it works (and that nothing is pending). */
async function runPlan(env: Env, file: string, ws: ExampleWorkspace): Promise<void> {
  // Not spawnSync: the FlyteAdmin double runs in this process and must keep answering.
  const args = [
    join(ROOT, 'dist/cli.js'),
    'plan',
    '-f',
    file,
    '--source',
    `${ws.namespace}/${ws.name}`,
    '--config',
    env.configPath,
    '--kubeconfig',
    env.kubeconfigs.controller,
  ];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...FAKE_AWS_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    text += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    text += c;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  for (const line of text.trimEnd().split('\n')) out(`    ${line}`);
  if (code !== 0) out(`    (plan exited ${code ?? signal})`);
}

function printTryAChange(env: Env, workspaces: ExampleWorkspace[], once: boolean, controllerPid?: number): void {
  out();
  out('Try a change (no kubectl needed: the controller CLI and the files below do it):');
  for (const ws of workspaces) {
    const file = env.workspaceFiles.get(`${ws.namespace}/${ws.name}`);
    if (!file) continue;
    const copy = file.replace(/\.json$/, '.edited.json');
    out(`  preview: edit ${rel(copy)} (add a user; set "tier" to ${env.tiers.join(', ')}), then`);
    out(`    ${planCommand(env, copy, ws)}`);
    out(
      once
        ? `  apply:   run without --once, then save an edit into ${rel(file)}: it is applied to ${ws.namespace}/${ws.name}`
        : `  apply:   save an edit into ${rel(file)}: it is applied to ${ws.namespace}/${ws.name} and the new status printed`,
    );
  }
  const cli = `node ${rel(join(ROOT, 'dist/cli.js'))}`;
  out(`  status:  ${cli} status --kubeconfig ${rel(env.kubeconfigs.admin)}   (-w to follow, --not-ready, -o wide)`);
  out(`  rerun:   ${cli} rerun ${workspaces.map((w) => w.name).join(' ')} --kubeconfig ${rel(env.kubeconfigs.admin)}`);
  out(
    `  kubectl: if you have it: KUBECONFIG=${rel(env.kubeconfigs.admin)} kubectl -n workspace-platform get cm -o yaml`,
  );
  if (!once) out(`  resync:  kill -HUP ${controllerPid ?? '<controller pid>'} re-reconciles every workspace`);
}

// ---------------------------------------------------------------------------------------------------------
// Live edits of .local/workspaces/*.json

function watchWorkspaceFiles(env: Env, workspaces: ExampleWorkspace[]): () => void {
  const core = env.admin.makeApiClient(CoreV1Api);
  const unwatch: (() => void)[] = [];
  for (const ws of workspaces) {
    const file = env.workspaceFiles.get(`${ws.namespace}/${ws.name}`);
    if (!file) continue;
    let busy = Promise.resolve();
    const onChange = () => {
      busy = busy
        .then(() => applyEdit(env, core, ws, file))
        .catch((e) => {
          progress(`edit of ${rel(file)}: ${describeError(e)}`);
        });
    };
    watchFile(file, { interval: 500 }, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs) onChange();
    });
    unwatch.push(() => unwatchFile(file));
  }
  return () => {
    for (const u of unwatch) u();
  };
}

async function applyEdit(env: Env, core: CoreV1Api, ws: ExampleWorkspace, file: string): Promise<void> {
  const text = readFileSync(file, 'utf8');
  const before = await readStatus(core, ws);
  progress(`${rel(file)} changed: applying it to ConfigMap ${ws.namespace}/${ws.name}`);
  await apply(
    env.admin,
    [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: ws.name, namespace: ws.namespace, labels: { ...WORKSPACE_LABEL } },
        data: { 'workspace.json': text },
      } as KubernetesObject,
    ],
    rel(file),
  );
  const deadline = Date.now() + 60_000;
  let shown = '';
  while (Date.now() < deadline) {
    const now = await readStatus(core, ws);
    const s = now.status;
    const line = s ? `${s.phase}${s.lastError ? `: ${s.lastError}` : ''}` : '(no status)';
    if (line !== shown) {
      progress(`${ws.namespace}/${ws.name}: ${line}`);
      shown = line;
    }
    const settled = s && s.phase !== 'Provisioning' && s.phase !== 'Deleting';
    if (settled && (now.raw !== before.raw || Date.now() > deadline - 55_000)) {
      if (s.phase === 'Ready') await summary(env, ws, s);
      if (s.phase === 'Invalid') for (const f of s.invalidFields ?? []) progress(`  invalid ${f.field}: ${f.message}`);
      return;
    }
    await sleep(500);
  }
}

// Two extra tiers, so that "change the tier" can be tried on the example.
const EXTRA_TIERS = {
  small: {
    'requests.cpu': '4',
    'requests.memory': '8Gi',
    'limits.cpu': '8',
    'limits.memory': '16Gi',
    pods: '20',
    persistentvolumeclaims: '5',
  },
  large: {
    'requests.cpu': '64',
    'requests.memory': '256Gi',
    'limits.cpu': '128',
    'limits.memory': '512Gi',
    pods: '500',
    persistentvolumeclaims: '100',
  },
};

/**
 * The configuration the deployment ships (config.json in manifests/config.yaml; the built-in defaults
 * when that file is absent), with the local endpoints, ports and extra tiers on top. Validated here, so
 * a bad setting fails before anything starts.
 */
function localConfig(local: Record<string, unknown>): Record<string, unknown> {
  let shipped: Record<string, unknown> = {};
  const file = join(ROOT, CONFIG_MANIFEST);
  if (existsSync(file)) {
    const cm = docsOf(file).find((d) => d.kind === 'ConfigMap') as { data?: Record<string, string> } | undefined;
    const raw = cm?.data?.['config.json'];
    if (raw) shipped = JSON.parse(raw) as Record<string, unknown>;
  }
  const merged = mergeConfig(mergeConfig(mergeConfig(defaultConfig(), { tiers: EXTRA_TIERS }), shipped), local);
  validateConfig(merged);
  return merged as unknown as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const cleanups: { name: string; fn: () => Promise<void> | void }[] = [];
  let controller: ControllerProcess | undefined;
  let shuttingDown: Promise<number> | undefined;
  let firstSignalAt = 0;

  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c.fn();
      } catch (e) {
        progress(`cleanup: ${c.name}: ${describeError(e)}`);
      }
    }
  };
  const shutdown = (code: number, why: string): Promise<number> => {
    shuttingDown ??= (async () => {
      progress(`${why}: stopping everything (Ctrl-C again to force)`);
      await cleanup();
      progress(`stopped after ${elapsed()}`);
      return code;
    })();
    return shuttingDown;
  };
  const onSignal = (sig: NodeJS.Signals) => {
    const now = Date.now();
    if (!firstSignalAt) {
      firstSignalAt = now;
      void shutdown(0, sig).then((code) => process.exit(code));
      return;
    }
    if (now - firstSignalAt < SIGNAL_DEBOUNCE_MS) return; // the same Ctrl-C, forwarded by npm/tsx
    progress(`${sig} again: forcing exit`);
    controller?.signal('SIGKILL');
    // The control plane's and moto's exit handlers kill their processes and remove their temp dirs.
    process.exit(130);
  };
  const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of SIGNALS) process.on(s, onSignal);
  // Only listeners added later (by startControlPlane) are removed: others, like the one tsx uses to relay
  // signals, must stay, or tsx decides its child ignores the signal and SIGKILLs it.
  const ownSignalHandlersOnly = (before: Map<string, Set<unknown>>) => {
    for (const s of SIGNALS) {
      for (const l of process.listeners(s)) {
        if (!before.get(s)?.has(l)) process.removeListener(s, l as (...args: unknown[]) => void);
      }
    }
  };
  const listenersNow = () => new Map(SIGNALS.map((s) => [s as string, new Set<unknown>(process.listeners(s))]));

  try {
    mkdirSync(opts.dir, { recursive: true });
    const example = loadExample();
    if (example.fallback) {
      progress(`${EXAMPLE} does not exist: using a built-in example (ConfigMap workspace-platform/ml-research)`);
    }

    const binDir = await step('control-plane binaries (scripts/build-control-plane.sh)', controlPlaneBinaries);
    const before = listenersNow();
    const cp = await step('starting etcd, kube-apiserver, kube-controller-manager', () =>
      startControlPlane({ binDir, log: (m) => progress(`  ${m}`) }),
    );
    // startControlPlane installs handlers that SIGKILL the control plane on the first signal; ours stop
    // the controller first and then the control plane, in order (its exit handler stays as a backstop).
    ownSignalHandlersOnly(before);
    cleanups.push({ name: 'control plane', fn: () => cp.stop() });

    const kubeconfigs = {
      admin: join(opts.dir, 'admin.kubeconfig'),
      controller: join(opts.dir, 'controller.kubeconfig'),
    };
    copyFileSync(cp.kubeconfigPath('admin'), kubeconfigs.admin);
    copyFileSync(cp.kubeconfigPath('controller'), kubeconfigs.controller);
    cleanups.push({
      name: 'kubeconfigs',
      fn: () => {
        rmSync(kubeconfigs.admin, { force: true });
        rmSync(kubeconfigs.controller, { force: true });
      },
    });
    const admin = new KubeConfig();
    admin.loadFromFile(kubeconfigs.admin);

    const sourceNamespaces = [...new Set(example.workspaces.map((w) => w.namespace))];
    await step(`namespaces and ${MANIFESTS.join(', ')} (as admin)`, async () => {
      const core = admin.makeApiClient(CoreV1Api);
      for (const name of new Set([...NAMESPACES, ...sourceNamespaces])) {
        try {
          await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
        } catch (e) {
          if (!(e instanceof ApiException && e.code === 409)) throw new Error(`namespace ${name}: ${describeError(e)}`);
        }
      }
      for (const m of MANIFESTS) await apply(admin, docsOf(join(ROOT, m)), m);
      // rbac.yaml binds the source role in workspace-platform only; bind it where the example lives too.
      for (const ns of sourceNamespaces.filter((n) => n !== 'workspace-platform')) {
        await apply(
          admin,
          [
            {
              apiVersion: 'rbac.authorization.k8s.io/v1',
              kind: 'RoleBinding',
              metadata: { name: 'flyte-workspace-controller-source', namespace: ns },
              roleRef: {
                apiGroup: 'rbac.authorization.k8s.io',
                kind: 'ClusterRole',
                name: 'flyte-workspace-controller-source',
              },
              subjects: [{ kind: 'ServiceAccount', name: CONTROLLER_SERVICE_ACCOUNT, namespace: CONTROLLER_NAMESPACE }],
            } as KubernetesObject,
          ],
          `source namespace ${ns}`,
        );
      }
    });

    const moto = await step('starting moto (IAM emulator)', () => startMoto());
    cleanups.push({ name: 'moto', fn: () => moto.stop() });
    const flyte = await step('starting the FlyteAdmin double', () => FlyteAdminDouble.start());
    cleanups.push({ name: 'FlyteAdmin double', fn: () => flyte.close() });

    const metricsPort = opts.metricsPort ?? (await freePort());
    let healthPort = opts.healthPort ?? (await freePort());
    while (healthPort === metricsPort) healthPort = await freePort();
    const configPath = join(opts.dir, 'config.json');
    const config = localConfig({
      sourceNamespaces,
      flyte: {
        enabled: true,
        endpoint: flyte.url,
        insecure: true,
        auth: { type: 'none' },
        // Users of the local run reach the same double (plaintext gRPC).
        userEndpoint: new URL(flyte.url).host,
        userInsecure: true,
      },
      aws: { enabled: true, endpoint: moto.endpoint, region: FAKE_AWS_ENV.AWS_REGION },
      server: { metricsPort, healthPort, bindAddress: '127.0.0.1' },
      leaderElection: { enabled: true },
      shutdownGraceSeconds: 10,
      logLevel: 'info',
    });
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
    const logPath = join(opts.dir, 'controller.log');

    const workspaceFiles = new Map<string, string>();
    mkdirSync(join(opts.dir, 'workspaces'), { recursive: true });
    for (const ws of example.workspaces) {
      const file = join(opts.dir, 'workspaces', `${ws.name}.json`);
      let pretty = ws.json;
      try {
        pretty = `${JSON.stringify(JSON.parse(ws.json), null, 2)}\n`;
      } catch {
        // keep it as written
      }
      writeFileSync(file, pretty);
      writeFileSync(file.replace(/\.json$/, '.edited.json'), pretty);
      workspaceFiles.set(`${ws.namespace}/${ws.name}`, file);
    }

    const env: Env = {
      opts,
      cp,
      moto,
      flyte,
      admin,
      configPath,
      kubeconfigs,
      logPath,
      metricsPort,
      healthPort,
      workspaceFiles,
      tiers: Object.keys((config as { tiers?: object }).tiers ?? {}),
    };

    const proc = await step('starting the controller (node dist/cli.js run)', async () => {
      const cli = join(ROOT, 'dist/cli.js');
      if (!existsSync(cli)) throw new Error(`${rel(cli)} is missing: run \`npm run build\` (scripts/local.sh does)`);
      // The log goes straight to a file a person follows; its own process group lets Ctrl-C reach only us,
      // and we stop the controller first, in order. The watchdog stops it if we are SIGKILLed.
      const p = ControllerProcess.spawn({
        name: 'local',
        config: configPath,
        kubeconfig: kubeconfigs.controller,
        logFile: logPath,
        captureLogs: false,
        detached: true,
        watchdog: true,
      });
      controller = p;
      cleanups.push({
        name: 'controller',
        fn: async () => {
          const running = p.alive;
          const exit = await p.stop(15_000);
          if (running && exit.signal === 'SIGKILL') progress('the controller did not stop within 15 s: killed it');
          else if (exit.code !== 0 && exit.signal !== 'SIGKILL') {
            progress(`the controller exited with code ${exit.code ?? exit.signal}; see ${rel(logPath)}`);
          }
        },
      });
      await waitHttp200(`http://127.0.0.1:${healthPort}/readyz`, 60_000, p, logPath);
      return p;
    });

    await step(`applying ${example.fallback ? 'the built-in example' : EXAMPLE} (as admin)`, () =>
      apply(admin, example.docs, EXAMPLE),
    );
    const core = admin.makeApiClient(CoreV1Api);
    const statuses: WorkspaceStatus[] = [];
    for (const ws of example.workspaces) {
      statuses.push(
        await step(`waiting for ${ws.namespace}/${ws.name} to be Ready`, () =>
          waitReady(core, ws, opts.readyTimeoutMs, proc, logPath),
        ),
      );
    }

    out();
    out(`==== flyte-workspace-controller running locally (ready in ${elapsed()}) ====`);
    for (const [i, ws] of example.workspaces.entries()) await summary(env, ws, statuses[i] as WorkspaceStatus);
    printEndpoints(env);
    out();
    const first = example.workspaces[0] as ExampleWorkspace;
    const firstFile = workspaceFiles.get(`${first.namespace}/${first.name}`) as string;
    out(`Plan of ${rel(firstFile)} against the live systems (nothing pending, nothing written):`);
    out(`  $ ${planCommand(env, firstFile, first)}`);
    await runPlan(env, firstFile, first);
    printTryAChange(env, example.workspaces, opts.once, proc.child.pid);
    out();

    if (opts.once) {
      out('--once: stopping now.');
      return await shutdown(0, '--once');
    }
    const stopWatching = watchWorkspaceFiles(env, example.workspaces);
    cleanups.push({ name: 'file watchers', fn: stopWatching });
    out(`Running. Ctrl-C stops everything and cleans up (a second Ctrl-C forces). Logs: ${rel(logPath)}`);
    // Keep running until a signal, or until the controller dies on its own.
    const exit = await proc.exited;
    if (shuttingDown) return await shuttingDown;
    progress(`the controller exited on its own (code ${exit.code}, signal ${exit.signal}); last lines of its log:`);
    process.stderr.write(`${tail(logPath)}\n`);
    return await shutdown(1, 'controller exited');
  } catch (e) {
    if (shuttingDown) return await shuttingDown;
    progress(`FAILED: ${(e as Error).message}`);
    return await shutdown(1, 'failure');
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
