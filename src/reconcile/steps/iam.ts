// IAM step: one role per workspace, trusted by the workspace's runner ServiceAccount(s), with one inline
// policy scoped to the workspace bucket.
//
// Safety: a role is ours only if it carries managed-by=<fieldManager> and workspace-id=<this id>; any other
// role with our name is reported (RoleNotOwned) and never modified or deleted. Trust policies are always
// rewritten whole from the desired state, never merged into (Kubeflow's trust-policy clobbering), and
// they only ever name this workspace's ServiceAccount(s).
//
// Cost: every aspect (trust, inline policies, tags, boundary, description/max session) is compared
// semantically and written only when it differs, so a converged role costs zero writes. On top of that a
// per-workspace "verified" entry (desired-state hash + the ARN IAM returned + when it was last read)
// lets reconciles that do not change the IAM-relevant part of the spec skip IAM entirely until the entry
// is older than the drift-check interval (aws.driftCheckIntervalSeconds, stretched so that drift checks of
// all workspaces take at most half the IAM request budget: at thousands of workspaces re-reading every
// role each resync would take the whole budget and stall every other IAM call). Reconciles in between
// (user list edits, Kubernetes drift, resyncs) cost no IAM calls. A rerun (ctx.force), a plan
// (ctx.dryRun), any failure and any change of the desired state bypass or drop the entry. The entry lives
// in memory only: after a restart the first reconcile of each workspace reads IAM again (reads only, when
// converged).
import type { IamApi, IamRole } from '../../adapters/iam.js';
import { isNoSuchEntity } from '../../adapters/iam.js';
import type { ControllerConfig } from '../../config/config.js';
import {
  type DesiredIamRole,
  desiredIamRole,
  desiredRoleHash,
  IAM_TAG_MANAGED_BY,
  IAM_TAG_WORKSPACE_ID,
  roleOwnership,
  type TrustPolicyStrategy,
  trustStrategyFor,
} from '../../desired/iam.js';
import { policiesEqual } from '../../desired/iam-policy.js';
import {
  errorOutcome,
  type PlannedChange,
  recordedAsConverged,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepOutcome,
  spreadVerifiedAt,
  type WorkspaceStep,
} from '../types.js';

/** IAM reads one drift check of a converged role costs: GetRole, ListRolePolicies, GetRolePolicy. */
export const IAM_READS_PER_DRIFT_CHECK = 3;
/** Share of the IAM request budget that drift checks may take; the rest stays for changes. */
export const IAM_DRIFT_CHECK_BUDGET_SHARE = 0.5;

/**
 * How long a verified role is trusted before it is read again: the configured interval, or longer when
 * `workspaces` drift checks in that interval would take more than IAM_DRIFT_CHECK_BUDGET_SHARE of
 * aws.requestsPerSecond (5,000 workspaces at 5/s: 6,000 s).
 */
export function iamDriftCheckIntervalMs(cfg: ControllerConfig, workspaces: number): number {
  const budgetSeconds =
    (workspaces * IAM_READS_PER_DRIFT_CHECK) / (cfg.aws.requestsPerSecond * IAM_DRIFT_CHECK_BUDGET_SHARE);
  return Math.ceil(Math.max(cfg.aws.driftCheckIntervalSeconds, budgetSeconds) * 1000);
}

export interface IamStepOptions {
  api: IamApi;
  /** Trust strategy; default from cfg.aws.trustStrategy. */
  strategy?: TrustPolicyStrategy;
  /** How long a verified workspace is trusted without reading IAM (ms). Default: aws.driftCheckIntervalSeconds. */
  verifyTtlMs?: number | (() => number);
  now?: () => number;
  /**
   * Called per repaired aspect (trust-policy, inline-policy, tags, permissions-boundary, role-settings)
   * when the spec did not change (drift), e.g. for a metric; the caller adds any prefix such as `iam-`.
   */
  onDrift?: (kind: string) => void;
}

interface VerifiedEntry {
  hash: string;
  arn: string;
  roleName: string;
  verifiedAt: number;
}

/** Aspects of a role, as drift-metric kinds and plan details. */
type Aspect = 'trust-policy' | 'inline-policy' | 'tags' | 'permissions-boundary' | 'role-settings';

export class IamStep implements WorkspaceStep {
  readonly name = 'iam' as const;
  private readonly verified = new Map<string, VerifiedEntry>();
  private readonly now: () => number;

  constructor(private readonly opts: IamStepOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Forgets the verified entry of one workspace (or all): the next ensure reads IAM. */
  invalidate(workspaceId?: string): void {
    if (workspaceId === undefined) this.verified.clear();
    else this.verified.delete(workspaceId);
  }

  async ensure(ctx: StepContext): Promise<StepOutcome> {
    const { cfg } = ctx;
    let desired: DesiredIamRole;
    try {
      desired = desiredIamRole(cfg, ctx.spec, ctx.names, this.opts.strategy ?? trustStrategyFor(cfg.aws.trustStrategy));
    } catch (err) {
      // Only a configuration the validator let through can get here (e.g. an odd OIDC provider ARN).
      return errorOutcome(new StepError('InvalidIamConfig', (err as Error).message, false));
    }
    const hash = desiredRoleHash(desired);
    const ttlOption = this.opts.verifyTtlMs;
    const ttl = typeof ttlOption === 'function' ? ttlOption() : (ttlOption ?? cfg.aws.driftCheckIntervalSeconds * 1000);
    const cached = this.verified.get(ctx.workspaceId);
    if (!ctx.force && !ctx.dryRun && cached && cached.hash === hash && this.now() - cached.verifiedAt < ttl) {
      ctx.outputs.roleArn = cached.arn;
      return this.ready(desired.name, cached.arn, hash, 0, 'in sync (verified recently)');
    }
    const recordedArn = ctx.previous?.steps.iam?.details?.roleArn;
    if (!cached && recordedArn && recordedAsConverged(ctx, 'iam', hash)) {
      this.verified.set(ctx.workspaceId, {
        hash,
        arn: recordedArn,
        roleName: desired.name,
        verifiedAt: spreadVerifiedAt(this.now(), ttl),
      });
      ctx.outputs.roleArn = recordedArn;
      return this.ready(desired.name, recordedArn, hash, 0, 'in sync (as recorded in status)');
    }
    this.verified.delete(ctx.workspaceId);

    const progress = { writes: 0 };
    try {
      const outcome = await this.converge(ctx, desired, hash, progress);
      if (outcome.state === 'Ready' && !ctx.dryRun && outcome.details?.roleArn) {
        this.verified.set(ctx.workspaceId, {
          hash,
          arn: outcome.details.roleArn,
          roleName: desired.name,
          verifiedAt: this.now(),
        });
      }
      return outcome;
    } catch (err) {
      // Report the writes already made: a failure half-way is still a partial change.
      return { ...errorOutcome(err), writes: progress.writes };
    }
  }

  private async converge(
    ctx: StepContext,
    desired: DesiredIamRole,
    hash: string,
    progress: { writes: number },
  ): Promise<StepOutcome> {
    const { api } = this.opts;
    const target = `role ${desired.name}`;
    const live = await api.getRole(desired.name);

    if (!live) {
      const policyNames = Object.keys(desired.inlinePolicies);
      ctx.changes.push({ system: 'iam', action: 'create', target, detail: `path ${desired.path}` });
      for (const p of policyNames) {
        ctx.changes.push({ system: 'iam', action: 'create', target: `${target} inline policy ${p}` });
      }
      if (ctx.dryRun) {
        ctx.outputs.roleArn = desired.arn;
        return this.ready(
          desired.name,
          desired.arn,
          hash,
          0,
          `would create the role and ${policyNames.length} inline policy`,
        );
      }
      // Tags go in with CreateRole, so ownership is established atomically with the role itself.
      const input: Parameters<IamApi['createRole']>[0] = {
        name: desired.name,
        path: desired.path,
        trustPolicy: JSON.stringify(desired.trustPolicy),
        description: desired.description,
        maxSessionDuration: desired.maxSessionDuration,
        tags: desired.tags,
      };
      if (desired.permissionsBoundaryArn) input.permissionsBoundaryArn = desired.permissionsBoundaryArn;
      const created = await api.createRole(input);
      progress.writes++;
      for (const [name, doc] of Object.entries(desired.inlinePolicies)) {
        await api.putRolePolicy(desired.name, name, JSON.stringify(doc));
        progress.writes++;
      }
      ctx.log.info({ role: desired.name, arn: created.arn }, 'created IAM role');
      ctx.outputs.roleArn = created.arn;
      return this.ready(desired.name, created.arn, hash, progress.writes, 'created the role');
    }

    const ownership = roleOwnership(live.tags, ctx.cfg, ctx.workspaceId);
    if (ownership !== 'ours') return this.notOwned(live, ctx, ownership);

    if (live.path !== desired.path) {
      // A role's path cannot be changed; the name is unique across paths. Keep using the role IAM has.
      ctx.log.warn(
        { role: live.name, path: live.path, wanted: desired.path },
        'IAM role exists under another path (rolePath changed?); using it as is',
      );
    }

    const apply = async (aspect: Aspect, change: PlannedChange, write: () => Promise<void>) => {
      ctx.changes.push(change);
      if (ctx.dryRun) return;
      await write();
      progress.writes++;
      if (ctx.specUnchanged) this.opts.onDrift?.(aspect);
    };

    // Trust policy: replaced whole when it differs semantically.
    if (!policiesEqual(live.trustPolicy, desired.trustPolicy, { partition: ctx.cfg.aws.partition })) {
      await apply('trust-policy', { system: 'iam', action: 'update', target, detail: 'trust policy' }, () =>
        api.updateAssumeRolePolicy(desired.name, JSON.stringify(desired.trustPolicy)),
      );
    }

    // Description and maximum session duration: one UpdateRole for both.
    const settings: string[] = [];
    if ((live.description ?? '') !== desired.description) settings.push('description');
    if (live.maxSessionDuration !== desired.maxSessionDuration) settings.push('max session duration');
    if (settings.length > 0) {
      await apply('role-settings', { system: 'iam', action: 'update', target, detail: settings.join(', ') }, () =>
        api.updateRole(desired.name, {
          description: desired.description,
          maxSessionDuration: desired.maxSessionDuration,
        }),
      );
    }

    // Permissions boundary: add, change or remove.
    if (desired.permissionsBoundaryArn && live.permissionsBoundaryArn !== desired.permissionsBoundaryArn) {
      const boundary = desired.permissionsBoundaryArn;
      await apply(
        'permissions-boundary',
        { system: 'iam', action: 'update', target, detail: `permissions boundary ${boundary}` },
        () => api.putRolePermissionsBoundary(desired.name, boundary),
      );
    } else if (!desired.permissionsBoundaryArn && live.permissionsBoundaryArn) {
      await apply(
        'permissions-boundary',
        { system: 'iam', action: 'update', target, detail: 'remove permissions boundary' },
        () => api.deleteRolePermissionsBoundary(desired.name),
      );
    }

    // Tags: only our keys. Tags others add (cost allocation, org policies) are left alone; removing
    // them would start a fight with whoever adds them.
    const wrongTags = Object.fromEntries(Object.entries(desired.tags).filter(([k, v]) => live.tags[k] !== v));
    if (Object.keys(wrongTags).length > 0) {
      await apply(
        'tags',
        { system: 'iam', action: 'update', target, detail: `tags ${Object.keys(wrongTags).sort().join(', ')}` },
        () => api.tagRole(desired.name, wrongTags),
      );
    }

    // Inline policies: ours are put when missing or different; any other inline policy grants the
    // workspace something nobody asked for, so it is removed (after ours are in place).
    const liveNames = await api.listRolePolicies(desired.name);
    for (const [name, doc] of Object.entries(desired.inlinePolicies)) {
      const current = liveNames.includes(name) ? await api.getRolePolicy(desired.name, name) : undefined;
      if (current !== undefined && policiesEqual(current, doc, { partition: ctx.cfg.aws.partition })) continue;
      await apply(
        'inline-policy',
        {
          system: 'iam',
          action: current === undefined ? 'create' : 'update',
          target: `${target} inline policy ${name}`,
        },
        () => api.putRolePolicy(desired.name, name, JSON.stringify(doc)),
      );
    }
    for (const name of liveNames) {
      if (Object.hasOwn(desired.inlinePolicies, name)) continue;
      await apply('inline-policy', { system: 'iam', action: 'delete', target: `${target} inline policy ${name}` }, () =>
        api.deleteRolePolicy(desired.name, name),
      );
    }

    ctx.outputs.roleArn = live.arn;
    const planned = ctx.changes.filter((c) => c.system === 'iam').length;
    const message =
      progress.writes > 0
        ? `applied ${progress.writes} change(s)`
        : ctx.dryRun && planned > 0
          ? `would apply ${planned} change(s)`
          : 'in sync';
    return this.ready(desired.name, live.arn, hash, progress.writes, message);
  }

  async teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    this.verified.delete(ctx.workspaceId);
    const progress = { writes: 0 };
    try {
      const name = ctx.names.iamRole;
      const live = await this.opts.api.getRole(name);
      if (!live) return { state: 'Deleted', reason: 'Deleted', message: `role ${name} does not exist`, writes: 0 };
      const ownership = roleOwnership(live.tags, ctx.cfg, ctx.workspaceId);
      if (ownership !== 'ours') {
        // Not ours: leave it exactly as it is, and do not block the workspace's deletion on it.
        return {
          state: 'Skipped',
          reason: 'RoleNotOwned',
          message: `role ${name} is not managed for workspace ${ctx.workspaceId}; left untouched`,
          writes: 0,
          details: { roleName: name, roleArn: live.arn },
        };
      }
      const gone = await deleteOwnedRole(this.opts.api, live, ctx, progress);
      return {
        state: 'Deleted',
        reason: 'Deleted',
        message: gone ? `deleted role ${name}` : `would delete role ${name}`,
        writes: progress.writes,
      };
    } catch (err) {
      return { ...errorOutcome(err), writes: progress.writes };
    }
  }

  private notOwned(live: IamRole, ctx: StepContext, ownership: 'foreign' | 'other-workspace'): StepOutcome {
    const why =
      ownership === 'foreign'
        ? `it is not tagged ${IAM_TAG_MANAGED_BY}=${ctx.cfg.fieldManager}`
        : `it is tagged for workspace "${live.tags[IAM_TAG_WORKSPACE_ID]}"`;
    return {
      state: 'Conflict',
      reason: 'RoleNotOwned',
      message: `IAM role ${live.name} already exists and ${why}; refusing to modify it`,
      writes: 0,
      retryable: false,
      details: { roleName: live.name, roleArn: live.arn },
    };
  }

  private ready(roleName: string, roleArn: string, desiredHash: string, writes: number, message: string): StepOutcome {
    return {
      state: 'Ready',
      reason: writes > 0 ? 'Applied' : 'Synced',
      message,
      writes,
      // desiredHash lets a restarted controller trust this record (recordedAsConverged).
      details: { roleName, roleArn, desiredHash },
    };
  }
}

/**
 * Deletes a role we own: inline policies, attached managed policies, then the role (IAM refuses to
 * delete a role that still has either). NoSuchEntity at any point means someone got there first: fine.
 * Dry-run records the changes and writes nothing. Returns whether the role is gone (false in dry-run).
 */
export async function deleteOwnedRole(
  api: IamApi,
  role: Pick<IamRole, 'name'>,
  ctx: Pick<StepBaseContext, 'dryRun' | 'changes' | 'log'>,
  progress: { writes: number } = { writes: 0 },
): Promise<boolean> {
  const target = `role ${role.name}`;
  const tolerate = async (fn: () => Promise<void>) => {
    try {
      await fn();
      progress.writes++;
    } catch (err) {
      if (!isNoSuchEntity(err)) throw err;
    }
  };
  try {
    const inline = await api.listRolePolicies(role.name);
    const attached = await api.listAttachedRolePolicies(role.name);
    for (const p of inline) {
      ctx.changes.push({ system: 'iam', action: 'delete', target: `${target} inline policy ${p}` });
      if (!ctx.dryRun) await tolerate(() => api.deleteRolePolicy(role.name, p));
    }
    for (const p of attached) {
      ctx.changes.push({ system: 'iam', action: 'delete', target, detail: `detach managed policy ${p.arn}` });
      if (!ctx.dryRun) await tolerate(() => api.detachRolePolicy(role.name, p.arn));
    }
    ctx.changes.push({ system: 'iam', action: 'delete', target });
    if (ctx.dryRun) return false;
    await tolerate(() => api.deleteRole(role.name));
    ctx.log.info({ role: role.name }, 'deleted IAM role');
    return true;
  } catch (err) {
    if (isNoSuchEntity(err)) return true;
    throw err;
  }
}
