// `npm run local -- --once` as a person would run it: `bash scripts/local.sh --once` as a child process.
// It builds dist/ (a no-op after npm test's build), starts its own control plane, moto and FlyteAdmin
// double on random ports, runs the controller as `node dist/cli.js run`, applies
// manifests/example-workspace.yaml and prints a summary; the test checks the summary against the example
// and that everything stopped cleanly.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ControllerConfig, defaultConfig, mergeConfig } from '../../src/config/config.js';
import { roleBindingName } from '../../src/desired/kubernetes.js';
import { ROOT } from './daemon-helpers.js';

const requireFromClientNode = createRequire(createRequire(import.meta.url).resolve('@kubernetes/client-node'));
const { loadAll } = requireFromClientNode('js-yaml') as { loadAll(text: string): unknown[] };

interface Example {
  namespace: string;
  name: string;
  spec: { workspace_id: string; users: { email: string; role: string }[]; tier?: string };
}

function example(): Example {
  const docs = loadAll(readFileSync(join(ROOT, 'manifests/example-workspace.yaml'), 'utf8')) as {
    kind?: string;
    metadata?: { name: string; namespace?: string; labels?: Record<string, string> };
    data?: Record<string, string>;
  }[];
  const cm = docs.find((d) => d?.kind === 'ConfigMap' && d.metadata?.labels?.app === 'workspace-config');
  if (!cm?.metadata || !cm.data?.['workspace.json'])
    throw new Error('example-workspace.yaml has no workspace ConfigMap');
  return {
    namespace: cm.metadata.namespace ?? 'workspace-platform',
    name: cm.metadata.name,
    spec: JSON.parse(cm.data['workspace.json']),
  };
}

/** What the local run configures: the shipped config (manifests/config.yaml) over the defaults. */
function shippedConfig(): ControllerConfig {
  const file = join(ROOT, 'manifests/config.yaml');
  if (!existsSync(file)) return defaultConfig();
  const docs = loadAll(readFileSync(file, 'utf8')) as { kind?: string; data?: Record<string, string> }[];
  const raw = docs.find((d) => d?.kind === 'ConfigMap')?.data?.['config.json'];
  return raw ? mergeConfig(defaultConfig(), JSON.parse(raw)) : defaultConfig();
}

const dir = mkdtempSync(join(tmpdir(), 'fwc-local-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run local -- --once', () => {
  it('starts everything, provisions the example workspace, prints a summary that matches it, and stops cleanly with exit 0', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, LOCAL_RUN_DIR: dir };
    for (const k of Object.keys(env)) if (k.startsWith('VITEST') || k.startsWith('FWC_')) delete env[k];
    // Its own process group, so a timeout can stop npx, tsx, the runner and the controller together.
    const child = spawn('bash', ['scripts/local.sh', '--once'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {
          // gone
        }
      }, 150_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    const took = Date.now() - started;
    const output = `exit ${code} after ${took} ms\n--- stdout\n${stdout}\n--- stderr\n${stderr.slice(-6000)}`;
    expect(code, output).toBe(0);

    const ex = example();
    const id = ex.spec.workspace_id;
    const cfg = shippedConfig();
    const tier = cfg.tiers[ex.spec.tier ?? cfg.defaultTier] ?? {};
    const ns = `flyte-${id}`;
    const roleArn = `arn:aws:iam::${cfg.aws.accountId}:role${cfg.aws.rolePath}FlyteWorkspace-${id}-Role`;
    const line = (label: string) => {
      const found = stdout.split('\n').find((l) => l.trimStart().startsWith(`${label}:`));
      expect(found, `a "${label}:" line\n${output}`).toBeDefined();
      return (found as string).trim();
    };

    expect(stdout).toContain(`Workspace ${id}  (ConfigMap ${ex.namespace}/${ex.name})`);
    expect(line('status phase')).toMatch(/: +Ready$/);
    expect(line('namespace(s)')).toMatch(new RegExp(`: +${ns}$`));
    const quota = line('quota');
    expect(quota).toContain(`${ns}/${id}-quota:`);
    for (const [k, v] of Object.entries(tier)) expect(quota).toContain(`${k}=${v}`);
    const rbac = stdout.split('\n').filter((l) => l.trimStart().startsWith('rbac:'));
    expect(rbac.length).toBe(ex.spec.users.length);
    for (const u of ex.spec.users) {
      const role = u.role === 'owner' ? cfg.names.ownerClusterRole : cfg.names.contributorClusterRole;
      expect(rbac.join('\n')).toContain(
        `User ${u.email} → ClusterRole ${role}  (RoleBinding ${ns}/${roleBindingName(u.role, u.email)})`,
      );
    }
    expect(line('service account')).toContain(`${ns}/flyte-${id}-runner  eks.amazonaws.com/role-arn=${roleArn}`);
    expect(line('user context')).toMatch(
      new RegExp(
        `: +${ns}/${cfg.names.contextConfigMap}  project=${id} domain=${cfg.domains[0]} endpoint=127\\.0\\.0\\.1:\\d+$`,
      ),
    );
    expect(line('IAM role (moto)')).toContain(`${roleArn}  inline policies: workspace-data`);
    expect(line('Flyte project')).toMatch(new RegExp(`: +${id} ".*" ACTIVE`));
    for (const d of cfg.domains) expect(line('Flyte attributes')).toContain(`${d}/CLUSTER_RESOURCE`);
    expect(line('console URL')).toMatch(new RegExp(`https?://\\S+/console/projects/${id}$`));
    expect(line('metrics')).toMatch(/http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(line('health')).toMatch(/http:\/\/127\.0\.0\.1:\d+\/healthz/);
    expect(line('log')).toContain(join(dir, 'controller.log'));
    expect(line('kubeconfig')).toContain('controller identity');
    // The plan command it prints, run once: converged, nothing written.
    expect(stdout).toMatch(/\$ .*node dist\/cli\.js plan -f \S+ --source \S+ --config \S+ --kubeconfig \S+/);
    expect(stdout).toMatch(/0 to create, 0 to change, 0 to delete\. Writes made: 0\./);
    expect(stdout).toContain('Try a change');
    // Progress for the long steps went to stderr, and it stopped in order.
    expect(stderr).toMatch(/control-plane binaries .*: done in/);
    expect(stderr).toMatch(/kube-apiserver ready at https:\/\/127\.0\.0\.1:\d+/);
    expect(stderr).toMatch(/stopped after/);

    // Cleaned up: kubeconfigs removed, the controller log kept and showing a clean, released shutdown.
    expect(existsSync(join(dir, 'admin.kubeconfig'))).toBe(false);
    expect(existsSync(join(dir, 'controller.kubeconfig'))).toBe(false);
    const log = readFileSync(join(dir, 'controller.log'), 'utf8');
    expect(log).toContain('became leader');
    expect(log).toContain('released lease');
    expect(log).not.toMatch(/shutdown hook (timed out|failed)/);
    const metricsPort = /127\.0\.0\.1:(\d+)\/metrics/.exec(line('metrics'))?.[1];
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
    const cpDir = /component logs in (\S+)\)/.exec(stdout)?.[1];
    expect(cpDir && existsSync(cpDir), `control-plane dir ${cpDir} removed`).toBe(false);
  }, 180_000);
});
