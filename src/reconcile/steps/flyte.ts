// Flyte step: the workspace's FlyteAdmin project and its per-domain matchable attributes
// (WORKFLOW_EXECUTION_CONFIG, CLUSTER_RESOURCE). Writes only on semantic difference, never adopts a
// project that is not labelled as ours, and on teardown only archives the project. FlyteAdmin has no
// project delete, and an archived project already rejects executions and attribute calls. Attributes are
// never deleted: FlyteAdmin's DeleteProjectDomainAttributes(p, d, type) is a wildcard that also deletes
// the users' own workflow- and launch-plan-level rows of that project-domain. On re-add the project is
// unarchived and our project-domain rows are upserted, which touches no other level.
//
// Caching: a per-workspace "converged" record keyed by a hash of the whole desired Flyte state. While the
// hash is unchanged and the record is younger than `verifiedTtlMs`, ensure() makes no FlyteAdmin call at
// all; ctx.force, dry runs, a changed hash, an expired record, any error and teardown bypass or drop it,
// so drift made directly in FlyteAdmin is repaired within verifiedTtlMs (default
// flyte.driftCheckIntervalSeconds, 30 min: re-reading 7 things per workspace on every 10-minute resync
// would be ~60 reads/s against FlyteAdmin at 5,000 workspaces). After a restart, a status recording
// this desired state as Ready is trusted and re-read within one interval (recordedAsConverged).
import { Code, ConnectError } from '@connectrpc/connect';
import type { FlyteAdminApi } from '../../adapters/flyteadmin.js';
import type { ControllerConfig } from '../../config/config.js';
import {
  attributesDiff,
  attributesEqual,
  consoleUrl,
  type DesiredDomainAttributes,
  desiredFlyteState,
  flyteStateHash,
  labelProblems,
  ownsProject,
  projectDiff,
  resourceTypeName,
} from '../../desired/flyte.js';
import { roleArnFor } from '../../desired/iam-arn.js';
import type { MatchingAttributes } from '../../gen/flyteidl/admin/matchable_resource_pb.js';
import { InactiveProjectSchema, type Project, Project_ProjectState } from '../../gen/flyteidl/admin/project_pb.js';
import {
  type PlannedChange,
  recordedAsConverged,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepOutcome,
  spreadVerifiedAt,
  type WorkspaceStep,
} from '../types.js';

export interface FlyteStepOptions {
  /** Total time for all FlyteAdmin calls of one ensure/teardown. Default max(30 s, 3 × callTimeoutMs). */
  budgetMs?: number;
  /** How long a verified, unchanged workspace is trusted without reading FlyteAdmin. Default flyte.driftCheckIntervalSeconds; 0 = never. */
  verifiedTtlMs?: number;
  /** How long the GetDomains answer is reused. Default 10 min. */
  domainsTtlMs?: number;
  /** Called per repaired write (`project` or `attributes`) when the spec did not change (drift). */
  onDrift?: (kind: string) => void;
  now?: () => number;
}

const STATE_NAMES: Record<number, string> = {
  [Project_ProjectState.ACTIVE]: 'ACTIVE',
  [Project_ProjectState.ARCHIVED]: 'ARCHIVED',
  [Project_ProjectState.SYSTEM_GENERATED]: 'SYSTEM_GENERATED',
  [Project_ProjectState.SYSTEM_ARCHIVED]: 'SYSTEM_ARCHIVED',
};
const stateName = (s: Project_ProjectState) => STATE_NAMES[s] ?? String(s);

export class FlyteStep implements WorkspaceStep {
  readonly name = 'flyte' as const;
  private readonly converged = new Map<string, { hash: string; at: number }>();
  private domainCache?: { domains: string[]; at: number };
  private domainsInFlight?: Promise<string[]>;

  constructor(
    private readonly api: FlyteAdminApi,
    private readonly opts: FlyteStepOptions = {},
  ) {}

  /** Forgets the converged record of one workspace (or all), e.g. after an out-of-band change. */
  invalidate(workspaceId?: string): void {
    if (workspaceId === undefined) this.converged.clear();
    else this.converged.delete(workspaceId);
  }

  async ensure(ctx: StepContext): Promise<StepOutcome> {
    const { cfg } = ctx;
    const id = ctx.names.flyteProject;
    const api = this.api.withBudget(this.budgetMs(cfg));
    try {
      const domains = await this.domains(ctx, api);
      ctx.outputs.flyteDomains = domains;
      const roleArn = ctx.outputs.roleArn ?? roleArnFor(cfg, ctx.names.iamRole);
      const desired = desiredFlyteState({ cfg, spec: ctx.spec, names: ctx.names, roleArn, domains });
      const problems = labelProblems(desired.project.labels);
      if (problems.length > 0) {
        throw new StepError('FlyteInvalidArgument', `project labels rejected: ${problems.join('; ')}`, false);
      }
      const hash = flyteStateHash(desired);
      // The same details on the cached path as on a full verification: they end up in the status, and a
      // difference would rewrite the status on every switch between the two paths.
      // desiredHash lets a restarted controller trust this record (recordedAsConverged).
      const details = {
        projectId: id,
        consoleUrl: consoleUrl(cfg, id),
        projectState: 'ACTIVE',
        domains: domains.join(','),
        desiredHash: hash,
      };

      const seen = this.converged.get(ctx.workspaceId);
      const ttl = this.verifiedTtlMs(cfg);
      if (!seen && ttl > 0 && recordedAsConverged(ctx, 'flyte', hash)) {
        this.converged.set(ctx.workspaceId, { hash, at: spreadVerifiedAt(this.now(), ttl) });
        return {
          state: 'Ready',
          reason: 'UpToDate',
          message: 'Flyte project as recorded in status',
          writes: 0,
          details,
        };
      }
      if (!ctx.force && !ctx.dryRun && seen?.hash === hash && this.now() - seen.at < ttl) {
        return {
          state: 'Ready',
          reason: 'UpToDate',
          message: 'Flyte project unchanged since last verified',
          writes: 0,
          details,
        };
      }
      this.converged.delete(ctx.workspaceId);

      let writes = 0;
      const write = async (change: PlannedChange, fn: () => Promise<void>, kind: string) => {
        ctx.changes.push(change);
        if (ctx.dryRun) return;
        await fn();
        writes++;
        if (ctx.specUnchanged) this.opts.onDrift?.(kind);
      };
      const projectTarget = `Flyte project ${id}`;
      const fullProject = (state: Project_ProjectState) => ({
        id,
        name: desired.project.name,
        description: desired.project.description,
        labels: { values: { ...desired.project.labels } },
        state,
      });

      // 1. The project: register, or converge the one that is ours.
      let live = await api.getProject(id);
      let fresh = false;
      if (!live) {
        ctx.changes.push({ system: 'flyte', action: 'create', target: projectTarget });
        if (!ctx.dryRun) {
          try {
            await api.registerProject(fullProject(Project_ProjectState.ACTIVE));
            writes++;
            fresh = true;
          } catch (err) {
            if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
            // Lost a race (or an earlier attempt timed out after the server committed): read and converge.
            ctx.changes.pop();
            live = await api.getProject(id);
            if (!live) throw new StepError('FlyteUnavailable', `project ${id} exists but cannot be read yet`, true);
          }
        } else {
          fresh = true;
        }
      }
      if (live) {
        this.checkOwned(live, ctx);
        const diffs = projectDiff(live, desired.project);
        if (diffs.length > 0) {
          const action = live.state === Project_ProjectState.ACTIVE ? 'update' : 'unarchive';
          // Always the FULL project with state: FlyteAdmin writes state on every update.
          await write(
            { system: 'flyte', action, target: projectTarget, detail: diffs.join(', ') },
            () => api.updateProject(fullProject(Project_ProjectState.ACTIVE)),
            'project',
          );
        }
      }

      // 2. Attributes per domain and type. A project registered just now has none, so no reads then;
      // in a dry run an inactive project cannot be read (FlyteAdmin rejects it), so all are planned.
      const cannotRead = fresh || (ctx.dryRun && live !== undefined && live.state !== Project_ProjectState.ACTIVE);
      const liveAttrs = cannotRead
        ? desired.attributes.map(() => undefined)
        : await settleAll(desired.attributes.map((a) => this.readOwnRow(api, id, a)));
      const pending: { change: PlannedChange; attrs: DesiredDomainAttributes }[] = [];
      desired.attributes.forEach((a, i) => {
        const current = liveAttrs[i];
        if (attributesEqual(current, a.attributes)) return;
        const change: PlannedChange = {
          system: 'flyte',
          action: current ? 'update' : 'create',
          target: `Flyte ${resourceTypeName(a.resourceType)} ${id}/${a.domain}`,
        };
        if (current) change.detail = attributesDiff(current, a.attributes).join(', ');
        pending.push({ change, attrs: a });
      });
      await settleAll(
        pending.map(({ change, attrs }) =>
          write(change, () => api.updateProjectDomainAttributes(id, attrs.domain, attrs.attributes), 'attributes'),
        ),
      );

      if (!ctx.dryRun) this.converged.set(ctx.workspaceId, { hash, at: this.now() });
      return {
        state: 'Ready',
        reason: writes > 0 ? 'Applied' : 'UpToDate',
        message: writes > 0 ? `applied ${writes} FlyteAdmin change(s)` : 'Flyte project and attributes up to date',
        writes,
        details,
      };
    } catch (err) {
      this.converged.delete(ctx.workspaceId);
      throw toStepError(err);
    }
  }

  async teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    const { cfg } = ctx;
    const id = ctx.names.flyteProject;
    this.converged.delete(ctx.workspaceId);
    const api = this.api.withBudget(this.budgetMs(cfg));
    const details = { projectId: id, consoleUrl: consoleUrl(cfg, id) };
    try {
      const live = await api.getProject(id);
      if (!live) {
        return {
          state: 'Deleted',
          reason: 'ProjectNotFound',
          message: 'no Flyte project to archive',
          writes: 0,
          details,
        };
      }
      if (!ownsProject(live, cfg, ctx.workspaceId)) {
        return {
          state: 'Skipped',
          reason: 'FlyteProjectNotOwned',
          message: `Flyte project ${id} is not managed for workspace ${ctx.workspaceId}; left untouched`,
          writes: 0,
          details: { ...details, projectState: stateName(live.state) },
        };
      }
      let writes = 0;
      const write = async (change: PlannedChange, fn: () => Promise<void>) => {
        ctx.changes.push(change);
        if (ctx.dryRun) return;
        await fn();
        writes++;
      };
      // Attributes stay: see the header (a delete would also take the users' workflow-level overrides).
      const archivedAlready =
        live.state === Project_ProjectState.ARCHIVED || live.state === Project_ProjectState.SYSTEM_ARCHIVED;
      if (!archivedAlready) {
        await write({ system: 'flyte', action: 'archive', target: `Flyte project ${id}` }, () =>
          archiveProject(api, live),
        );
      }
      return {
        state: 'Deleted',
        reason: archivedAlready ? 'AlreadyArchived' : 'Archived',
        message: archivedAlready
          ? `Flyte project ${id} is archived`
          : `Flyte project ${id} archived (its attributes are kept for a re-add)`,
        writes,
        details: { ...details, projectState: ctx.dryRun ? stateName(live.state) : 'ARCHIVED' },
      };
    } catch (err) {
      throw toStepError(err);
    }
  }

  /** The project-domain row of that type, ignoring the project-level fallback FlyteAdmin may answer. */
  private async readOwnRow(
    api: FlyteAdminApi,
    project: string,
    a: Pick<DesiredDomainAttributes, 'domain' | 'resourceType'>,
  ): Promise<MatchingAttributes | undefined> {
    const row = await api.getProjectDomainAttributes(project, a.domain, a.resourceType);
    if (!row || row.domain !== a.domain || row.project !== project) return undefined;
    return row.matchingAttributes;
  }

  private checkOwned(live: Project, ctx: StepContext): void {
    if (ownsProject(live, ctx.cfg, ctx.workspaceId)) return;
    throw new StepError(
      'FlyteProjectConflict',
      `Flyte project ${live.id} already exists and is not managed for workspace ${ctx.workspaceId}; refusing to adopt it`,
      false,
    );
  }

  private async domains(ctx: StepBaseContext, api: FlyteAdminApi): Promise<string[]> {
    const { cfg } = ctx;
    if (!cfg.flyte.discoverDomains) return [...cfg.domains];
    const c = this.domainCache;
    if (c && !ctx.force && this.now() - c.at < (this.opts.domainsTtlMs ?? 600_000)) return [...c.domains];
    try {
      // One GetDomains for every step waiting on it (after a restart, all workspaces at once).
      this.domainsInFlight ??= api.getDomains().finally(() => {
        this.domainsInFlight = undefined;
      });
      const found = await this.domainsInFlight;
      const domains = found.length > 0 ? found : [...cfg.domains];
      this.domainCache = { domains, at: this.now() };
      return [...domains];
    } catch (err) {
      if (!c) throw err;
      ctx.log.warn({ err: (err as Error).message }, 'FlyteAdmin GetDomains failed; using the last known domains');
      return [...c.domains];
    }
  }

  private budgetMs(cfg: ControllerConfig): number {
    return this.opts.budgetMs ?? Math.max(30_000, 3 * cfg.flyte.callTimeoutMs);
  }

  private verifiedTtlMs(cfg: ControllerConfig): number {
    return this.opts.verifiedTtlMs ?? cfg.flyte.driftCheckIntervalSeconds * 1000;
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }
}

/**
 * Archives `live` as it is: the FULL project with state ARCHIVED (FlyteAdmin writes every field that is
 * set, and state always). Attributes are left alone; see the header.
 */
export async function archiveProject(api: FlyteAdminApi, live: Project): Promise<void> {
  await api.updateProject({
    id: live.id,
    name: live.name,
    description: live.description,
    labels: { values: { ...(live.labels?.values ?? {}) } },
    state: Project_ProjectState.ARCHIVED,
  });
}

/**
 * Like Promise.all, but waits for every call to finish before failing, so no request of this step is
 * still running (or retrying) after the step returned.
 */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** gRPC code → StepError reason and whether retrying can help. */
export function toStepError(err: unknown): StepError {
  if (err instanceof StepError) return err;
  if (!(err instanceof ConnectError)) {
    return new StepError('FlyteError', err instanceof Error ? err.message : String(err), true);
  }
  const code = err.code;
  const codeName = Code[code].replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
  const message = `FlyteAdmin: ${err.rawMessage}`;
  switch (code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
    case Code.Aborted:
    case Code.Internal:
    case Code.Unknown:
    case Code.Canceled:
      return new StepError('FlyteUnavailable', message, true, codeName);
    case Code.InvalidArgument:
      // An archived/inactive project seen mid-flight (someone archived it): the next pass unarchives it.
      if (err.findDetails(InactiveProjectSchema).length > 0) {
        return new StepError('FlyteProjectInactive', message, true, codeName);
      }
      return new StepError('FlyteInvalidArgument', message, false, codeName);
    case Code.AlreadyExists:
      return new StepError('FlyteAlreadyExists', message, true, codeName);
    case Code.NotFound:
      return new StepError('FlyteNotFound', message, true, codeName);
    case Code.Unauthenticated:
      // Credentials are mounted and rotate; the client already retried once with fresh ones.
      return new StepError('FlyteUnauthenticated', message, true, codeName);
    case Code.PermissionDenied:
      return new StepError('FlytePermissionDenied', message, false, codeName);
    case Code.Unimplemented:
      return new StepError('FlyteUnsupported', message, false, codeName);
    default:
      return new StepError('FlyteError', message, false, codeName);
  }
}
