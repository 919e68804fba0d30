import { loadYaml } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { defaultConfig, mergeConfig } from '../../src/config/config.js';
import { desiredKubernetesObjects, roleBindingName } from '../../src/desired/kubernetes.js';
import { containsDesired, diffPaths } from '../../src/reconcile/diff.js';
import { workspaceNames } from '../../src/spec/names.js';
import { validateWorkspace, type WorkspaceSpec } from '../../src/spec/workspace.js';

const doc = {
  workspace_id: 'ml-research',
  workspace_name: 'ML Research',
  users: [
    { user_id: 'u1', email: 'alice@example.com', role: 'owner' },
    { user_id: 'u2', email: 'bob@example.com', role: 'contributor' },
  ],
  data_bucket: 'ml-research-data',
  services: ['flyte'],
};

function specFor(cfg = defaultConfig(), d: unknown = doc): WorkspaceSpec {
  const r = validateWorkspace(d, cfg);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

function objectsFor(cfg: ReturnType<typeof defaultConfig>) {
  const spec = specFor(cfg);
  return desiredKubernetesObjects({
    cfg,
    spec,
    names: workspaceNames(cfg, spec.workspaceId),
    source: 's/x',
    roleArn: 'arn',
  });
}

describe('desired Kubernetes objects', () => {
  it('follows the design in single-namespace mode', () => {
    const cfg = defaultConfig();
    const spec = specFor(cfg);
    const objs = desiredKubernetesObjects({
      cfg,
      spec,
      names: workspaceNames(cfg, spec.workspaceId),
      source: 'workspace-platform/ml',
      roleArn: 'arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-ml-research-Role',
    });
    expect(objs.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`)).toEqual([
      'Namespace//flyte-ml-research',
      'ResourceQuota/flyte-ml-research/ml-research-quota',
      'NetworkPolicy/flyte-ml-research/ml-research-isolation',
      'ServiceAccount/flyte-ml-research/flyte-ml-research-runner',
      'ConfigMap/flyte-ml-research/flyte-workspace-context',
      `RoleBinding/flyte-ml-research/${roleBindingName('owner', 'alice@example.com')}`,
      `RoleBinding/flyte-ml-research/${roleBindingName('contributor', 'bob@example.com')}`,
    ]);
    const ns = objs[0]!;
    expect(ns.metadata.labels).toMatchObject({
      'workspace-id': 'ml-research',
      'flyte.org/tenant': 'ml-research',
      'app.kubernetes.io/managed-by': 'flyte-workspace-controller',
      'workspaces.flyte.org/workspace-id': 'ml-research',
    });
    expect((objs[1]!.spec as { hard: Record<string, string> }).hard).toEqual({
      'requests.cpu': '20',
      'requests.memory': '40Gi',
      'limits.cpu': '40',
      'limits.memory': '80Gi',
      pods: '100',
      persistentvolumeclaims: '20',
    });
    expect(objs[3]!.metadata.annotations).toEqual({
      'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-ml-research-Role',
    });
    expect(objs[5]).toMatchObject({
      roleRef: { kind: 'ClusterRole', name: 'flyte-workspace-owner' },
      subjects: [{ kind: 'User', name: 'alice@example.com' }],
    });
  });

  it('binds contributors only in contributor domains when namespaces are per domain', () => {
    const cfg = mergeConfig(defaultConfig(), { names: { namespacePerDomain: true } });
    const objs = objectsFor(cfg);
    const bindings = objs
      .filter((o) => o.kind === 'RoleBinding')
      .map((o) => `${o.metadata.namespace}:${o.metadata.labels?.['workspaces.flyte.org/role']}`);
    expect(bindings.sort()).toEqual([
      'ml-research-development:contributor',
      'ml-research-development:owner',
      'ml-research-production:owner',
      'ml-research-staging:contributor',
      'ml-research-staging:owner',
    ]);
  });

  it('a context ConfigMap per namespace in the formats flytectl and pyflyte read, defaulting to its domain', () => {
    const cfg = mergeConfig(defaultConfig(), {
      names: { namespacePerDomain: true },
      flyte: { userEndpoint: 'flyte.example.com:443', consoleBaseUrl: 'https://flyte.example.com/' },
    });
    const objs = objectsFor(cfg);
    const contexts = objs.filter((o) => o.kind === 'ConfigMap');
    expect(contexts.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      'ml-research-development/flyte-workspace-context',
      'ml-research-staging/flyte-workspace-context',
      'ml-research-production/flyte-workspace-context',
    ]);
    for (const cm of contexts) {
      const domain = (cm.metadata.namespace as string).slice('ml-research-'.length);
      expect(cm.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'flyte-workspace-controller',
        'app.kubernetes.io/name': 'flyte-workspace',
        'app.kubernetes.io/component': 'workspace-context',
        'workspaces.flyte.org/workspace-id': 'ml-research',
      });
      const data = cm.data as Record<string, string>;
      const { 'config.yaml': file, ...env } = data;
      expect(env).toEqual({
        FLYTE_PLATFORM_URL: 'flyte.example.com:443',
        FLYTE_PLATFORM_INSECURE: 'false',
        FLYTE_PLATFORM_CONSOLE_ENDPOINT: 'https://flyte.example.com',
        FLYTE_DEFAULT_PROJECT: 'ml-research',
        FLYTE_DEFAULT_DOMAIN: domain,
        WORKSPACE_ID: 'ml-research',
        WORKSPACE_DATA_BUCKET: 'ml-research-data',
      });
      // flytectl's admin/console/task sections; flytekit strips the dns:/// prefix it does not use.
      expect(loadYaml(file as string)).toEqual({
        admin: { endpoint: 'dns:///flyte.example.com:443', insecure: false },
        console: { endpoint: 'https://flyte.example.com' },
        task: { project: 'ml-research', domain },
      });
    }
  });

  it('without flyte.userEndpoint the context has project, domain and workspace variables but no endpoint', () => {
    const cfg = mergeConfig(defaultConfig(), { domains: ['dev', 'prod'], rbac: { contributorDomains: ['dev'] } });
    const objs = objectsFor(cfg);
    const [cm, ...more] = objs.filter((o) => o.kind === 'ConfigMap');
    expect(more).toEqual([]);
    const { 'config.yaml': file, ...env } = (cm?.data ?? {}) as Record<string, string>;
    expect(env).toEqual({
      FLYTE_DEFAULT_PROJECT: 'ml-research',
      FLYTE_DEFAULT_DOMAIN: 'dev',
      WORKSPACE_ID: 'ml-research',
      WORKSPACE_DATA_BUCKET: 'ml-research-data',
    });
    expect(loadYaml(file as string)).toEqual({ task: { project: 'ml-research', domain: 'dev' } });
  });

  it('a role change renames the binding (roleRef is immutable)', () => {
    expect(roleBindingName('owner', 'a@x.io')).not.toBe(roleBindingName('contributor', 'a@x.io'));
    expect(roleBindingName('owner', 'A@x.io')).toBe(roleBindingName('owner', 'a@x.io'));
  });
});

describe('semantic diff', () => {
  it('ignores server-added fields but not changed or removed ones', () => {
    const desired = { spec: { ports: [{ port: 443, protocol: 'TCP' }] }, metadata: { labels: { a: '1' } } };
    const live = {
      spec: { ports: [{ port: 443, protocol: 'TCP', endPort: undefined }] },
      metadata: { labels: { a: '1', extra: 'x' }, uid: 'u' },
      status: {},
    };
    expect(containsDesired(live, desired)).toBe(true);
    expect(containsDesired({ ...live, spec: { ports: [] } }, desired)).toBe(false);
    expect(diffPaths({ ...live, metadata: { labels: { a: '2' } } }, desired)).toEqual(['metadata.labels.a']);
    expect(containsDesired({ metadata: {} }, { metadata: { annotations: {} } })).toBe(true);
  });
});

describe('quantities', () => {
  it('compare by value, as the API server canonicalizes them', async () => {
    const { sameQuantity, parseQuantity } = await import('../../src/desired/quantity.js');
    expect(sameQuantity('0.5', '500m')).toBe(true);
    expect(sameQuantity('1024Mi', '1Gi')).toBe(true);
    expect(sameQuantity('1G', '1Gi')).toBe(false);
    expect(sameQuantity('40', '40')).toBe(true);
    expect(sameQuantity('40', '41')).toBe(false);
    expect(parseQuantity('2e3')).toBe(2000);
    expect(parseQuantity('abc')).toBeUndefined();
  });
});
