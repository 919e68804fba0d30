// One error model: every failure gets its class (conflict / terminal / retryable) where it is born, and
// errorOutcome maps the class, never the name, to an outcome. The steps here run against fakes that only
// answer the reads that lead to the failure under test; the real systems are in the integration tests.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { workspaceDoc } from '../../harness/workspaces.js';
import type { FlyteAdminApi } from '../../src/adapters/flyteadmin.js';
import { type IamApi, IamError, type IamRole, toIamError } from '../../src/adapters/iam.js';
import type { KubeApi, KubeObject } from '../../src/adapters/kubernetes.js';
import {
  type ControllerConfig,
  defaultConfig,
  MANAGED_BY_LABEL,
  SOURCE_ANNOTATION,
  WORKSPACE_ID_LABEL,
} from '../../src/config/config.js';
import type { Project } from '../../src/gen/flyteidl/admin/project_pb.js';
import { StepError, stepDetails, stepResultOf } from '../../src/kinds/step.js';
import { KubeStatusError } from '../../src/kube/status.js';
import { FlyteStep } from '../../src/reconcile/steps/flyte.js';
import { IamStep } from '../../src/reconcile/steps/iam.js';
import { KubernetesStep, kubeReadError, kubeWriteError } from '../../src/reconcile/steps/kubernetes.js';
import { errorOutcome, type StepContext } from '../../src/reconcile/types.js';
import { workspaceNames } from '../../src/spec/names.js';
import { validateWorkspace } from '../../src/spec/workspace.js';

const cfg = defaultConfig();

function ctx(c: ControllerConfig = cfg, id = 'ws1'): StepContext {
  const parsed = validateWorkspace(workspaceDoc(id), c);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return {
    cfg: c,
    log: pino({ level: 'silent' }),
    workspaceId: id,
    names: workspaceNames(c, id),
    dryRun: false,
    force: false,
    changes: [],
    outputs: {},
    source: 'workspace-platform/ws1',
    spec: parsed.spec,
    specHash: parsed.specHash,
    specUnchanged: false,
  };
}

/** An error shaped like what the AWS SDK throws. */
function sdkError(name: string, httpStatusCode?: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    ...(httpStatusCode ? { $metadata: { httpStatusCode }, $fault: httpStatusCode >= 500 ? 'server' : 'client' } : {}),
    ...extra,
  });
}

describe('errorOutcome: the class decides, not the name', () => {
  it.each([
    ['conflict', 'Conflict', false],
    ['terminal', 'Failed', false],
    ['retryable', 'Failed', true],
  ] as const)('%s → %s, retryable %s', (cls, state, retryable) => {
    expect(errorOutcome(new StepError('Anything', 'm', cls))).toEqual({
      state,
      reason: 'Anything',
      message: 'm',
      writes: 0,
      retryable,
    });
  });

  it('a reason that reads like a conflict is not one unless its class says so, and the other way round', () => {
    expect(errorOutcome(new StepError('DeleteConflict', 'm', 'retryable')).state).toBe('Failed');
    expect(errorOutcome(new StepError('RoleNotOwnedYet', 'm', 'terminal')).state).toBe('Failed');
    expect(errorOutcome(new StepError('Taken', 'm', 'conflict')).state).toBe('Conflict');
  });

  it('keeps the external code in the message and what the step found', () => {
    const err = new StepError('RoleNotOwned', 'not ours', 'conflict', {
      code: 'X',
      result: { roleName: 'r', roleArn: 'arn:r' },
    });
    expect(errorOutcome(err)).toMatchObject({ message: 'X: not ours', result: { roleName: 'r', roleArn: 'arn:r' } });
  });

  it('anything unclassified is a retryable failure', () => {
    expect(errorOutcome(new Error('boom'))).toEqual({
      state: 'Failed',
      reason: 'Error',
      message: 'boom',
      writes: 0,
      retryable: true,
    });
  });
});

describe('IAM adapter: AWS error → IamError with its code, kind and class', () => {
  it.each([
    [
      sdkError('MalformedPolicyDocumentException', 400),
      'MalformedPolicyDocument',
      'terminal',
      'terminal',
      'IamRejected',
    ],
    [sdkError('LimitExceededException', 409), 'LimitExceeded', 'terminal', 'terminal', 'IamRejected'],
    [sdkError('AccessDeniedException', 403), 'AccessDenied', 'terminal', 'terminal', 'IamRejected'],
    [sdkError('ThrottlingException', 400), 'ThrottlingException', 'throttled', 'retryable', 'IamThrottled'],
    [sdkError('ServiceFailureException', 500), 'ServiceFailure', 'unavailable', 'retryable', 'IamUnavailable'],
    [sdkError('NoSuchEntityException', 404), 'NoSuchEntity', 'not-found', 'retryable', 'IamNotFound'],
    [sdkError('EntityAlreadyExistsException', 409), 'EntityAlreadyExists', 'other', 'retryable', 'IamError'],
    [sdkError('Error', undefined, { code: 'ECONNRESET' }), 'ECONNRESET', 'unavailable', 'retryable', 'IamUnavailable'],
  ] as const)('%s → %s (%s, %s)', (err, code, kind, errorClass, reason) => {
    const e = toIamError(err, 'PutRolePolicy');
    expect(e).toBeInstanceOf(IamError);
    expect(e).toBeInstanceOf(StepError);
    expect(e).toMatchObject({ code, kind, errorClass, reason, operation: 'PutRolePolicy' });
    expect(e.retryable).toBe(errorClass === 'retryable');
  });

  it('an IamError passes through unchanged', () => {
    const e = toIamError(sdkError('MalformedPolicyDocumentException', 400), 'PutRolePolicy');
    expect(toIamError(e, 'Other')).toBe(e);
  });
});

describe('Kubernetes writes: HTTP status → class (in the step: the client carries no class)', () => {
  it.each([
    [422, 'Invalid', 'Invalid', 'terminal'],
    [400, 'BadRequest', 'ApplyFailed', 'terminal'],
    [403, 'Forbidden', 'Forbidden', 'retryable'],
    [409, 'Conflict', 'ApplyFailed', 'retryable'],
    [429, 'TooManyRequests', 'ApplyFailed', 'retryable'],
    [503, 'ServiceUnavailable', 'ApplyFailed', 'retryable'],
  ] as const)('HTTP %s → %s (%s)', (status, apiReason, reason, errorClass) => {
    const e = kubeWriteError(new KubeStatusError(status, apiReason, 'm'));
    expect(e).toBeInstanceOf(StepError);
    expect(e).toMatchObject({ reason, errorClass, code: `HTTP${status}` });
  });

  it('a write into a terminating namespace is retried', () => {
    const e = kubeWriteError(new KubeStatusError(403, 'Forbidden', 'namespace x is being terminated'));
    expect(e).toMatchObject({ reason: 'Terminating', errorClass: 'retryable' });
  });

  it('anything else passes through for settle to report', () => {
    const other = new Error('socket hang up');
    expect(kubeWriteError(other)).toBe(other);
    expect(kubeReadError(other)).toBe(other);
  });

  it('a refused delete names the verb', () => {
    expect(kubeWriteError(new KubeStatusError(400, 'BadRequest', 'm'), 'Delete')).toMatchObject({
      reason: 'DeleteFailed',
      errorClass: 'terminal',
    });
  });

  it.each([
    [403, 'Forbidden', 'Forbidden'],
    [410, 'Expired', 'ReadFailed'],
    [500, 'InternalError', 'ReadFailed'],
  ] as const)('a refused read (HTTP %s %s) is retried: %s', (status, apiReason, reason) => {
    expect(kubeReadError(new KubeStatusError(status, apiReason, 'm'))).toMatchObject({
      reason,
      errorClass: 'retryable',
      code: `HTTP${status}`,
    });
  });

  it('the step reports a refused read as a classified failure, not an unexpected error', async () => {
    const step = new KubernetesStep({
      kube: {
        list: async () => {
          throw new KubeStatusError(403, 'Forbidden', 'namespaces is forbidden');
        },
        get: async () => undefined,
      } as unknown as KubeApi,
    });
    expect(await step.ensure(ctx())).toMatchObject({
      state: 'Failed',
      reason: 'Forbidden',
      retryable: true,
      message: 'HTTP403: namespaces is forbidden',
    });
  });
});

describe('steps raise a conflict for what is not theirs', () => {
  function fakeKube(existing: (ref: { kind: string; name: string }) => KubeObject | undefined): KubeApi {
    return {
      list: async () => [],
      get: async (ref: { kind: string; name: string }) => existing(ref),
    } as unknown as KubeApi;
  }

  it('Kubernetes: a namespace with our name that is not labelled for this workspace', async () => {
    const c = ctx();
    const step = new KubernetesStep({
      kube: fakeKube((ref) =>
        ref.kind === 'Namespace'
          ? { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ref.name, labels: { team: 'x' } } }
          : undefined,
      ),
    });
    const out = await step.ensure(c);
    expect(out).toMatchObject({ state: 'Conflict', reason: 'ForeignObjectConflict', retryable: false, writes: 0 });
    expect(c.changes).toEqual([]);
  });

  it('Kubernetes: our namespace claimed by another workspace ConfigMap that still exists', async () => {
    const ours = { [MANAGED_BY_LABEL]: cfg.fieldManager, [WORKSPACE_ID_LABEL]: 'ws1' };
    const step = new KubernetesStep({
      kube: fakeKube((ref) =>
        ref.kind === 'Namespace'
          ? {
              apiVersion: 'v1',
              kind: 'Namespace',
              metadata: { name: ref.name, labels: ours, annotations: { [SOURCE_ANNOTATION]: 'other/cm' } },
            }
          : undefined,
      ),
      sourceExists: () => true,
    });
    expect(await step.ensure(ctx())).toMatchObject({ state: 'Conflict', reason: 'WorkspaceClaimConflict' });
  });

  it('IAM: a role with our name and no managed-by tag; the outcome names the role found', async () => {
    const c = ctx();
    const role: IamRole = {
      name: c.names.iamRole,
      arn: `arn:aws:iam::123456789012:role/${c.names.iamRole}`,
      path: cfg.aws.rolePath,
      trustPolicy: '{}',
      tags: {},
    };
    const api = { getRole: async () => role } as unknown as IamApi;
    const out = await new IamStep({ api }).ensure(c);
    expect(out).toMatchObject({
      state: 'Conflict',
      reason: 'RoleNotOwned',
      retryable: false,
      writes: 0,
      result: { roleName: role.name, roleArn: role.arn },
    });
  });

  it('Flyte: a project with our id labelled for another workspace', async () => {
    const c = ctx();
    const project = {
      id: c.names.flyteProject,
      name: 'theirs',
      state: 0,
      labels: { values: { [MANAGED_BY_LABEL]: cfg.fieldManager, [WORKSPACE_ID_LABEL]: 'other' } },
    } as unknown as Project;
    const api = {
      getDomains: async () => [...cfg.domains],
      getProject: async () => project,
    } as unknown as FlyteAdminApi;
    api.withBudget = () => api;
    const out = await new FlyteStep(api).ensure(c);
    expect(out).toMatchObject({ state: 'Conflict', reason: 'FlyteProjectConflict', retryable: false, writes: 0 });
  });
});

describe('step results in status: the details keep the shape every controller version wrote', () => {
  const recorded: Record<string, Record<string, string>> = {
    kubernetes: {
      namespaces: 'flyte-ws1,flyte-ws1-dev',
      serviceAccount: 'flyte-ws1-runner',
      contextConfigMap: 'workspace-context',
      roleBindings: '2',
    },
    iam: { roleName: 'FlyteWorkspace-ws1-Role', roleArn: 'arn:aws:iam::1:role/x', desiredHash: 'h' },
    flyte: {
      projectId: 'ws1',
      consoleUrl: 'http://c/console/projects/ws1',
      projectState: 'ACTIVE',
      domains: 'development,staging,production',
      desiredHash: 'h',
    },
  };

  it('typed results serialize to exactly those records', () => {
    expect(
      JSON.stringify(
        stepDetails({
          namespaces: ['flyte-ws1', 'flyte-ws1-dev'],
          serviceAccount: 'flyte-ws1-runner',
          contextConfigMap: 'workspace-context',
          roleBindings: 2,
        }),
      ),
    ).toBe(JSON.stringify(recorded.kubernetes));
    expect(stepResultOf(recorded.flyte as Record<string, string>).domains).toEqual([
      'development',
      'staging',
      'production',
    ]);
    expect(stepResultOf(recorded.kubernetes as Record<string, string>).roleBindings).toBe(2);
  });

  it('a recorded status reads back and writes out byte for byte, keys unknown to this version included', () => {
    for (const details of [...Object.values(recorded), { roleArn: 'a', addedLater: 'x' }, { namespaces: '' }]) {
      expect(JSON.stringify(stepDetails(stepResultOf(details)))).toBe(JSON.stringify(details));
    }
  });
});
