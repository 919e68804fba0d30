// `flyte-workspace-controller plan` against a converged workspace whose spec changed (a user added, the
// tier changed): exactly the expected changes across Kubernetes, IAM and FlyteAdmin, and no writes
// anywhere — the plan's own count is 0, every object keeps its resourceVersion, FlyteAdmin saw no write
// and the IAM role is byte-for-byte the same.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  GetRoleCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListRolePoliciesCommand,
  ListRoleTagsCommand,
} from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, type ControllerProcess, FAKE_AWS_ENV } from '../../harness/controller-process.js';
import type { KindName } from '../../src/adapters/kubernetes.js';
import { roleBindingName } from '../../src/desired/kubernetes.js';
import { uniqueName } from '../support/kube.js';
import {
  type DaemonEnv,
  daemonEnv,
  idleScrape,
  putWorkspace,
  ROOT,
  startDaemon,
  waitReady,
  workspaceDoc,
  workspaceStatus,
} from './daemon-helpers.js';

const SMALL = {
  'requests.cpu': '4',
  'requests.memory': '8Gi',
  'limits.cpu': '8',
  'limits.memory': '16Gi',
  pods: '20',
  persistentvolumeclaims: '5',
};
const NAMESPACED_KINDS: KindName[] = ['ResourceQuota', 'NetworkPolicy', 'ServiceAccount', 'ConfigMap', 'RoleBinding'];

let env: DaemonEnv;
let daemon: ControllerProcess;
let id: string;
let namespace: string;
let roleName: string;
let iam: IAMClient;

beforeAll(async () => {
  env = await daemonEnv('opp', { tiers: { small: SMALL }, leaderElection: { enabled: false } });
  iam = new IAMClient({
    region: FAKE_AWS_ENV.AWS_REGION,
    endpoint: env.motoEndpoint,
    credentials: { accessKeyId: FAKE_AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: FAKE_AWS_ENV.AWS_SECRET_ACCESS_KEY },
  });
  daemon = await startDaemon(env, 'a');
  id = uniqueName('opp');
  await putWorkspace(env, id, workspaceDoc(id));
  await waitReady(env, [id], 60_000);
  const status = await workspaceStatus(env, id);
  namespace = status?.namespaces?.[0] as string;
  roleName = status?.roleArn?.split('/').pop() as string;
  expect(namespace).toBeTruthy();
  expect(roleName).toBeTruthy();
  // Converged and quiet, then stopped: from here on only the plan could write.
  await idleScrape(daemon);
  await daemon.stop();
  expect(daemon.exit?.code).toBe(0);
}, 120_000);

afterAll(async () => {
  iam?.destroy();
  await env?.cleanup();
});

async function runPlan(file: string, json: boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const args = [CLI, 'plan', '-f', file, '--source', `${env.sourceNamespace}/${id}`];
  args.push('--config', daemon.configPath, '--kubeconfig', env.kubeconfig);
  if (json) args.push('--json');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...FAKE_AWS_ENV, AWS_EC2_METADATA_DISABLED: 'true' };
  for (const k of Object.keys(childEnv)) if (k.startsWith('FWC_') || k === 'KUBECONFIG') delete childEnv[k];
  const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** resourceVersion of every object the workspace owns in Kubernetes, plus its ConfigMap. */
async function resourceVersions(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const cm = await env.admin.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: env.sourceNamespace, name: id });
  out[`ConfigMap ${env.sourceNamespace}/${id}`] = cm?.metadata.resourceVersion ?? '';
  const ns = await env.admin.get({ apiVersion: 'v1', kind: 'Namespace', name: namespace });
  out[`Namespace ${namespace}`] = ns?.metadata.resourceVersion ?? '';
  for (const kind of NAMESPACED_KINDS) {
    for (const o of await env.admin.list(kind, { namespace })) {
      out[`${kind} ${namespace}/${o.metadata.name}`] = o.metadata.resourceVersion ?? '';
    }
  }
  return out;
}

async function iamRole(): Promise<unknown> {
  const role = (await iam.send(new GetRoleCommand({ RoleName: roleName }))).Role;
  const names = (await iam.send(new ListRolePoliciesCommand({ RoleName: roleName }))).PolicyNames ?? [];
  const policies = await Promise.all(
    names.map(
      async (PolicyName) =>
        (await iam.send(new GetRolePolicyCommand({ RoleName: roleName, PolicyName }))).PolicyDocument,
    ),
  );
  const tags = (await iam.send(new ListRoleTagsCommand({ RoleName: roleName }))).Tags;
  return { role: { ...role, RoleLastUsed: undefined }, names, policies, tags };
}

describe('plan on a changed spec', () => {
  it('lists exactly the expected changes (a RoleBinding for the new user; the quota and the Flyte cluster-resource attributes for the tier) and writes nothing anywhere', async () => {
    const base = workspaceDoc(id);
    const newUser = { user_id: 'u3', email: `new-${id}@example.com`, role: 'contributor' };
    const changed = { ...base, tier: 'small', users: [...(base.users as object[]), newUser] };
    const file = join(env.dir, 'changed.json');
    writeFileSync(file, JSON.stringify(changed, null, 2));

    const rvBefore = await resourceVersions();
    const flyteBefore = env.flyte.calls();
    const iamBefore = await iamRole();

    const json = await runPlan(file, true);
    expect(json.code, json.stderr).toBe(0);
    const plan = JSON.parse(json.stdout) as {
      workspace: string;
      writes: number;
      changes: { system: string; action: string; target: string; detail?: string }[];
      outcomes: Record<string, { state: string }>;
    };
    expect(plan.workspace).toBe(id);
    expect(plan.writes).toBe(0);

    const domains = ['development', 'production', 'staging'];
    const got = plan.changes.map((c) => `${c.system} ${c.action} ${c.target}`).sort();
    const expected = [
      `kubernetes create RoleBinding ${namespace}/${roleBindingName('contributor', newUser.email)}`,
      `kubernetes update ResourceQuota ${namespace}/${id}-quota`,
      ...domains.map((d) => `flyte update Flyte CLUSTER_RESOURCE ${id}/${d}`),
    ].sort();
    expect(got).toEqual(expected);
    const quota = plan.changes.find((c) => c.target.startsWith('ResourceQuota'));
    expect(quota?.detail ?? '').toMatch(/limits\.cpu|requests\.cpu|hard/);

    const text = await runPlan(file, false);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^ {2}iam: no changes$/m);
    expect(text.stdout).toMatch(/1 to create, 4 to change, 0 to delete\. Writes made: 0\.$/m);

    // Nothing was written: same resourceVersions, no FlyteAdmin write, the same IAM role.
    expect(await resourceVersions()).toEqual(rvBefore);
    const flyteAfter = env.flyte.calls();
    expect(flyteAfter.writes).toBe(flyteBefore.writes);
    expect(flyteAfter.appliedWrites).toBe(flyteBefore.appliedWrites);
    expect(flyteAfter.reads).toBeGreaterThan(flyteBefore.reads);
    expect(await iamRole()).toEqual(iamBefore);
    // And the live state is still the old spec.
    const q = (await env.admin.list('ResourceQuota', { namespace }))[0] as { spec?: { hard?: Record<string, string> } };
    expect(q.spec?.hard?.['limits.cpu']).toBe('40');
  });
});
