import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { defaultConfig, MANAGED_BY_LABEL, WORKSPACE_ID_LABEL } from '../../src/config/config.js';
import {
  attributesDiff,
  attributesEqual,
  consoleUrl,
  desiredFlyteState,
  flyteStateHash,
  isValidLabelKey,
  isValidLabelValue,
  labelProblems,
  ownsProject,
  projectDiff,
  projectDisplayName,
  quotaTemplateKey,
  truncateUtf8,
} from '../../src/desired/flyte.js';
import { MatchableResource, MatchingAttributesSchema } from '../../src/gen/flyteidl/admin/matchable_resource_pb.js';
import { Project_ProjectState, ProjectSchema } from '../../src/gen/flyteidl/admin/project_pb.js';
import { workspaceNames } from '../../src/spec/names.js';
import { validateWorkspace, type WorkspaceSpec } from '../../src/spec/workspace.js';

const cfg = defaultConfig();
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function spec(overrides: Record<string, unknown> = {}): WorkspaceSpec {
  const r = validateWorkspace(
    {
      workspace_id: 'ws1',
      workspace_name: 'Research',
      users: [{ user_id: 'u1', email: 'a@example.com', role: 'owner' }],
      data_bucket: 'ws1-data',
      services: ['flyte'],
      ...overrides,
    },
    cfg,
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.spec;
}

const input = (s = spec(), domains = cfg.domains) => ({
  cfg,
  spec: s,
  names: workspaceNames(cfg, s.workspaceId),
  roleArn: 'arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-ws1-Role',
  domains,
});

describe('project name', () => {
  it('is "Flyte - <name>"', () => {
    expect(projectDisplayName('Research')).toBe('Flyte - Research');
  });

  it('is cut to 64 bytes, never splitting a UTF-8 character', () => {
    for (const ch of ['a', 'é', '日', '😀', 'e\u0301']) {
      for (let n = 1; n < 80; n++) {
        const name = projectDisplayName(ch.repeat(n));
        expect(bytes(name)).toBeLessThanOrEqual(64);
        expect(name).not.toContain('\uFFFD');
        expect(Buffer.from(name, 'utf8').toString('utf8')).toBe(name); // no lone surrogate
        expect(`Flyte - ${ch.repeat(n)}`.startsWith(name)).toBe(true);
      }
    }
    // 8-byte prefix + 18 × 3-byte chars = 62; a 19th would make 65.
    expect(projectDisplayName('日'.repeat(30))).toBe(`Flyte - ${'日'.repeat(18)}`);
    // 8 + 14 × 4 = 64 exactly.
    expect(projectDisplayName('😀'.repeat(20))).toBe(`Flyte - ${'😀'.repeat(14)}`);
  });

  it('truncateUtf8 keeps short strings and cuts on code points', () => {
    expect(truncateUtf8('abc', 3)).toBe('abc');
    expect(truncateUtf8('aé', 2)).toBe('a');
    expect(truncateUtf8('a😀', 4)).toBe('a');
    expect(truncateUtf8('a😀', 5)).toBe('a😀');
  });
});

describe('desired Flyte state', () => {
  it('is pure: same input, same output and hash; input untouched', () => {
    const i = input();
    const snapshot = JSON.stringify(i.spec);
    const a = desiredFlyteState(i);
    const b = desiredFlyteState(input());
    expect(flyteStateHash(a)).toBe(flyteStateHash(b));
    expect(JSON.stringify(i.spec)).toBe(snapshot);
    expect(a.project).toEqual(b.project);
  });

  it('project: id, ACTIVE, description ≤ 300 bytes, valid ownership labels', () => {
    const long = spec({ workspace_name: 'Ω'.repeat(250) });
    const { project } = desiredFlyteState(input(long));
    expect(project.id).toBe('ws1');
    expect(project.state).toBe(Project_ProjectState.ACTIVE);
    expect(bytes(project.description)).toBeLessThanOrEqual(300);
    expect(project.description).toContain('ws1');
    expect(bytes(project.name)).toBeLessThanOrEqual(64);
    expect(project.labels).toEqual({ [MANAGED_BY_LABEL]: 'flyte-workspace-controller', [WORKSPACE_ID_LABEL]: 'ws1' });
    expect(labelProblems(project.labels)).toEqual([]);
  });

  it('per domain: execution config and cluster resources', () => {
    const s = desiredFlyteState(input());
    expect(s.attributes.map((a) => [a.domain, a.resourceType])).toEqual(
      cfg.domains.flatMap((d) => [
        [d, MatchableResource.WORKFLOW_EXECUTION_CONFIG],
        [d, MatchableResource.CLUSTER_RESOURCE],
      ]),
    );
    const wec = s.attributes[0]?.attributes.target;
    expect(wec?.case).toBe('workflowExecutionConfig');
    if (wec?.case === 'workflowExecutionConfig') {
      expect(wec.value.securityContext?.runAs?.k8sServiceAccount).toBe('flyte-ws1-runner');
      expect(wec.value.rawOutputDataConfig?.outputLocationPrefix).toBe('s3://ws1-data/flyte/raw-data');
      expect(Object.fromEntries(wec.value.envs?.values.map((e) => [e.key, e.value]) ?? [])).toEqual({
        WORKSPACE_ID: 'ws1',
        WORKSPACE_DATA_BUCKET: 'ws1-data',
      });
    }
    const cr = s.attributes[1]?.attributes.target;
    expect(cr?.case === 'clusterResourceAttributes' && cr.value.attributes).toEqual({
      projectQuotaCpu: '40',
      projectQuotaMemory: '80Gi',
      quotaLimitsCpu: '40',
      quotaLimitsMemory: '80Gi',
      quotaRequestsCpu: '20',
      quotaRequestsMemory: '40Gi',
      quotaPods: '100',
      quotaPersistentvolumeclaims: '20',
      workspaceTier: 'default',
      defaultIamRole: 'arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-ws1-Role',
    });
  });

  it('the hash changes with anything Flyte sees and not with users', () => {
    const base = flyteStateHash(desiredFlyteState(input()));
    expect(flyteStateHash(desiredFlyteState(input(spec({ workspace_name: 'Other' }))))).not.toBe(base);
    expect(flyteStateHash(desiredFlyteState(input(spec(), ['development'])))).not.toBe(base);
    expect(flyteStateHash(desiredFlyteState({ ...input(), roleArn: 'arn:aws:iam::1:role/x' }))).not.toBe(base);
    const moreUsers = spec({
      users: [
        { user_id: 'u1', email: 'a@example.com', role: 'owner' },
        { user_id: 'u2', email: 'b@example.com', role: 'contributor' },
      ],
    });
    expect(flyteStateHash(desiredFlyteState(input(moreUsers)))).toBe(base);
  });

  it('quota template keys are camel case', () => {
    expect(quotaTemplateKey('limits.cpu')).toBe('quotaLimitsCpu');
    expect(quotaTemplateKey('requests.nvidia.com/gpu')).toBe('quotaRequestsNvidiaComGpu');
    expect(quotaTemplateKey('pods')).toBe('quotaPods');
  });

  it('console URL', () => {
    expect(consoleUrl({ ...cfg, flyte: { ...cfg.flyte, consoleBaseUrl: 'https://flyte.example/' } }, 'ws1')).toBe(
      'https://flyte.example/console/projects/ws1',
    );
  });
});

describe('comparison', () => {
  it('attributes: env order does not matter, values do', () => {
    const env = (pairs: [string, string][]) =>
      create(MatchingAttributesSchema, {
        target: {
          case: 'workflowExecutionConfig',
          value: { envs: { values: pairs.map(([key, value]) => ({ key, value })) } },
        },
      });
    expect(
      attributesEqual(
        env([
          ['A', '1'],
          ['B', '2'],
        ]),
        env([
          ['B', '2'],
          ['A', '1'],
        ]),
      ),
    ).toBe(true);
    expect(attributesEqual(env([['A', '1']]), env([['A', '2']]))).toBe(false);
    expect(attributesEqual(undefined, env([]))).toBe(false);
    expect(attributesDiff(env([['A', '1']]), env([['A', '2']]))).toEqual(['workflowExecutionConfig.envs']);
    const cr = (attributes: Record<string, string>) =>
      create(MatchingAttributesSchema, { target: { case: 'clusterResourceAttributes', value: { attributes } } });
    expect(attributesEqual(cr({ a: '1', b: '2' }), cr({ b: '2', a: '1' }))).toBe(true);
    expect(attributesEqual(cr({ a: '1' }), cr({ a: '1', b: '2' }))).toBe(false);
  });

  it('project diff and ownership', () => {
    const desired = desiredFlyteState(input()).project;
    const live = create(ProjectSchema, {
      id: 'ws1',
      name: desired.name,
      description: desired.description,
      labels: { values: { ...desired.labels } },
    });
    expect(projectDiff(live, desired)).toEqual([]);
    expect(ownsProject(live, cfg, 'ws1')).toBe(true);
    expect(ownsProject(live, cfg, 'ws2')).toBe(false);
    live.state = Project_ProjectState.ARCHIVED;
    live.labels = { $typeName: 'flyteidl.admin.Labels', values: { ...desired.labels, extra: 'x' } };
    expect(projectDiff(live, desired)).toEqual(['labels', 'state']);
    expect(ownsProject(create(ProjectSchema, { id: 'ws1', name: 'x' }), cfg, 'ws1')).toBe(false);
  });
});

describe('label validity (what FlyteAdmin enforces)', () => {
  it('keys: optional DNS subdomain prefix + qualified name', () => {
    for (const k of ['app', 'app.kubernetes.io/managed-by', 'workspaces.flyte.org/workspace-id', 'A_b.c-9']) {
      expect(isValidLabelKey(k), k).toBe(true);
    }
    for (const k of ['', '/x', 'a/b/c', 'Upper.io/x', '-x', 'x-', `${'a'.repeat(64)}`, 'a b']) {
      expect(isValidLabelKey(k), k).toBe(false);
    }
  });

  it('values: empty or ≤63 alphanumerics with -_. inside', () => {
    for (const v of ['', 'a', 'flyte-workspace-controller', 'A.b_c-1', 'x'.repeat(63)]) {
      expect(isValidLabelValue(v), v).toBe(true);
    }
    for (const v of ['#bar', '-a', 'a-', 'x'.repeat(64), 'é']) expect(isValidLabelValue(v), v).toBe(false);
  });

  it('at most 16 labels', () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    expect(labelProblems(many)).toEqual(['labels map cannot exceed 16 entries']);
  });
});
