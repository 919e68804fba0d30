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
// per-workspace converged entry (ConvergedCache: desired-state hash + the ARN IAM returned + when it was
// last read) lets reconciles that do not change the IAM-relevant part of the spec skip IAM entirely until the entry
// is older than the drift-check interval (aws.driftCheckIntervalSeconds, stretched so that drift checks of
// all workspaces take at most half the IAM request budget: at thousands of workspaces re-reading every
// role each resync would take the whole budget and stall every other IAM call). Reconciles in between
// (user list edits, Kubernetes drift, resyncs) cost no IAM calls. A rerun (ctx.force), a plan
// (ctx.dryRun), any failure and any change of the desired state bypass or drop the entry. The entry lives
// in memory only: after a restart a status recording this desired state as Ready stands in for it, and
// the role is re-read at a random point within one interval.
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
import type { StepResult } from '../../kinds/step.js';
import { type StepBaseContext, type StepContext, StepError, type StepOutcome, type WorkspaceStep } from '../types.js';
import { ConvergedCache, type StepWriter, settle, stepWriter, type VerifiedTtl, verifiedTtlMs } from './scaffold.js';

/** IAM reads one drift check of a converged role costs: GetRole, ListRolePolicies, GetRolePolicy. */
export const IAM_READS_PER_DRIFT_CHECK = 3;
/** Share of the IAM request budget that drift checks may take; the rest stays for changes. */
export const IAM_DRIFT_CHECK_BUDGET_SHARE = 0.5;

/**
 * How long a verified role is trusted before it is read again: the configured interval, or longer when
 * `workspaces` drift checks in that interval would take more than IAM_DRIFT_CHECK_BUDGET_SHARE of
 * aws.requestsPerSecond (5,000 workspaces at 5/s: 6,000 s).
 */
export function iamDriftCheckIntervalMs(
  cfg: { aws: Pick<ControllerConfig['aws'], 'requestsPerSecond' | 'driftCheckIntervalSeconds'> },
  workspaces: number,
): number {
  const budgetSeconds =
    (workspaces * IAM_READS_PER_DRIFT_CHECK) / (cfg.aws.requestsPerSecond * IAM_DRIFT_CHECK_BUDGET_SHARE);
  return Math.ceil(Math.max(cfg.aws.driftCheckIntervalSeconds, budgetSeconds) * 1000);
}

export interface IamStepOptions {
  api: IamApi;
  /** Trust strategy; default from cfg.aws.trustStrategy. */
  strategy?: TrustPolicyStrategy;
  /** How long a verified workspace is trusted without reading IAM (ms). Default: aws.driftCheckIntervalSeconds. */
  verifiedTtlMs?: VerifiedTtl;
  now?: () => number;
  /** Where within one TTL a record trusted from status after a restart is re-read (tests). */
  random?: () => number;
  /**
   * Called per repaired aspect (trust-policy, inline-policy, tags, permissions-boundary, role-settings)
   * when the spec did not change (drift), e.g. for a metric; the caller adds any prefix such as `iam-`.
   */
  onDrift?: (kind: string) => void;
}

/** Aspects of a role, as drift-metric kinds and plan details. */
type Aspect = 'trust-policy' | 'inline-policy' | 'tags' | 'permissions-boundary' | 'role-settings';

export class IamStep implements WorkspaceStep {
  readonly name = 'iam' as const;
  /** Value: the ARN IAM returned. */
  private readonly converged: ConvergedCache<string>;

  constructor(private readonly opts: IamStepOptions) {
    this.converged = new ConvergedCache('iam', { now: opts.now, random: opts.random });
  }

  /** Forgets the converged entry of one workspace (or all): the next ensure reads IAM. */
  invalidate(workspaceId?: string): void {
    this.converged.forget(workspaceId);
  }

  async ensure(ctx: StepContext): Promise<StepOutcome> {
    const w = stepWriter(ctx, this.opts.onDrift);
    return settle(ctx, 'iam', w, async () => {
      const { cfg } = ctx;
      let desired: DesiredIamRole;
      try {
        desired = desiredIamRole(
          cfg,
          ctx.spec,
          ctx.names,
          this.opts.strategy ?? trustStrategyFor(cfg.aws.trustStrategy),
        );
      } catch (err) {
        // Only a configuration the validator let through can get here (e.g. an odd OIDC provider ARN).
        throw new StepError('InvalidIamConfig', (err as Error).message, 'terminal');
      }
      const hash = desiredRoleHash(desired);
      const ttl = verifiedTtlMs(this.opts.verifiedTtlMs, cfg.aws.driftCheckIntervalSeconds * 1000);
      const recordedArn = ctx.previous?.steps.iam?.details?.roleArn;
      const known = this.converged.lookup(ctx, hash, ttl, recordedArn);
      if (known) {
        ctx.outputs.roleArn = known.value;
        const why = known.from === 'verified' ? 'in sync (verified recently)' : 'in sync (as recorded in status)';
        return ready(desired.name, known.value, hash, 0, why);
      }
      const outcome = await this.converge(ctx, desired, hash, w);
      const arn = outcome.result?.roleArn;
      if (outcome.state === 'Ready' && !ctx.dryRun && arn) this.converged.verified(ctx.workspaceId, hash, arn);
      return outcome;
    });
  }

  private async converge(ctx: StepContext, desired: DesiredIamRole, hash: string, w: StepWriter): Promise<StepOutcome> {
    const { api } = this.opts;
    const target = `role ${desired.name}`;
    const live = await api.getRole(desired.name);

    if (!live) {
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
      let arn = desired.arn;
      await w.write({ system: 'iam', action: 'create', target, detail: `path ${desired.path}` }, async () => {
        arn = (await api.createRole(input)).arn;
      });
      for (const [name, doc] of Object.entries(desired.inlinePolicies)) {
        await w.write({ system: 'iam', action: 'create', target: `${target} inline policy ${name}` }, () =>
          api.putRolePolicy(desired.name, name, JSON.stringify(doc)),
        );
      }
      ctx.outputs.roleArn = arn;
      if (ctx.dryRun) {
        const policies = Object.keys(desired.inlinePolicies).length;
        return ready(desired.name, arn, hash, 0, `would create the role and ${policies} inline policy`);
      }
      ctx.log.info({ role: desired.name, arn }, 'created IAM role');
      return ready(desired.name, arn, hash, w.writes, 'created the role');
    }

    const ownership = roleOwnership(live.tags, ctx.cfg, ctx.workspaceId);
    if (ownership !== 'ours') throw notOwned(live, ctx, ownership);

    if (live.path !== desired.path) {
      // A role's path cannot be changed; the name is unique across paths. Keep using the role IAM has.
      ctx.log.warn(
        { role: live.name, path: live.path, wanted: desired.path },
        'IAM role exists under another path (rolePath changed?); using it as is',
      );
    }

    const update = (aspect: Aspect, detail: string, call: () => Promise<void>) =>
      w.write({ system: 'iam', action: 'update', target, detail }, call, { drift: aspect });

    // Trust policy: replaced whole when it differs semantically.
    if (!policiesEqual(live.trustPolicy, desired.trustPolicy, { partition: ctx.cfg.aws.partition })) {
      await update('trust-policy', 'trust policy', () =>
        api.updateAssumeRolePolicy(desired.name, JSON.stringify(desired.trustPolicy)),
      );
    }

    // Description and maximum session duration: one UpdateRole for both.
    const settings: string[] = [];
    if ((live.description ?? '') !== desired.description) settings.push('description');
    if (live.maxSessionDuration !== desired.maxSessionDuration) settings.push('max session duration');
    if (settings.length > 0) {
      await update('role-settings', settings.join(', '), () =>
        api.updateRole(desired.name, {
          description: desired.description,
          maxSessionDuration: desired.maxSessionDuration,
        }),
      );
    }

    // Permissions boundary: add, change or remove.
    if (desired.permissionsBoundaryArn && live.permissionsBoundaryArn !== desired.permissionsBoundaryArn) {
      const boundary = desired.permissionsBoundaryArn;
      await update('permissions-boundary', `permissions boundary ${boundary}`, () =>
        api.putRolePermissionsBoundary(desired.name, boundary),
      );
    } else if (!desired.permissionsBoundaryArn && live.permissionsBoundaryArn) {
      await update('permissions-boundary', 'remove permissions boundary', () =>
        api.deleteRolePermissionsBoundary(desired.name),
      );
    }

    // Tags: only our keys. Tags others add (cost allocation, org policies) are left alone; removing
    // them would start a fight with whoever adds them.
    const wrongTags = Object.fromEntries(Object.entries(desired.tags).filter(([k, v]) => live.tags[k] !== v));
    if (Object.keys(wrongTags).length > 0) {
      await update('tags', `tags ${Object.keys(wrongTags).sort().join(', ')}`, () =>
        api.tagRole(desired.name, wrongTags),
      );
    }

    // Inline policies: ours are put when missing or different; any other inline policy grants the
    // workspace something nobody asked for, so it is removed (after ours are in place).
    const liveNames = await api.listRolePolicies(desired.name);
    for (const [name, doc] of Object.entries(desired.inlinePolicies)) {
      const current = liveNames.includes(name) ? await api.getRolePolicy(desired.name, name) : undefined;
      if (current !== undefined && policiesEqual(current, doc, { partition: ctx.cfg.aws.partition })) continue;
      await w.write(
        {
          system: 'iam',
          action: current === undefined ? 'create' : 'update',
          target: `${target} inline policy ${name}`,
        },
        () => api.putRolePolicy(desired.name, name, JSON.stringify(doc)),
        { drift: 'inline-policy' },
      );
    }
    for (const name of liveNames) {
      if (Object.hasOwn(desired.inlinePolicies, name)) continue;
      await w.write(
        { system: 'iam', action: 'delete', target: `${target} inline policy ${name}` },
        () => api.deleteRolePolicy(desired.name, name),
        { drift: 'inline-policy' },
      );
    }

    ctx.outputs.roleArn = live.arn;
    const planned = ctx.changes.filter((c) => c.system === 'iam').length;
    const message =
      w.writes > 0
        ? `applied ${w.writes} change(s)`
        : ctx.dryRun && planned > 0
          ? `would apply ${planned} change(s)`
          : 'in sync';
    return ready(desired.name, live.arn, hash, w.writes, message);
  }

  async teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    this.converged.forget(ctx.workspaceId);
    const w = stepWriter(ctx);
    return settle(ctx, 'iam', w, async () => {
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
          result: { roleName: name, roleArn: live.arn },
        };
      }
      const gone = await deleteOwnedRole(this.opts.api, live, ctx, w);
      return {
        state: 'Deleted',
        reason: 'Deleted',
        message: gone ? `deleted role ${name}` : `would delete role ${name}`,
        writes: w.writes,
      };
    });
  }
}

/** A role with our name that is not ours: a conflict, never modified. */
function notOwned(live: IamRole, ctx: StepContext, ownership: 'foreign' | 'other-workspace'): StepError {
  const why =
    ownership === 'foreign'
      ? `it is not tagged ${IAM_TAG_MANAGED_BY}=${ctx.cfg.fieldManager}`
      : `it is tagged for workspace "${live.tags[IAM_TAG_WORKSPACE_ID]}"`;
  return new StepError(
    'RoleNotOwned',
    `IAM role ${live.name} already exists and ${why}; refusing to modify it`,
    'conflict',
    { result: { roleName: live.name, roleArn: live.arn } },
  );
}

function ready(roleName: string, roleArn: string, desiredHash: string, writes: number, message: string): StepOutcome {
  // desiredHash lets a restarted controller trust this record (recordedAsConverged).
  const result: StepResult = { roleName, roleArn, desiredHash };
  return { state: 'Ready', reason: writes > 0 ? 'Applied' : 'Synced', message, writes, result };
}

/**
 * Deletes a role we own: inline policies, attached managed policies, then the role (IAM refuses to
 * delete a role that still has either). NoSuchEntity at any point means someone got there first: fine.
 * Dry-run records the changes and writes nothing. Returns whether the role is gone (false in dry-run).
 */
export async function deleteOwnedRole(
  api: IamApi,
  role: Pick<IamRole, 'name'>,
  ctx: Pick<StepBaseContext, 'dryRun' | 'log'>,
  w: StepWriter,
): Promise<boolean> {
  const target = `role ${role.name}`;
  // Already gone is no write, and no failure.
  const tolerate = (call: () => Promise<void>) => async () => {
    try {
      await call();
      return 1;
    } catch (err) {
      if (!isNoSuchEntity(err)) throw err;
      return 0;
    }
  };
  try {
    const inline = await api.listRolePolicies(role.name);
    const attached = await api.listAttachedRolePolicies(role.name);
    for (const p of inline) {
      await w.write(
        { system: 'iam', action: 'delete', target: `${target} inline policy ${p}` },
        tolerate(() => api.deleteRolePolicy(role.name, p)),
      );
    }
    for (const p of attached) {
      await w.write(
        { system: 'iam', action: 'delete', target, detail: `detach managed policy ${p.arn}` },
        tolerate(() => api.detachRolePolicy(role.name, p.arn)),
      );
    }
    await w.write(
      { system: 'iam', action: 'delete', target },
      tolerate(() => api.deleteRole(role.name)),
    );
    if (ctx.dryRun) return false;
    ctx.log.info({ role: role.name }, 'deleted IAM role');
    return true;
  } catch (err) {
    if (isNoSuchEntity(err)) return true;
    throw err;
  }
}
