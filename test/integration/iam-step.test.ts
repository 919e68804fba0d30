// IAM step against moto (through a fault-injecting proxy that also counts requests per Action).
// Uses the moto server of the integration globalSetup when it provides one, else starts its own. Every
// test works under its own role path with its own workspace ids, so a shared moto is never reset.
import {
  AttachRolePolicyCommand,
  CreatePolicyCommand,
  CreateRoleCommand,
  DeletePolicyCommand,
  DeleteRolePermissionsBoundaryCommand,
  DeleteRolePolicyCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
  TagRoleCommand,
  UntagRoleCommand,
  UpdateAssumeRolePolicyCommand,
  UpdateRoleCommand,
} from '@aws-sdk/client-iam';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { type FaultProxy, startFaultProxy } from '../../harness/aws-fault-proxy.js';
import { type Moto, startMoto } from '../../harness/moto.js';
import { CallStats } from '../../src/adapters/call-stats.js';
import { IamError, SdkIamApi } from '../../src/adapters/iam.js';
import { type ControllerConfig, defaultConfig, mergeConfig, validateConfig } from '../../src/config/config.js';
import { desiredIamRole, workspaceDataPolicy } from '../../src/desired/iam.js';
import { type PolicyStatement, parsePolicy, policiesEqual } from '../../src/desired/iam-policy.js';
import { sweepIamOrphans } from '../../src/reconcile/iam-orphans.js';
import { IamStep, type IamStepOptions } from '../../src/reconcile/steps/iam.js';
import type { StepBaseContext, StepContext } from '../../src/reconcile/types.js';
import { workspaceNames } from '../../src/spec/names.js';
import { validateWorkspace } from '../../src/spec/workspace.js';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const log = pino({ level: 'silent' });
const BOUNDARY = 'arn:aws:iam::aws:policy/PowerUserAccess';

let moto: Moto | undefined;
let motoEndpoint: string;
let proxy: FaultProxy;
let raw: IAMClient;
const apis: SdkIamApi[] = [];

beforeAll(async () => {
  const provided = inject('motoEndpoint') as string | undefined;
  if (provided) motoEndpoint = provided;
  else {
    moto = await startMoto();
    motoEndpoint = moto.endpoint;
  }
  proxy = await startFaultProxy(motoEndpoint);
  // Out-of-band edits and assertions go straight to moto, so they never show in the proxy's counts.
  raw = new IAMClient({ region: 'us-east-1', endpoint: motoEndpoint, credentials, maxAttempts: 1 });
});

afterAll(async () => {
  for (const a of apis) a.destroy();
  raw?.destroy();
  await proxy?.stop();
  await moto?.stop();
});

beforeEach(() => {
  proxy.clearFaults();
  proxy.resetCounts();
});

let seq = 0;
function uniqueSuffix(): string {
  return `${Date.now().toString(36).slice(-5)}${process.pid.toString(36).slice(-3)}${(seq++).toString(36)}`;
}

interface Env {
  id: string;
  cfg: ControllerConfig;
  api: SdkIamApi;
  stats: CallStats;
  step: IamStep;
  roleName: string;
  /** A step context for this workspace; the spec comes from a workspace.json-like document. */
  ctx(doc?: Record<string, unknown>, over?: Partial<StepContext>): StepContext;
  base(over?: Partial<StepBaseContext>): StepBaseContext;
  clock: { t: number };
}

function makeEnv(
  cfgOverride: Record<string, unknown> = {},
  stepOpts: Partial<IamStepOptions> = {},
  shared?: { rolePath: string },
): Env {
  const suffix = uniqueSuffix();
  const id = `ws-${suffix}`;
  let cfg = mergeConfig(defaultConfig(), {
    aws: { endpoint: proxy.endpoint, rolePath: shared?.rolePath ?? `/fwc-test-${suffix}/`, maxAttempts: 4 },
    bucketPatterns: ['{{ workspace_id }}-data', '{{ workspace_id }}-data-*'],
  });
  cfg = mergeConfig(cfg, cfgOverride);
  validateConfig(cfg);
  const stats = new CallStats('iam');
  const api = new SdkIamApi({ cfg, stats, credentials, requestsPerSecond: 500, burst: 500 });
  apis.push(api);
  const clock = { t: 1_000_000 };
  const step = new IamStep({ api, now: () => clock.t, ...stepOpts });
  const names = workspaceNames(cfg, id);
  const baseCtx = (over: Partial<StepBaseContext> = {}): StepBaseContext => ({
    cfg,
    log,
    workspaceId: id,
    names,
    dryRun: false,
    force: false,
    changes: [],
    outputs: {},
    source: `workspace-platform/${id}`,
    ...over,
  });
  return {
    id,
    cfg,
    api,
    stats,
    step,
    roleName: names.iamRole,
    clock,
    base: baseCtx,
    ctx(doc = {}, over = {}) {
      const parsed = validateWorkspace(
        {
          workspace_id: id,
          workspace_name: `Workspace ${id}`,
          users: [{ user_id: 'u1', email: `owner@${id}.example.com`, role: 'owner' }],
          data_bucket: `${id}-data`,
          services: ['flyte'],
          ...doc,
        },
        cfg,
      );
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      return { ...baseCtx(), spec: parsed.spec, specHash: parsed.specHash, specUnchanged: false, ...over };
    },
  };
}

async function getRole(name: string) {
  try {
    return (await raw.send(new GetRoleCommand({ RoleName: name }))).Role;
  } catch (err) {
    if ((err as Error).name === 'NoSuchEntityException') return undefined;
    throw err;
  }
}

async function inlineNames(name: string): Promise<string[]> {
  return (await raw.send(new ListRolePoliciesCommand({ RoleName: name }))).PolicyNames ?? [];
}

async function inlineDoc(name: string, policy: string): Promise<unknown> {
  const out = await raw.send(new GetRolePolicyCommand({ RoleName: name, PolicyName: policy }));
  return parsePolicy(out.PolicyDocument ?? '');
}

function tagsOf(role: { Tags?: { Key?: string; Value?: string }[] } | undefined): Record<string, string> {
  return Object.fromEntries((role?.Tags ?? []).map((t) => [t.Key, t.Value]));
}

/** Converges once (create), then resets the counters. */
async function created(env: Env, doc: Record<string, unknown> = {}) {
  const outcome = await env.step.ensure(env.ctx(doc));
  expect(outcome.state, outcome.message).toBe('Ready');
  env.stats.reset();
  proxy.resetCounts();
  return outcome;
}

describe('IamStep.ensure', () => {
  it('creates the role with path, IRSA trust, tags, description, session and the bucket policy', async () => {
    const env = makeEnv();
    const ctx = env.ctx();
    const outcome = await env.step.ensure(ctx);

    expect(outcome).toMatchObject({ state: 'Ready', reason: 'Applied', writes: 2 });
    const role = await getRole(env.roleName);
    expect(role?.Path).toBe(env.cfg.aws.rolePath);
    expect(role?.Arn).toBe(`arn:aws:iam::123456789012:role${env.cfg.aws.rolePath}${env.roleName}`);
    expect(ctx.outputs.roleArn).toBe(role?.Arn);
    expect(outcome.result).toEqual({ roleName: env.roleName, roleArn: role?.Arn, desiredHash: expect.any(String) });
    expect(role?.MaxSessionDuration).toBe(3600);
    expect(role?.Description).toContain(env.id);
    expect(tagsOf(role)).toEqual({
      'managed-by': 'flyte-workspace-controller',
      'workspace-id': env.id,
      'data-bucket': `${env.id}-data`,
    });
    const desired = desiredIamRole(env.cfg, ctx.spec, ctx.names);
    expect(policiesEqual(role?.AssumeRolePolicyDocument ?? '', desired.trustPolicy)).toBe(true);
    const trust = parsePolicy(role?.AssumeRolePolicyDocument ?? '') as { Statement: Record<string, unknown>[] };
    expect(JSON.stringify(trust.Statement[0]?.Condition)).toContain(
      `system:serviceaccount:flyte-${env.id}:flyte-${env.id}-runner`,
    );
    expect(await inlineNames(env.roleName)).toEqual(['workspace-data']);
    expect(
      policiesEqual((await inlineDoc(env.roleName, 'workspace-data')) as object, workspaceDataPolicy(`${env.id}-data`)),
    ).toBe(true);
    expect(env.stats.snapshot().byOperation).toMatchObject({ GetRole: 1, CreateRole: 1, PutRolePolicy: 1 });
    expect(proxy.writeCounts()).toEqual({ CreateRole: 1, PutRolePolicy: 1 });
  });

  it('a converged role costs zero writes when read in full, and zero calls while verified', async () => {
    const env = makeEnv();
    await created(env);

    const forced = await env.step.ensure(env.ctx({}, { force: true }));
    expect(forced).toMatchObject({ state: 'Ready', reason: 'Synced', writes: 0 });
    expect(env.stats.writes).toBe(0);
    expect(env.stats.snapshot().byOperation).toEqual({ GetRole: 1, ListRolePolicies: 1, GetRolePolicy: 1 });
    expect(proxy.writeCounts()).toEqual({});
    expect(proxy.total()).toBe(3);

    proxy.resetCounts();
    env.stats.reset();
    const ctx = env.ctx();
    const cached = await env.step.ensure(ctx);
    expect(cached).toMatchObject({ state: 'Ready', writes: 0 });
    expect(cached.result).toEqual(forced.result);
    expect(ctx.outputs.roleArn).toBe(forced.result?.roleArn);
    expect(proxy.total()).toBe(0);
    expect(env.stats.reads + env.stats.writes).toBe(0);
  });

  it('changes to the spec that do not touch IAM cost no IAM calls, and no writes when read', async () => {
    const env = makeEnv();
    await created(env);
    const usersChanged = {
      workspace_name: 'Renamed workspace ✨',
      users: [
        { user_id: 'u1', email: `owner@${env.id}.example.com`, role: 'owner' },
        { user_id: 'u9', email: `new@${env.id}.example.com`, role: 'contributor' },
      ],
      services: ['flyte', 'sagemaker'],
    };
    const outcome = await env.step.ensure(env.ctx(usersChanged));
    expect(outcome).toMatchObject({ state: 'Ready', writes: 0 });
    expect(proxy.total()).toBe(0);

    const forced = await env.step.ensure(env.ctx(usersChanged, { force: true }));
    expect(forced.writes).toBe(0);
    expect(proxy.writeCounts()).toEqual({});
  });

  it('re-verifies after aws.driftCheckIntervalSeconds: drift made in between is found then', async () => {
    const env = makeEnv({ aws: { driftCheckIntervalSeconds: 600 } });
    await created(env);
    await raw.send(new UntagRoleCommand({ RoleName: env.roleName, TagKeys: ['data-bucket'] }));

    env.clock.t += 599_000; // within the interval: still verified
    expect((await env.step.ensure(env.ctx())).writes).toBe(0);
    expect(proxy.total()).toBe(0);

    env.clock.t += 1_000; // 600 s after verification: read again
    const outcome = await env.step.ensure(env.ctx());
    expect(outcome.writes).toBe(1);
    expect(proxy.writeCounts()).toEqual({ TagRole: 1 });
    expect(tagsOf(await getRole(env.roleName))['data-bucket']).toBe(`${env.id}-data`);
  });

  describe('drift repair writes exactly the aspect that drifted', () => {
    it('trust policy edited by someone: restored with one UpdateAssumeRolePolicy', async () => {
      const env = makeEnv();
      await created(env);
      const drifted = {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { Federated: env.cfg.aws.oidcProviderArn },
            Action: 'sts:AssumeRoleWithWebIdentity',
            Condition: {
              StringLike: { 'oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE:sub': 'system:serviceaccount:*:*' },
            },
          },
        ],
      };
      await raw.send(
        new UpdateAssumeRolePolicyCommand({ RoleName: env.roleName, PolicyDocument: JSON.stringify(drifted) }),
      );
      const onDrift: string[] = [];
      const step = new IamStep({ api: env.api, onDrift: (k) => onDrift.push(k) });
      const ctx = env.ctx({}, { specUnchanged: true });
      const outcome = await step.ensure(ctx);
      expect(outcome).toMatchObject({ state: 'Ready', reason: 'Applied', writes: 1 });
      expect(proxy.writeCounts()).toEqual({ UpdateAssumeRolePolicy: 1 });
      expect(onDrift).toEqual(['trust-policy']);
      expect(ctx.changes).toEqual([
        { system: 'iam', action: 'update', target: `role ${env.roleName}`, detail: 'trust policy' },
      ]);
      const desired = desiredIamRole(env.cfg, ctx.spec, ctx.names);
      expect(policiesEqual((await getRole(env.roleName))?.AssumeRolePolicyDocument ?? '', desired.trustPolicy)).toBe(
        true,
      );
    });

    it('a semantically equal but reformatted trust policy is left alone (no perpetual diff)', async () => {
      const env = makeEnv();
      await created(env);
      const ctx = env.ctx();
      const desired = desiredIamRole(env.cfg, ctx.spec, ctx.names);
      const stmt = (desired.trustPolicy.Statement as PolicyStatement[])[0] as PolicyStatement;
      const equals = stmt.Condition?.StringEquals ?? {};
      const reformatted = {
        Statement: [
          {
            // Keys reordered, single values as arrays, pretty-printed below. (moto, like IAM for trust
            // policies, insists on the exact action spelling, so action case is covered by unit tests.)
            Condition: {
              StringEquals: Object.fromEntries(
                Object.entries(equals)
                  .reverse()
                  .map(([k, v]) => [k, [v].flat()]),
              ),
            },
            Action: ['sts:AssumeRoleWithWebIdentity'],
            Principal: { Federated: [env.cfg.aws.oidcProviderArn] },
            Effect: 'Allow',
            Sid: stmt.Sid,
          },
        ],
        Version: '2012-10-17',
      };
      await raw.send(
        new UpdateAssumeRolePolicyCommand({
          RoleName: env.roleName,
          PolicyDocument: JSON.stringify(reformatted, null, 4),
        }),
      );
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome.writes).toBe(0);
      expect(proxy.writeCounts()).toEqual({});
    });

    it('a statement added to the inline policy: removed with one PutRolePolicy', async () => {
      const env = makeEnv();
      await created(env);
      const widened = workspaceDataPolicy(`${env.id}-data`);
      (widened.Statement as object[]).push({ Sid: 'Everything', Effect: 'Allow', Action: 's3:*', Resource: '*' });
      await raw.send(
        new PutRolePolicyCommand({
          RoleName: env.roleName,
          PolicyName: 'workspace-data',
          PolicyDocument: JSON.stringify(widened),
        }),
      );
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome.writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ PutRolePolicy: 1 });
      expect(
        policiesEqual(
          (await inlineDoc(env.roleName, 'workspace-data')) as object,
          workspaceDataPolicy(`${env.id}-data`),
        ),
      ).toBe(true);
    });

    it('an extra inline policy someone added: deleted with one DeleteRolePolicy', async () => {
      const env = makeEnv();
      await created(env);
      await raw.send(
        new PutRolePolicyCommand({
          RoleName: env.roleName,
          PolicyName: 'sneaky',
          PolicyDocument: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: 'iam:*', Resource: '*' }],
          }),
        }),
      );
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome.writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ DeleteRolePolicy: 1 });
      expect(await inlineNames(env.roleName)).toEqual(['workspace-data']);
    });

    it('a removed or changed tag: restored with one TagRole; foreign tags are left alone', async () => {
      const env = makeEnv();
      await created(env);
      await raw.send(new UntagRoleCommand({ RoleName: env.roleName, TagKeys: ['data-bucket'] }));
      await raw.send(new TagRoleCommand({ RoleName: env.roleName, Tags: [{ Key: 'cost-center', Value: '42' }] }));
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome.writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ TagRole: 1 });
      expect(tagsOf(await getRole(env.roleName))).toEqual({
        'managed-by': 'flyte-workspace-controller',
        'workspace-id': env.id,
        'data-bucket': `${env.id}-data`,
        'cost-center': '42',
      });
    });

    it('description or max session changed: one UpdateRole', async () => {
      const env = makeEnv();
      await created(env);
      await raw.send(new UpdateRoleCommand({ RoleName: env.roleName, MaxSessionDuration: 43200, Description: 'mine' }));
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome.writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ UpdateRole: 1 });
      const role = await getRole(env.roleName);
      expect(role?.MaxSessionDuration).toBe(3600);
      expect(role?.Description).toContain(env.id);
    });

    it('permissions boundary: created with it, re-added when removed, removed when no longer configured', async () => {
      const env = makeEnv({ aws: { permissionsBoundaryArn: BOUNDARY } });
      await created(env);
      expect((await getRole(env.roleName))?.PermissionsBoundary?.PermissionsBoundaryArn).toBe(BOUNDARY);

      await raw.send(new DeleteRolePermissionsBoundaryCommand({ RoleName: env.roleName }));
      expect((await env.step.ensure(env.ctx({}, { force: true }))).writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ PutRolePermissionsBoundary: 1 });
      expect((await getRole(env.roleName))?.PermissionsBoundary?.PermissionsBoundaryArn).toBe(BOUNDARY);

      proxy.resetCounts();
      const cfg = structuredClone(env.cfg);
      delete cfg.aws.permissionsBoundaryArn;
      const ctx = { ...env.ctx({}, { force: true }), cfg };
      expect((await env.step.ensure(ctx)).writes).toBe(1);
      expect(proxy.writeCounts()).toEqual({ DeleteRolePermissionsBoundary: 1 });
      expect((await getRole(env.roleName))?.PermissionsBoundary).toBeUndefined();
    });
  });

  it('a bucket change rewrites the inline policy and the bucket tag, nothing else', async () => {
    const env = makeEnv();
    await created(env);
    const bucket = `${env.id}-data-v2`;
    const outcome = await env.step.ensure(env.ctx({ data_bucket: bucket })); // not forced: the hash changed
    expect(outcome.writes).toBe(2);
    expect(proxy.writeCounts()).toEqual({ PutRolePolicy: 1, TagRole: 1 });
    expect(
      policiesEqual((await inlineDoc(env.roleName, 'workspace-data')) as object, workspaceDataPolicy(bucket)),
    ).toBe(true);
    const doc = JSON.stringify(await inlineDoc(env.roleName, 'workspace-data'));
    expect(doc).not.toContain(`${env.id}-data"`);
    expect(doc).not.toContain(`${env.id}-data/*"`);
    expect(tagsOf(await getRole(env.roleName))['data-bucket']).toBe(bucket);
  });

  it('plan (dry-run) records the changes and writes nothing', async () => {
    const env = makeEnv();
    const ctx = env.ctx({}, { dryRun: true });
    const outcome = await env.step.ensure(ctx);
    expect(outcome).toMatchObject({ state: 'Ready', writes: 0 });
    expect(ctx.changes.map((c) => c.action)).toEqual(['create', 'create']);
    expect(ctx.outputs.roleArn).toBe(`arn:aws:iam::123456789012:role${env.cfg.aws.rolePath}${env.roleName}`);
    expect(await getRole(env.roleName)).toBeUndefined();
    expect(proxy.writeCounts()).toEqual({});

    await created(env);
    await raw.send(new UntagRoleCommand({ RoleName: env.roleName, TagKeys: ['data-bucket'] }));
    const plan = env.ctx({ data_bucket: `${env.id}-data-new` }, { dryRun: true });
    expect((await env.step.ensure(plan)).writes).toBe(0);
    expect(plan.changes.map((c) => c.detail ?? c.target)).toEqual([
      'tags data-bucket',
      `role ${env.roleName} inline policy workspace-data`,
    ]);
    expect(proxy.writeCounts()).toEqual({});
    expect(tagsOf(await getRole(env.roleName))['data-bucket']).toBeUndefined();
  });

  it('pod identity: the role trusts the EKS pods service with AssumeRole + TagSession', async () => {
    const env = makeEnv({ aws: { trustStrategy: 'pod-identity' } });
    await created(env);
    const trust = parsePolicy((await getRole(env.roleName))?.AssumeRolePolicyDocument ?? '');
    expect(
      policiesEqual(trust as object, {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'WorkspaceRunnerPodIdentity',
            Effect: 'Allow',
            Principal: { Service: 'pods.eks.amazonaws.com' },
            Action: ['sts:AssumeRole', 'sts:TagSession'],
          },
        ],
      }),
    ).toBe(true);
    expect(JSON.stringify(trust)).not.toContain('oidc-provider');

    // Switching an existing role from pod identity to IRSA only replaces the trust policy.
    const irsa = structuredClone(env.cfg);
    irsa.aws.trustStrategy = 'irsa';
    const outcome = await env.step.ensure({ ...env.ctx(), cfg: irsa });
    expect(outcome.writes).toBe(1);
    expect(proxy.writeCounts()).toEqual({ UpdateAssumeRolePolicy: 1 });
  });

  describe('ownership', () => {
    it('a foreign untagged role with our name is refused and left untouched', async () => {
      const env = makeEnv();
      const foreignTrust = JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      });
      await raw.send(
        new CreateRoleCommand({
          RoleName: env.roleName,
          Path: env.cfg.aws.rolePath,
          AssumeRolePolicyDocument: foreignTrust,
          Description: 'not yours',
        }),
      );
      const before = await getRole(env.roleName);

      const ctx = env.ctx();
      const outcome = await env.step.ensure(ctx);
      expect(outcome).toMatchObject({ state: 'Conflict', reason: 'RoleNotOwned', writes: 0, retryable: false });
      expect(outcome.message).toContain(env.roleName);
      expect(ctx.outputs.roleArn).toBeUndefined();
      expect(proxy.writeCounts()).toEqual({});

      const down = await env.step.teardown(env.base());
      expect(down).toMatchObject({ state: 'Skipped', reason: 'RoleNotOwned', writes: 0 });
      expect(proxy.writeCounts()).toEqual({});

      const after = await getRole(env.roleName);
      expect(after?.AssumeRolePolicyDocument).toBe(before?.AssumeRolePolicyDocument);
      expect(after?.Description).toBe('not yours');
      expect(after?.Tags ?? []).toEqual([]);
      expect(await inlineNames(env.roleName)).toEqual([]);
    });

    it('a role of ours tagged for another workspace is refused too', async () => {
      const env = makeEnv();
      await raw.send(
        new CreateRoleCommand({
          RoleName: env.roleName,
          Path: env.cfg.aws.rolePath,
          AssumeRolePolicyDocument: '{"Version":"2012-10-17","Statement":[]}',
          Tags: [
            { Key: 'managed-by', Value: 'flyte-workspace-controller' },
            { Key: 'workspace-id', Value: 'somebody-else' },
          ],
        }),
      );
      const outcome = await env.step.ensure(env.ctx());
      expect(outcome).toMatchObject({ state: 'Conflict', reason: 'RoleNotOwned', writes: 0 });
      expect(outcome.message).toContain('somebody-else');
      expect((await env.step.teardown(env.base())).state).toBe('Skipped');
      expect(proxy.writeCounts()).toEqual({});
      expect(await getRole(env.roleName)).toBeDefined();
    });
  });

  describe('AWS errors', () => {
    it('throttling (400 Throttling) is retried by the SDK and the step converges', async () => {
      const env = makeEnv();
      proxy.inject({ error: 'Throttling', times: 2, action: 'GetRole' });
      const outcome = await env.step.ensure(env.ctx());
      expect(outcome).toMatchObject({ state: 'Ready', writes: 2 });
      expect(proxy.count('GetRole')).toBe(3);
      expect(proxy.injectedCounts()).toEqual({ GetRole: 2 });
      expect(env.stats.snapshot().byOperation.GetRole).toBe(1); // one logical call
    }, 30_000);

    it('503 ServiceUnavailable on a write is retried and the step converges', async () => {
      const env = makeEnv();
      await created(env);
      await raw.send(new DeleteRolePolicyCommand({ RoleName: env.roleName, PolicyName: 'workspace-data' }));
      proxy.inject({ error: 'ServiceUnavailable', times: 2, action: 'PutRolePolicy' });
      const outcome = await env.step.ensure(env.ctx({}, { force: true }));
      expect(outcome).toMatchObject({ state: 'Ready', writes: 1 });
      expect(proxy.count('PutRolePolicy')).toBe(3);
      expect(await inlineNames(env.roleName)).toEqual(['workspace-data']);
    }, 30_000);

    it('throttling that does not stop: retryable failure after maxAttempts requests, no more', async () => {
      const env = makeEnv({ aws: { maxAttempts: 2 } });
      proxy.inject({ error: 'Throttling', times: 50, action: 'GetRole' });
      const outcome = await env.step.ensure(env.ctx());
      expect(outcome).toMatchObject({ state: 'Failed', reason: 'IamThrottled', retryable: true, writes: 0 });
      expect(outcome.message).toContain('Throttling');
      expect(proxy.count('GetRole')).toBe(2);
    }, 30_000);

    it('a terminal error is reported with its AWS code and sent once, not retried', async () => {
      const env = makeEnv();
      proxy.inject({ error: 'MalformedPolicyDocument', times: 5, action: 'PutRolePolicy' });
      const outcome = await env.step.ensure(env.ctx());
      expect(outcome).toMatchObject({ state: 'Failed', reason: 'IamRejected', retryable: false, writes: 1 });
      expect(outcome.message).toMatch(/^MalformedPolicyDocument: /);
      expect(proxy.count('PutRolePolicy')).toBe(1);
      expect(proxy.count('CreateRole')).toBe(1);

      // Nothing was cached: the next pass reads again and finishes the job once IAM accepts.
      proxy.clearFaults();
      proxy.resetCounts();
      const next = await env.step.ensure(env.ctx());
      expect(next).toMatchObject({ state: 'Ready', writes: 1 });
      expect(proxy.writeCounts()).toEqual({ PutRolePolicy: 1 });
    });

    it('LimitExceeded (an IAM quota) is terminal, although the SDK would retry it as throttling', async () => {
      const env = makeEnv();
      proxy.inject({ error: 'LimitExceeded', times: 5, action: 'CreateRole' });
      const outcome = await env.step.ensure(env.ctx());
      expect(outcome).toMatchObject({ state: 'Failed', reason: 'IamRejected', retryable: false });
      expect(outcome.message).toMatch(/^LimitExceeded: /);
      expect(proxy.count('CreateRole')).toBe(1);
    });

    it('the adapter raises IamError with the AWS code, its kind and an explicit class', async () => {
      const env = makeEnv();
      proxy.inject({ error: 'MalformedPolicyDocument', action: 'UpdateAssumeRolePolicy' });
      const err = await env.api.updateAssumeRolePolicy('does-not-matter', '{}').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IamError);
      expect(err).toMatchObject({
        code: 'MalformedPolicyDocument',
        kind: 'terminal',
        errorClass: 'terminal',
        retryable: false,
        httpStatus: 400,
      });
      const missing = await env.api.deleteRole(`missing-${env.id}`).catch((e: unknown) => e);
      expect(missing).toMatchObject({ code: 'NoSuchEntity', kind: 'not-found', errorClass: 'retryable' });
      expect(await env.api.getRole(`missing-${env.id}`)).toBeUndefined();
    });
  });
});

describe('IamStep.teardown', () => {
  it('deletes inline policies, detaches managed policies and deletes the role; nothing is left', async () => {
    const env = makeEnv();
    await created(env);
    const policy = await raw.send(
      new CreatePolicyCommand({
        PolicyName: `extra-${env.id}`,
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: 's3:ListAllMyBuckets', Resource: '*' }],
        }),
      }),
    );
    const policyArn = policy.Policy?.Arn as string;
    await raw.send(new AttachRolePolicyCommand({ RoleName: env.roleName, PolicyArn: policyArn }));

    const plan = env.base({ dryRun: true });
    expect(await env.step.teardown(plan)).toMatchObject({ state: 'Deleted', writes: 0 });
    expect(plan.changes.map((c) => c.action)).toEqual(['delete', 'delete', 'delete']);
    expect(await getRole(env.roleName)).toBeDefined();

    const outcome = await env.step.teardown(env.base());
    expect(outcome).toMatchObject({ state: 'Deleted', reason: 'Deleted', writes: 3 });
    expect(proxy.writeCounts()).toEqual({ DeleteRolePolicy: 1, DetachRolePolicy: 1, DeleteRole: 1 });
    expect(await getRole(env.roleName)).toBeUndefined();
    await expect(
      raw.send(new GetRolePolicyCommand({ RoleName: env.roleName, PolicyName: 'workspace-data' })),
    ).rejects.toMatchObject({ name: 'NoSuchEntityException' });

    // Gone already: success with no writes; ensure afterwards recreates (the verified entry was dropped).
    proxy.resetCounts();
    expect(await env.step.teardown(env.base())).toMatchObject({ state: 'Deleted', writes: 0 });
    expect(proxy.writeCounts()).toEqual({});
    await raw.send(new DeletePolicyCommand({ PolicyArn: policyArn }));
    expect((await env.step.ensure(env.ctx())).writes).toBe(2);
  });

  it('NoSuchEntity half-way (someone deleted the role meanwhile) is success', async () => {
    const env = makeEnv();
    await created(env);
    proxy.inject({ error: { code: 'NoSuchEntity', status: 404 }, action: 'DeleteRolePolicy' });
    proxy.inject({ error: { code: 'NoSuchEntity', status: 404 }, action: 'DeleteRole' });
    const outcome = await env.step.teardown(env.base());
    expect(outcome.state).toBe('Deleted');
    // The injected errors hid the real deletes; a second teardown finishes the job.
    expect((await env.step.teardown(env.base())).state).toBe('Deleted');
    expect(await getRole(env.roleName)).toBeUndefined();
  });
});

describe('sweepIamOrphans', () => {
  it('dry-run reports roles of removed workspaces; a real run deletes exactly those', async () => {
    const rolePath = `/fwc-sweep-${uniqueSuffix()}/`;
    const live = makeEnv({}, {}, { rolePath });
    const gone1 = makeEnv({}, {}, { rolePath });
    const gone2 = makeEnv({}, {}, { rolePath });
    for (const env of [live, gone1, gone2]) await created(env);
    // Not ours: untagged, and tagged by another controller; same path.
    await raw.send(
      new CreateRoleCommand({
        RoleName: `foreign-${live.id}`,
        Path: rolePath,
        AssumeRolePolicyDocument: '{"Version":"2012-10-17","Statement":[]}',
      }),
    );
    await raw.send(
      new CreateRoleCommand({
        RoleName: `other-ctl-${live.id}`,
        Path: rolePath,
        AssumeRolePolicyDocument: '{"Version":"2012-10-17","Statement":[]}',
        Tags: [
          { Key: 'managed-by', Value: 'another-controller' },
          { Key: 'workspace-id', Value: 'ghost' },
        ],
      }),
    );
    const cfg = live.cfg;
    const liveWorkspaceIds = new Set([live.id]);

    // Too young by default: a workspace may have been created after the live set was taken.
    expect(await sweepIamOrphans({ api: live.api, cfg, liveWorkspaceIds, dryRun: false, log })).toEqual([]);

    proxy.resetCounts();
    const report = await sweepIamOrphans({ api: live.api, cfg, liveWorkspaceIds, dryRun: true, log, minAgeMs: 0 });
    expect(report.map((o) => [o.workspaceId, o.roleName, o.action]).sort()).toEqual(
      [
        [gone1.id, gone1.roleName, 'would-delete'],
        [gone2.id, gone2.roleName, 'would-delete'],
      ].sort(),
    );
    expect(proxy.writeCounts()).toEqual({});

    const deleted = await sweepIamOrphans({ api: live.api, cfg, liveWorkspaceIds, dryRun: false, log, minAgeMs: 0 });
    expect(deleted.map((o) => o.action)).toEqual(['deleted', 'deleted']);
    expect(await getRole(gone1.roleName)).toBeUndefined();
    expect(await getRole(gone2.roleName)).toBeUndefined();
    expect(await getRole(live.roleName)).toBeDefined();
    expect(await getRole(`foreign-${live.id}`)).toBeDefined();
    expect(await getRole(`other-ctl-${live.id}`)).toBeDefined();
    expect(await inlineNames(live.roleName)).toEqual(['workspace-data']);

    expect(await sweepIamOrphans({ api: live.api, cfg, liveWorkspaceIds, dryRun: false, log, minAgeMs: 0 })).toEqual(
      [],
    );
  });
});

describe('request budget', () => {
  it('the token bucket spreads attempts at the configured rate after the burst', async () => {
    const env = makeEnv();
    const api = new SdkIamApi({ cfg: env.cfg, credentials, requestsPerSecond: 10, burst: 2 });
    apis.push(api);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, () => api.getRole(`missing-${env.id}`)));
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(550); // 6 requests beyond the burst at 10/s
    expect(proxy.count('GetRole')).toBe(8);
  });

  it('never has more than aws.maxConcurrentCalls calls at IAM at once', async () => {
    const env = makeEnv({ aws: { maxConcurrentCalls: 2 } });
    let atIam = 0;
    let peak = 0;
    // Below the slots and the bucket: counts the HTTP attempts actually in flight.
    env.api.client.middlewareStack.add(
      (next) => async (args) => {
        peak = Math.max(peak, ++atIam);
        try {
          return await next(args);
        } finally {
          atIam--;
        }
      },
      { step: 'finalizeRequest', name: 'countInFlight' },
    );
    await Promise.all(Array.from({ length: 8 }, () => env.api.getRole(`missing-${env.id}`)));
    expect(peak).toBe(2);
    expect(proxy.count('GetRole')).toBe(8);
    expect([env.api.slots.inFlight, env.api.slots.queued]).toEqual([0, 0]);
  });
});
