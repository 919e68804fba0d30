// IAM adapter: a small interface in domain terms (what the IAM step and the orphan sweep need) and its
// implementation over @aws-sdk/client-iam.
//
// IAM's request limits are per account, shared with Terraform, people and other controllers, so this
// adapter spends a budget of its own on top of the SDK's retries:
//   * at most `maxConcurrentCalls` (cfg.aws.maxConcurrentCalls) logical calls in flight, retries included,
//   * a token bucket (default 5 requests/s, burst 10) charged per HTTP attempt, retries included.
// The SDK retries throttling and 5xx in adaptive mode (cfg.aws.maxAttempts); errors that retrying cannot
// fix (malformed policy, quota, validation, access denied) are never retried. Every failure reaches the
// step as an IamError: the AWS error code, and the class (terminal or retryable) decided here.
import {
  CreateRoleCommand,
  DeleteRoleCommand,
  DeleteRolePermissionsBoundaryCommand,
  DeleteRolePolicyCommand,
  DetachRolePolicyCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
  IAMClient,
  type IAMClientConfig,
  ListAttachedRolePoliciesCommand,
  ListRolePoliciesCommand,
  ListRolesCommand,
  ListRoleTagsCommand,
  PutRolePermissionsBoundaryCommand,
  PutRolePolicyCommand,
  type Role,
  TagRoleCommand,
  UntagRoleCommand,
  UpdateAssumeRolePolicyCommand,
  UpdateRoleCommand,
} from '@aws-sdk/client-iam';
import type { ControllerConfig } from '../config/config.js';
import { decodePolicyText } from '../desired/iam-policy.js';
import { type ErrorClass, StepError } from '../kinds/step.js';
import type { Metrics } from '../metrics/metrics.js';
import { Semaphore } from '../ratelimit/semaphore.js';
import { TokenBucket } from '../ratelimit/token-bucket.js';
import { CallStats } from './call-stats.js';

// ---- Domain types -------------------------------------------------------------------------------------

export interface IamRole {
  name: string;
  arn: string;
  path: string;
  roleId?: string;
  /** Trust policy as JSON text (already URL-decoded). */
  trustPolicy: string;
  description?: string;
  maxSessionDuration?: number;
  permissionsBoundaryArn?: string;
  tags: Record<string, string>;
  createdAt?: Date;
}

/** What ListRoles returns: no tags (IAM does not include them there). */
export interface IamRoleSummary {
  name: string;
  arn: string;
  path: string;
  createdAt?: Date;
}

export interface CreateRoleInput {
  name: string;
  path: string;
  trustPolicy: string;
  description?: string;
  maxSessionDuration?: number;
  tags: Record<string, string>;
  permissionsBoundaryArn?: string;
}

export interface AttachedPolicy {
  name: string;
  arn: string;
}

export interface IamApi {
  readonly stats: CallStats;
  /** undefined when the role does not exist. */
  getRole(name: string): Promise<IamRole | undefined>;
  createRole(input: CreateRoleInput): Promise<IamRole>;
  updateAssumeRolePolicy(name: string, policy: string): Promise<void>;
  /** Description and/or maximum session duration (UpdateRole). */
  updateRole(name: string, settings: { description?: string; maxSessionDuration?: number }): Promise<void>;
  listRolePolicies(name: string): Promise<string[]>;
  /** Policy JSON text (URL-decoded); undefined when the policy does not exist. */
  getRolePolicy(name: string, policyName: string): Promise<string | undefined>;
  putRolePolicy(name: string, policyName: string, policy: string): Promise<void>;
  deleteRolePolicy(name: string, policyName: string): Promise<void>;
  listRoleTags(name: string): Promise<Record<string, string>>;
  tagRole(name: string, tags: Record<string, string>): Promise<void>;
  untagRole(name: string, keys: string[]): Promise<void>;
  putRolePermissionsBoundary(name: string, policyArn: string): Promise<void>;
  deleteRolePermissionsBoundary(name: string): Promise<void>;
  listAttachedRolePolicies(name: string): Promise<AttachedPolicy[]>;
  detachRolePolicy(name: string, policyArn: string): Promise<void>;
  deleteRole(name: string): Promise<void>;
  /** Every role under `pathPrefix`, all pages. */
  listRoles(pathPrefix: string): Promise<IamRoleSummary[]>;
}

// ---- Errors -------------------------------------------------------------------------------------------

const THROTTLING_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
]);
const UNAVAILABLE_CODES = new Set([
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'ServiceFailure',
  'InternalFailure',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);
/** Errors retrying cannot fix: a person has to change the input, the quota or the permissions. */
const TERMINAL_CODES = new Set([
  'MalformedPolicyDocument',
  'LimitExceeded',
  'InvalidInput',
  'ValidationError',
  'AccessDenied',
  'UnmodifiableEntity',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

/** What went wrong, in IAM's terms; only `terminal` is not worth retrying. */
export type IamErrorKind = 'throttled' | 'unavailable' | 'terminal' | 'not-found' | 'other';

/** An IAM call failed; `code` is the AWS error code (e.g. MalformedPolicyDocument, NoSuchEntity). */
export class IamError extends StepError {
  constructor(
    reason: string,
    message: string,
    override readonly code: string,
    readonly kind: IamErrorKind,
    readonly operation: string,
    readonly httpStatus?: number,
  ) {
    super(reason, message, iamErrorClass(kind), { code });
    this.name = 'IamError';
  }
}

/**
 * EntityAlreadyExists, DeleteConflict, ConcurrentModification, expired credentials…: the next reconcile
 * reads state again and usually gets past them; the work queue backs off meanwhile.
 */
export function iamErrorClass(kind: IamErrorKind): ErrorClass {
  return kind === 'terminal' ? 'terminal' : 'retryable';
}

export function isNoSuchEntity(err: unknown): boolean {
  return err instanceof IamError ? err.code === 'NoSuchEntity' : awsErrorCode(err) === 'NoSuchEntity';
}

/**
 * The AWS error code of an SDK error: the query protocol's `<Code>` (e.g. `NoSuchEntity`), falling back
 * to the exception name without its `Exception` suffix, then a Node network error code.
 */
export function awsErrorCode(err: unknown): string {
  if (!err || typeof err !== 'object') return 'Unknown';
  const e = err as { Code?: unknown; Error?: { Code?: unknown }; name?: unknown; code?: unknown };
  if (typeof e.Code === 'string' && e.Code) return e.Code;
  if (typeof e.Error?.Code === 'string' && e.Error.Code) return e.Error.Code;
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
  if (typeof e.name === 'string' && e.name && e.name !== 'Error') {
    return e.name.endsWith('Exception') && e.name !== 'ThrottlingException' ? e.name.slice(0, -9) : e.name;
  }
  if (typeof e.code === 'string' && e.code) return e.code;
  return 'Unknown';
}

function httpStatusOf(err: unknown): number | undefined {
  const s = (err as { $metadata?: { httpStatusCode?: unknown } } | undefined)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

export function iamErrorKind(err: unknown): IamErrorKind {
  const code = awsErrorCode(err);
  const status = httpStatusOf(err);
  if (TERMINAL_CODES.has(code)) return 'terminal';
  if (code === 'NoSuchEntity') return 'not-found';
  if (THROTTLING_CODES.has(code) || status === 429) return 'throttled';
  if (UNAVAILABLE_CODES.has(code) || NETWORK_CODES.has(code) || (status !== undefined && status >= 500)) {
    return 'unavailable';
  }
  // No HTTP response at all: the request never got an answer (connection, DNS, socket).
  if (status === undefined && !(err as { $fault?: unknown })?.$fault) return 'unavailable';
  return 'other';
}

const REASON_OF: Record<IamErrorKind, string> = {
  terminal: 'IamRejected',
  throttled: 'IamThrottled',
  unavailable: 'IamUnavailable',
  'not-found': 'IamNotFound',
  other: 'IamError',
};

/** Turns whatever the SDK threw into an IamError with the AWS code, its kind and class. */
export function toIamError(err: unknown, operation: string): IamError {
  if (err instanceof IamError) return err;
  const kind = iamErrorKind(err);
  const detail = err instanceof Error ? err.message : String(err);
  const message = `IAM ${operation} failed: ${detail}`;
  return new IamError(REASON_OF[kind], message, awsErrorCode(err), kind, operation, httpStatusOf(err));
}

// ---- SDK implementation ------------------------------------------------------------------------------

export interface SdkIamApiOptions {
  /** Region, endpoint, retries and the request budget come from `aws`. */
  cfg: Pick<ControllerConfig, 'aws'>;
  stats?: CallStats;
  metrics?: Metrics;
  /** Token bucket per HTTP attempt. Default cfg.aws.requestsPerSecond / cfg.aws.requestBurst. */
  requestsPerSecond?: number;
  burst?: number;
  /** Credentials for tests; otherwise the SDK's default chain (env, web identity/IRSA, pod identity, profile). */
  credentials?: IAMClientConfig['credentials'];
  /** Per-attempt HTTP timeout. Default 15 s. */
  requestTimeoutMs?: number;
  /** An already-configured client (tests); the budget middleware is added to it. */
  client?: IAMClient;
}

/** The subset of the SDK's RetryStrategyV2 we wrap (structural, to avoid importing SDK internals). */
interface RetryStrategyLike {
  acquireInitialRetryToken(scope: string): Promise<unknown>;
  refreshRetryTokenForRetry(token: unknown, errorInfo: { error?: unknown }): Promise<unknown>;
  recordSuccess(token: unknown): void;
  mode?: string;
}

export class SdkIamApi implements IamApi {
  readonly stats: CallStats;
  readonly client: IAMClient;
  readonly slots: Semaphore;
  readonly bucket: TokenBucket;

  constructor(opts: SdkIamApiOptions) {
    const { cfg } = opts;
    this.stats = opts.stats ?? new CallStats('iam', opts.metrics);
    this.slots = new Semaphore(cfg.aws.maxConcurrentCalls);
    this.bucket = new TokenBucket(
      opts.requestsPerSecond ?? cfg.aws.requestsPerSecond,
      opts.burst ?? cfg.aws.requestBurst,
    );
    const config: IAMClientConfig = {
      region: cfg.aws.region,
      retryMode: 'adaptive',
      maxAttempts: cfg.aws.maxAttempts,
      requestHandler: { requestTimeout: opts.requestTimeoutMs ?? 15_000, connectionTimeout: 5_000 },
    };
    if (cfg.aws.endpoint) config.endpoint = cfg.aws.endpoint;
    if (opts.credentials) config.credentials = opts.credentials;
    this.client = opts.client ?? new IAMClient(config);
    this.installBudget();
    this.installTerminalAwareRetries();
  }

  /** Charges one token per HTTP attempt: runs below the SDK's retry middleware, once per attempt. */
  private installBudget(): void {
    this.client.middlewareStack.add(
      (next) => async (args) => {
        await this.bucket.take();
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'iamRequestBudget', override: true },
    );
  }

  /**
   * The SDK's retry classification counts `LimitExceededException` as throttling (a name shared with other
   * services), but for IAM it is a quota (too many roles, policy too large): retrying only burns budget.
   * Wrap the SDK's adaptive strategy so our terminal errors end the retry loop at the first attempt.
   */
  private installTerminalAwareRetries(): void {
    const config = this.client.config as unknown as { retryStrategy: () => Promise<RetryStrategyLike> };
    const sdkStrategy = config.retryStrategy;
    let wrapped: Promise<RetryStrategyLike> | undefined;
    config.retryStrategy = () =>
      (wrapped ??= sdkStrategy().then(
        (inner): RetryStrategyLike => ({
          mode: inner.mode,
          acquireInitialRetryToken: (scope) => inner.acquireInitialRetryToken(scope),
          refreshRetryTokenForRetry: async (token, info) => {
            if (iamErrorKind(info.error) === 'terminal') throw new Error('not retryable');
            return inner.refreshRetryTokenForRetry(token, info);
          },
          recordSuccess: (token) => inner.recordSuccess(token),
        }),
      ));
  }

  private async call<T>(operation: string, write: boolean, fn: () => Promise<T>): Promise<T> {
    try {
      // Waiting for a slot is not part of the call: the latency metric measures IAM (and the bucket).
      return await this.slots.run(() => this.stats.track(operation, write, fn));
    } catch (err) {
      throw toIamError(err, operation);
    }
  }

  async getRole(name: string): Promise<IamRole | undefined> {
    try {
      const out = await this.call('GetRole', false, () => this.client.send(new GetRoleCommand({ RoleName: name })));
      if (!out.Role) throw new IamError('IamError', `IAM GetRole ${name}: empty response`, 'Empty', 'other', 'GetRole');
      return toIamRole(out.Role);
    } catch (err) {
      if (isNoSuchEntity(err)) return undefined;
      throw err;
    }
  }

  async createRole(input: CreateRoleInput): Promise<IamRole> {
    const out = await this.call('CreateRole', true, () =>
      this.client.send(
        new CreateRoleCommand({
          RoleName: input.name,
          Path: input.path,
          AssumeRolePolicyDocument: input.trustPolicy,
          Description: input.description,
          MaxSessionDuration: input.maxSessionDuration,
          PermissionsBoundary: input.permissionsBoundaryArn,
          Tags: Object.entries(input.tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      ),
    );
    if (!out.Role) {
      throw new IamError('IamError', `IAM CreateRole ${input.name}: empty response`, 'Empty', 'other', 'CreateRole');
    }
    return toIamRole(out.Role);
  }

  async updateAssumeRolePolicy(name: string, policy: string): Promise<void> {
    await this.call('UpdateAssumeRolePolicy', true, () =>
      this.client.send(new UpdateAssumeRolePolicyCommand({ RoleName: name, PolicyDocument: policy })),
    );
  }

  async updateRole(name: string, settings: { description?: string; maxSessionDuration?: number }): Promise<void> {
    await this.call('UpdateRole', true, () =>
      this.client.send(
        new UpdateRoleCommand({
          RoleName: name,
          Description: settings.description,
          MaxSessionDuration: settings.maxSessionDuration,
        }),
      ),
    );
  }

  async listRolePolicies(name: string): Promise<string[]> {
    const names: string[] = [];
    let marker: string | undefined;
    do {
      const out = await this.call('ListRolePolicies', false, () =>
        this.client.send(new ListRolePoliciesCommand({ RoleName: name, Marker: marker })),
      );
      names.push(...(out.PolicyNames ?? []));
      marker = out.IsTruncated ? out.Marker : undefined;
    } while (marker);
    return names;
  }

  async getRolePolicy(name: string, policyName: string): Promise<string | undefined> {
    try {
      const out = await this.call('GetRolePolicy', false, () =>
        this.client.send(new GetRolePolicyCommand({ RoleName: name, PolicyName: policyName })),
      );
      return decodePolicyText(out.PolicyDocument ?? '');
    } catch (err) {
      if (isNoSuchEntity(err)) return undefined;
      throw err;
    }
  }

  async putRolePolicy(name: string, policyName: string, policy: string): Promise<void> {
    await this.call('PutRolePolicy', true, () =>
      this.client.send(new PutRolePolicyCommand({ RoleName: name, PolicyName: policyName, PolicyDocument: policy })),
    );
  }

  async deleteRolePolicy(name: string, policyName: string): Promise<void> {
    await this.call('DeleteRolePolicy', true, () =>
      this.client.send(new DeleteRolePolicyCommand({ RoleName: name, PolicyName: policyName })),
    );
  }

  async listRoleTags(name: string): Promise<Record<string, string>> {
    const tags: Record<string, string> = {};
    let marker: string | undefined;
    do {
      const out = await this.call('ListRoleTags', false, () =>
        this.client.send(new ListRoleTagsCommand({ RoleName: name, Marker: marker })),
      );
      for (const t of out.Tags ?? []) if (t.Key !== undefined) tags[t.Key] = t.Value ?? '';
      marker = out.IsTruncated ? out.Marker : undefined;
    } while (marker);
    return tags;
  }

  async tagRole(name: string, tags: Record<string, string>): Promise<void> {
    await this.call('TagRole', true, () =>
      this.client.send(
        new TagRoleCommand({ RoleName: name, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }),
      ),
    );
  }

  async untagRole(name: string, keys: string[]): Promise<void> {
    await this.call('UntagRole', true, () => this.client.send(new UntagRoleCommand({ RoleName: name, TagKeys: keys })));
  }

  async putRolePermissionsBoundary(name: string, policyArn: string): Promise<void> {
    await this.call('PutRolePermissionsBoundary', true, () =>
      this.client.send(new PutRolePermissionsBoundaryCommand({ RoleName: name, PermissionsBoundary: policyArn })),
    );
  }

  async deleteRolePermissionsBoundary(name: string): Promise<void> {
    await this.call('DeleteRolePermissionsBoundary', true, () =>
      this.client.send(new DeleteRolePermissionsBoundaryCommand({ RoleName: name })),
    );
  }

  async listAttachedRolePolicies(name: string): Promise<AttachedPolicy[]> {
    const policies: AttachedPolicy[] = [];
    let marker: string | undefined;
    do {
      const out = await this.call('ListAttachedRolePolicies', false, () =>
        this.client.send(new ListAttachedRolePoliciesCommand({ RoleName: name, Marker: marker })),
      );
      for (const p of out.AttachedPolicies ?? []) {
        if (p.PolicyArn) policies.push({ name: p.PolicyName ?? p.PolicyArn, arn: p.PolicyArn });
      }
      marker = out.IsTruncated ? out.Marker : undefined;
    } while (marker);
    return policies;
  }

  async detachRolePolicy(name: string, policyArn: string): Promise<void> {
    await this.call('DetachRolePolicy', true, () =>
      this.client.send(new DetachRolePolicyCommand({ RoleName: name, PolicyArn: policyArn })),
    );
  }

  async deleteRole(name: string): Promise<void> {
    await this.call('DeleteRole', true, () => this.client.send(new DeleteRoleCommand({ RoleName: name })));
  }

  async listRoles(pathPrefix: string): Promise<IamRoleSummary[]> {
    const roles: IamRoleSummary[] = [];
    let marker: string | undefined;
    do {
      const out = await this.call('ListRoles', false, () =>
        this.client.send(new ListRolesCommand({ PathPrefix: pathPrefix, Marker: marker })),
      );
      for (const r of out.Roles ?? []) {
        if (!r.RoleName || !r.Arn) continue;
        const summary: IamRoleSummary = { name: r.RoleName, arn: r.Arn, path: r.Path ?? '/' };
        if (r.CreateDate) summary.createdAt = r.CreateDate;
        roles.push(summary);
      }
      marker = out.IsTruncated ? out.Marker : undefined;
    } while (marker);
    return roles;
  }

  destroy(): void {
    this.client.destroy();
  }
}

function toIamRole(r: Role): IamRole {
  const role: IamRole = {
    name: r.RoleName ?? '',
    arn: r.Arn ?? '',
    path: r.Path ?? '/',
    trustPolicy: r.AssumeRolePolicyDocument ? decodePolicyText(r.AssumeRolePolicyDocument) : '',
    tags: Object.fromEntries((r.Tags ?? []).filter((t) => t.Key !== undefined).map((t) => [t.Key, t.Value ?? ''])),
  };
  if (r.RoleId) role.roleId = r.RoleId;
  if (r.Description !== undefined) role.description = r.Description;
  if (r.MaxSessionDuration !== undefined) role.maxSessionDuration = r.MaxSessionDuration;
  if (r.PermissionsBoundary?.PermissionsBoundaryArn)
    role.permissionsBoundaryArn = r.PermissionsBoundary.PermissionsBoundaryArn;
  if (r.CreateDate) role.createdAt = r.CreateDate;
  return role;
}
