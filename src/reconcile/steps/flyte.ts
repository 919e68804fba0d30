// Flyte step: the workspace's FlyteAdmin project and its per-domain matchable attributes
// (WORKFLOW_EXECUTION_CONFIG, CLUSTER_RESOURCE). Writes only on semantic difference, never adopts a
// project that is not labelled as ours, and on teardown only archives the project. FlyteAdmin has no
// project delete, and an archived project already rejects executions and attribute calls. Attributes are
// never deleted: FlyteAdmin's DeleteProjectDomainAttributes(p, d, type) is a wildcard that also deletes
// the users' own workflow- and launch-plan-level rows of that project-domain. On re-add the project is
// unarchived and our project-domain rows are upserted, which touches no other level.
//
// Caching: a per-workspace converged entry (ConvergedCache) keyed by a hash of the whole desired Flyte
// state. While the hash is unchanged and the entry is younger than `verifiedTtlMs`, ensure() makes no
// FlyteAdmin call at all; ctx.force, dry runs, a changed hash, an expired record, any error and teardown bypass or drop it,
// so drift made directly in FlyteAdmin is repaired within verifiedTtlMs (default
// flyte.driftCheckIntervalSeconds, 30 min: re-reading 7 things per workspace on every 10-minute resync
// would be ~60 reads/s against FlyteAdmin at 5,000 workspaces). After a restart, a status recording
// this desired state as Ready is trusted and re-read within one interval (recordedAsConverged).
import { Code, ConnectError } from '@connectrpc/connect';
import { type FlyteAdminApi, toFlyteError } from '../../adapters/flyteadmin.js';
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
import { type Project, Project_ProjectState } from '../../gen/flyteidl/admin/project_pb.js';
import type { StepResult } from '../../kinds/step.js';
import {
  type PlannedChange,
  type StepBaseContext,
  type StepContext,
  StepError,
  type StepOutcome,
  type WorkspaceStep,
} from '../types.js';
import { ConvergedCache, settle, stepWriter, type VerifiedTtl, verifiedTtlMs } from './scaffold.js';

export interface FlyteStepOptions {
  /** Total time for all FlyteAdmin calls of one ensure/teardown. Default max(30 s, 3 × callTimeoutMs). */
  budgetMs?: number;
  /** How long a verified, unchanged workspace is trusted without reading FlyteAdmin. Default flyte.driftCheckIntervalSeconds; 0 = never. */
  verifiedTtlMs?: VerifiedTtl;
  /** How long the GetDomains answer is reused. Default 10 min. */
  domainsTtlMs?: number;
  /** Called per repaired write (`project` or `attributes`) when the spec did not change (drift). */
  onDrift?: (kind: string) => void;
  now?: () => number;
  /** Where within one TTL a record trusted from status after a restart is re-read (tests). */
  random?: () => number;
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
  /** No value: the answer is recomputed from the same inputs, so both paths report the same result. */
  private readonly converged: ConvergedCache<true>;
  private domainCache?: { domains: string[]; at: number };
  private domainsInFlight?: Promise<string[]>;

  constructor(
    private readonly api: FlyteAdminApi,
    private readonly opts: FlyteStepOptions = {},
  ) {
    this.converged = new ConvergedCache('flyte', { now: opts.now, random: opts.random });
  }

  /** Forgets the converged entry of one workspace (or all), e.g. after an out-of-band change. */
  invalidate(workspaceId?: string): void {
    this.converged.forget(workspaceId);
  }

  async ensure(ctx: StepContext): Promise<StepOutcome> {
    const { cfg } = ctx;
    const id = ctx.names.flyteProject;
    const api = this.api.withBudget(this.budgetMs(cfg));
    const w = stepWriter(ctx, this.opts.onDrift);
    const body = async (): Promise<StepOutcome> => {
      const domains = await this.domains(ctx, api);
      ctx.outputs.flyteDomains = domains;
      const roleArn = ctx.outputs.roleArn ?? roleArnFor(cfg, ctx.names.iamRole);
      const desired = desiredFlyteState({ cfg, spec: ctx.spec, names: ctx.names, roleArn, domains });
      const problems = labelProblems(desired.project.labels);
      if (problems.length > 0) {
        throw new StepError('FlyteInvalidArgument', `project labels rejected: ${problems.join('; ')}`, 'terminal');
      }
      const hash = flyteStateHash(desired);
      // The same result on the cached path as on a full verification: it ends up in the status, and a
      // difference would rewrite the status on every switch between the two paths.
      // desiredHash lets a restarted controller trust this record (recordedAsConverged).
      const result: StepResult = {
        projectId: id,
        consoleUrl: consoleUrl(cfg, id),
        projectState: 'ACTIVE',
        domains,
        desiredHash: hash,
      };

      const ttl = verifiedTtlMs(this.opts.verifiedTtlMs, cfg.flyte.driftCheckIntervalSeconds * 1000);
      const known = this.converged.lookup(ctx, hash, ttl, true);
      if (known) {
        const message =
          known.from === 'verified'
            ? 'Flyte project unchanged since last verified'
            : 'Flyte project as recorded in status';
        return { state: 'Ready', reason: 'UpToDate', message, writes: 0, result };
      }

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
        let raced = false;
        await w.write({ system: 'flyte', action: 'create', target: projectTarget }, async () => {
          try {
            await api.registerProject(fullProject(Project_ProjectState.ACTIVE));
            return 1;
          } catch (err) {
            if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
            raced = true;
            return 0;
          }
        });
        fresh = !raced;
        if (raced) {
          // Lost a race (or an earlier attempt timed out after the server committed): read and converge.
          ctx.changes.pop();
          live = await api.getProject(id);
          if (!live)
            throw new StepError('FlyteUnavailable', `project ${id} exists but cannot be read yet`, 'retryable');
        }
      }
      if (live) {
        this.checkOwned(live, ctx);
        const diffs = projectDiff(live, desired.project);
        if (diffs.length > 0) {
          const action = live.state === Project_ProjectState.ACTIVE ? 'update' : 'unarchive';
          // Always the FULL project with state: FlyteAdmin writes state on every update.
          await w.write(
            { system: 'flyte', action, target: projectTarget, detail: diffs.join(', ') },
            () => api.updateProject(fullProject(Project_ProjectState.ACTIVE)),
            { drift: 'project' },
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
          w.write(change, () => api.updateProjectDomainAttributes(id, attrs.domain, attrs.attributes), {
            drift: 'attributes',
          }),
        ),
      );

      if (!ctx.dryRun) this.converged.verified(ctx.workspaceId, hash, true);
      const writes = w.writes;
      return {
        state: 'Ready',
        reason: writes > 0 ? 'Applied' : 'UpToDate',
        message: writes > 0 ? `applied ${writes} FlyteAdmin change(s)` : 'Flyte project and attributes up to date',
        writes,
        result,
      };
    };
    const outcome = await settle(ctx, 'flyte', w, body, toFlyteError);
    if (outcome.state !== 'Ready') this.converged.forget(ctx.workspaceId);
    return outcome;
  }

  async teardown(ctx: StepBaseContext): Promise<StepOutcome> {
    const { cfg } = ctx;
    const id = ctx.names.flyteProject;
    this.converged.forget(ctx.workspaceId);
    const api = this.api.withBudget(this.budgetMs(cfg));
    const w = stepWriter(ctx);
    const found: StepResult = { projectId: id, consoleUrl: consoleUrl(cfg, id) };
    const body = async (): Promise<StepOutcome> => {
      const live = await api.getProject(id);
      if (!live) {
        return {
          state: 'Deleted',
          reason: 'ProjectNotFound',
          message: 'no Flyte project to archive',
          writes: 0,
          result: found,
        };
      }
      if (!ownsProject(live, cfg, ctx.workspaceId)) {
        return {
          state: 'Skipped',
          reason: 'FlyteProjectNotOwned',
          message: `Flyte project ${id} is not managed for workspace ${ctx.workspaceId}; left untouched`,
          writes: 0,
          result: { ...found, projectState: stateName(live.state) },
        };
      }
      // Attributes stay: see the header (a delete would also take the users' workflow-level overrides).
      const archivedAlready =
        live.state === Project_ProjectState.ARCHIVED || live.state === Project_ProjectState.SYSTEM_ARCHIVED;
      if (!archivedAlready) {
        await w.write({ system: 'flyte', action: 'archive', target: `Flyte project ${id}` }, () =>
          archiveProject(api, live),
        );
      }
      return {
        state: 'Deleted',
        reason: archivedAlready ? 'AlreadyArchived' : 'Archived',
        message: archivedAlready
          ? `Flyte project ${id} is archived`
          : `Flyte project ${id} archived (its attributes are kept for a re-add)`,
        writes: w.writes,
        result: { ...found, projectState: ctx.dryRun ? stateName(live.state) : 'ARCHIVED' },
      };
    };
    return settle(ctx, 'flyte', w, body, toFlyteError);
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
      'conflict',
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

  private budgetMs(cfg: { flyte: Pick<ControllerConfig['flyte'], 'callTimeoutMs'> }): number {
    return this.opts.budgetMs ?? Math.max(30_000, 3 * cfg.flyte.callTimeoutMs);
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
