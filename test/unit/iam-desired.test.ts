import { describe, expect, it } from 'vitest';
import { type ControllerConfig, defaultConfig, mergeConfig, validateConfig } from '../../src/config/config.js';
import {
  desiredIamRole,
  desiredRoleHash,
  IrsaTrustStrategy,
  oidcIssuer,
  PodIdentityTrustStrategy,
  roleOwnership,
  trustStrategyFor,
  WORKSPACE_DATA_POLICY,
  workspaceDataPolicy,
} from '../../src/desired/iam.js';
import { type PolicyStatement, policiesEqual } from '../../src/desired/iam-policy.js';
import {
  IAM_DRIFT_CHECK_BUDGET_SHARE,
  IAM_READS_PER_DRIFT_CHECK,
  iamDriftCheckIntervalMs,
} from '../../src/reconcile/steps/iam.js';
import { workspaceNames } from '../../src/spec/names.js';

const ISSUER = 'oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE';

function cfgWith(override: Record<string, unknown> = {}): ControllerConfig {
  const cfg = mergeConfig(defaultConfig(), override);
  validateConfig(cfg);
  return cfg;
}

const spec = { workspaceId: 'ws1', dataBucket: 'ws1-data' };

describe('desiredIamRole', () => {
  it('names, path, ARN, description, tags, session and no boundary by default', () => {
    const cfg = cfgWith();
    const role = desiredIamRole(cfg, spec, workspaceNames(cfg, 'ws1'));
    expect(role.name).toBe('FlyteWorkspace-ws1-Role');
    expect(role.path).toBe('/flyte-workspaces/');
    expect(role.arn).toBe('arn:aws:iam::123456789012:role/flyte-workspaces/FlyteWorkspace-ws1-Role');
    expect(role.description).toMatch(/ws1/);
    expect(role.description).toMatch(/^[\x20-\x7e]+$/);
    expect(role.maxSessionDuration).toBe(3600);
    expect(role.tags).toEqual({
      'managed-by': 'flyte-workspace-controller',
      'workspace-id': 'ws1',
      'data-bucket': 'ws1-data',
    });
    expect(role.permissionsBoundaryArn).toBeUndefined();
    expect(Object.keys(role.inlinePolicies)).toEqual([WORKSPACE_DATA_POLICY]);
  });

  it('uses the name template, partition, account, path, boundary and session from config', () => {
    const cfg = cfgWith({
      names: { iamRole: 'wsp-{{ workspace_id }}' },
      aws: {
        partition: 'aws-cn',
        accountId: '210987654321',
        rolePath: '/team/flyte/',
        permissionsBoundaryArn: 'arn:aws-cn:iam::210987654321:policy/boundary',
        maxSessionDurationSeconds: 7200,
        oidcProviderArn: `arn:aws-cn:iam::210987654321:oidc-provider/${ISSUER}`,
      },
      fieldManager: 'my-controller',
    });
    const role = desiredIamRole(cfg, spec, workspaceNames(cfg, 'ws1'));
    expect(role.name).toBe('wsp-ws1');
    expect(role.arn).toBe('arn:aws-cn:iam::210987654321:role/team/flyte/wsp-ws1');
    expect(role.permissionsBoundaryArn).toBe('arn:aws-cn:iam::210987654321:policy/boundary');
    expect(role.maxSessionDuration).toBe(7200);
    expect(role.tags['managed-by']).toBe('my-controller');
    expect(JSON.stringify(role.inlinePolicies[WORKSPACE_DATA_POLICY])).toContain('arn:aws-cn:s3:::ws1-data');
  });

  it('the inline policy grants exactly object read/write/delete and list, on the workspace bucket only', () => {
    expect(workspaceDataPolicy('ws1-data')).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'WorkspaceDataObjects',
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
          Resource: 'arn:aws:s3:::ws1-data/*',
        },
        { Sid: 'WorkspaceDataList', Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::ws1-data' },
      ],
    });
    for (const s of workspaceDataPolicy('ws1-data').Statement as { Sid?: string }[]) {
      expect(s.Sid).toMatch(/^[A-Za-z0-9]+$/); // IAM accepts only alphanumeric Sids
    }
  });
});

describe('trust policy strategies', () => {
  it('IRSA: federated OIDC provider, web identity, sub = runner SA and aud = sts', () => {
    const cfg = cfgWith();
    const role = desiredIamRole(cfg, spec, workspaceNames(cfg, 'ws1'));
    expect(role.trustPolicy).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'WorkspaceRunnerIrsa',
          Effect: 'Allow',
          Principal: { Federated: `arn:aws:iam::123456789012:oidc-provider/${ISSUER}` },
          Action: 'sts:AssumeRoleWithWebIdentity',
          Condition: {
            StringEquals: {
              [`${ISSUER}:sub`]: 'system:serviceaccount:flyte-ws1:flyte-ws1-runner',
              [`${ISSUER}:aud`]: 'sts.amazonaws.com',
            },
          },
        },
      ],
    });
  });

  it('IRSA in per-domain mode: one subject per domain namespace, nothing else', () => {
    const cfg = cfgWith({ names: { namespacePerDomain: true } });
    const names = workspaceNames(cfg, 'ws1');
    const doc = new IrsaTrustStrategy().trustPolicy({ cfg, names });
    const cond = (doc.Statement as { Condition: Record<string, Record<string, unknown>> }[])[0]?.Condition;
    expect(cond?.StringEquals?.[`${ISSUER}:sub`]).toEqual([
      'system:serviceaccount:ws1-development:flyte-ws1-runner',
      'system:serviceaccount:ws1-staging:flyte-ws1-runner',
      'system:serviceaccount:ws1-production:flyte-ws1-runner',
    ]);
    expect(cond?.StringEquals?.[`${ISSUER}:aud`]).toBe('sts.amazonaws.com');
  });

  it('pod identity: EKS pods service principal with AssumeRole and TagSession, no OIDC condition', () => {
    const cfg = cfgWith({ aws: { trustStrategy: 'pod-identity' } });
    const role = desiredIamRole(cfg, spec, workspaceNames(cfg, 'ws1'));
    expect(trustStrategyFor('pod-identity')).toBeInstanceOf(PodIdentityTrustStrategy);
    expect(role.trustPolicy).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'WorkspaceRunnerPodIdentity',
          Effect: 'Allow',
          Principal: { Service: 'pods.eks.amazonaws.com' },
          Action: ['sts:AssumeRole', 'sts:TagSession'],
        },
      ],
    });
  });

  it('selects the strategy by name and rejects unknown ones', () => {
    expect(trustStrategyFor('irsa')).toBeInstanceOf(IrsaTrustStrategy);
    expect(() => trustStrategyFor('magic' as never)).toThrow(/unknown trust strategy/);
  });

  it('oidcIssuer takes everything after oidc-provider/', () => {
    expect(oidcIssuer(`arn:aws:iam::123456789012:oidc-provider/${ISSUER}`)).toBe(ISSUER);
    expect(
      oidcIssuer('arn:aws-us-gov:iam::123456789012:oidc-provider/oidc.eks.us-gov-west-1.amazonaws.com/id/AB'),
    ).toBe('oidc.eks.us-gov-west-1.amazonaws.com/id/AB');
    expect(() => oidcIssuer('arn:aws:iam::123456789012:role/x')).toThrow(/not an IAM OIDC provider ARN/);
    expect(() => oidcIssuer('arn:aws:iam::123456789012:oidc-provider/')).toThrow();
  });
});

describe('desiredRoleHash', () => {
  const cfg = cfgWith();
  const names = workspaceNames(cfg, 'ws1');

  it('is stable and ignores policy formatting', () => {
    const a = desiredIamRole(cfg, spec, names);
    const b = desiredIamRole(cfg, spec, names);
    expect(desiredRoleHash(a)).toBe(desiredRoleHash(b));
    const stmts = [...(workspaceDataPolicy('ws1-data').Statement as PolicyStatement[])].reverse();
    const reordered = {
      ...b,
      inlinePolicies: { [WORKSPACE_DATA_POLICY]: { Statement: stmts, Version: '2012-10-17' } },
    };
    expect(policiesEqual(reordered.inlinePolicies[WORKSPACE_DATA_POLICY], workspaceDataPolicy('ws1-data'))).toBe(true);
    expect(JSON.stringify(reordered.inlinePolicies)).not.toBe(JSON.stringify(a.inlinePolicies));
    expect(desiredRoleHash(reordered)).toBe(desiredRoleHash(a));
  });

  it('changes with the bucket, the trust strategy, the boundary', () => {
    const h = desiredRoleHash(desiredIamRole(cfg, spec, names));
    expect(desiredRoleHash(desiredIamRole(cfg, { ...spec, dataBucket: 'ws1-data-2' }, names))).not.toBe(h);
    const pod = cfgWith({ aws: { trustStrategy: 'pod-identity' } });
    expect(desiredRoleHash(desiredIamRole(pod, spec, names))).not.toBe(h);
    const boundary = cfgWith({ aws: { permissionsBoundaryArn: 'arn:aws:iam::123456789012:policy/b' } });
    expect(desiredRoleHash(desiredIamRole(boundary, spec, names))).not.toBe(h);
  });
});

describe('roleOwnership', () => {
  const cfg = cfgWith();
  it('requires both our managed-by and this workspace id', () => {
    expect(roleOwnership({ 'managed-by': 'flyte-workspace-controller', 'workspace-id': 'ws1' }, cfg, 'ws1')).toBe(
      'ours',
    );
    expect(roleOwnership({ 'managed-by': 'flyte-workspace-controller', 'workspace-id': 'ws2' }, cfg, 'ws1')).toBe(
      'other-workspace',
    );
    expect(roleOwnership({ 'workspace-id': 'ws1' }, cfg, 'ws1')).toBe('foreign');
    expect(roleOwnership({ 'managed-by': 'terraform', 'workspace-id': 'ws1' }, cfg, 'ws1')).toBe('foreign');
    expect(roleOwnership({ 'managed-by': 'flyte-workspace-controller' }, cfg, 'ws1')).toBe('foreign');
    expect(roleOwnership({}, cfg, 'ws1')).toBe('foreign');
  });
});

describe('iamDriftCheckIntervalMs', () => {
  const cfg = (aws: Record<string, unknown>) => mergeConfig(defaultConfig(), { aws });

  it('is the configured interval while the drift checks fit in half the request budget', () => {
    // 1,000 workspaces × 3 reads / (5/s × 0.5) = 1,200 s < 3,600 s
    expect(iamDriftCheckIntervalMs(cfg({}), 1000)).toBe(3_600_000);
    expect(iamDriftCheckIntervalMs(cfg({ driftCheckIntervalSeconds: 900 }), 0)).toBe(900_000);
  });

  it('stretches so that checking every workspace takes at most half the budget', () => {
    expect(iamDriftCheckIntervalMs(cfg({}), 5000)).toBe(6_000_000);
    expect(iamDriftCheckIntervalMs(cfg({ requestsPerSecond: 20 }), 5000)).toBe(3_600_000);
    const n = 20_000;
    const ms = iamDriftCheckIntervalMs(cfg({ requestsPerSecond: 10 }), n);
    const readsPerSecond = (n * IAM_READS_PER_DRIFT_CHECK) / (ms / 1000);
    expect(readsPerSecond).toBeCloseTo(10 * IAM_DRIFT_CHECK_BUDGET_SHARE, 6);
  });
});
