// Flyte orphan sweep: projects this controller registered for workspaces that no longer exist (their
// ConfigMap was removed while no controller ran, or teardown never finished) are found in FlyteAdmin
// itself and archived. Archiving keeps everything (attributes, executions, users' overrides) and a
// re-created workspace unarchives its project, so a mistaken archive is undone by the next reconcile.
//
// Candidates: ListProjects pages filtered on our manager label value and state ACTIVE. FlyteAdmin's
// label filter is a substring match over the stored project (a project whose name or description
// contains the text matches too), so every candidate is checked client-side: exactly our managed-by
// label, a workspace-id label, and the project id this controller derives from that workspace id.
import type { Logger } from 'pino';
import type { FlyteAdminApi } from '../adapters/flyteadmin.js';
import { type ControllerConfig, MANAGED_BY_LABEL, WORKSPACE_ID_LABEL } from '../config/config.js';
import { type Project, Project_ProjectState } from '../gen/flyteidl/admin/project_pb.js';
import { type NamingConfig, workspaceNames } from '../spec/names.js';
import { archiveProject } from './steps/flyte.js';

export interface FlyteOrphan {
  projectId: string;
  workspaceId: string;
  /** archived; would-archive (dry-run); failed (see error; the next sweep tries again). */
  action: 'archived' | 'would-archive' | 'failed';
  error?: string;
}

/** What the Flyte sweep reads of the configuration: our labels and the project name template. */
export type FlyteOwnershipConfig = NamingConfig & Pick<ControllerConfig, 'fieldManager'>;

export interface SweepFlyteOrphansOptions {
  api: FlyteAdminApi;
  cfg: FlyteOwnershipConfig;
  /** Workspace ids that currently have a (valid, claimed) ConfigMap in a watched source. */
  liveWorkspaceIds: Set<string>;
  /**
   * Asked again right before archiving: a workspace created after `liveWorkspaceIds` was computed is
   * claimed before its first reconcile registers the project, so this sees it.
   */
  isLive?: (workspaceId: string) => boolean;
  dryRun: boolean;
  log: Logger;
  /** ListProjects page size. Default 100. */
  pageSize?: number;
}

/** Stops a server that keeps answering tokens from keeping the sweep busy forever. */
const MAX_PAGES = 10_000;

/** The workspace id of a project this controller manages, or undefined when it is not provably ours. */
export function ownedWorkspaceId(project: Project, cfg: FlyteOwnershipConfig): string | undefined {
  const labels = project.labels?.values ?? {};
  const workspaceId = labels[WORKSPACE_ID_LABEL];
  if (labels[MANAGED_BY_LABEL] !== cfg.fieldManager || !workspaceId) return undefined;
  return workspaceNames(cfg, workspaceId).flyteProject === project.id ? workspaceId : undefined;
}

export async function sweepFlyteOrphans(o: SweepFlyteOrphansOptions): Promise<FlyteOrphan[]> {
  const { api, cfg, log } = o;
  const limit = o.pageSize ?? 100;
  // '+' separates filters in FlyteAdmin's syntax; a manager name containing one cannot be filtered on.
  const labelFilter = cfg.fieldManager.includes('+') ? '' : `contains(labels,${cfg.fieldManager})+`;
  const filters = `${labelFilter}eq(state,${Project_ProjectState.ACTIVE})`;
  const candidates: { project: Project; workspaceId: string }[] = [];
  let token = '';
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await api.listProjects({ filters, limit, token });
    for (const project of res.projects) {
      const workspaceId = ownedWorkspaceId(project, cfg);
      if (workspaceId === undefined || project.state !== Project_ProjectState.ACTIVE) continue;
      if (!o.liveWorkspaceIds.has(workspaceId)) candidates.push({ project, workspaceId });
    }
    if (res.token === '' || res.token === token) break;
    token = res.token;
  }

  const orphans: FlyteOrphan[] = [];
  for (const { project, workspaceId } of candidates) {
    if (o.isLive?.(workspaceId)) continue;
    const orphan: FlyteOrphan = { projectId: project.id, workspaceId, action: 'would-archive' };
    const fields = { project: project.id, workspace: workspaceId };
    if (o.dryRun) {
      log.info(fields, 'orphan sweep (dry-run): would archive Flyte project');
      orphans.push(orphan);
      continue;
    }
    try {
      await archiveProject(api, project);
      orphan.action = 'archived';
      log.info(fields, 'orphan sweep: archived the Flyte project of a removed workspace');
    } catch (err) {
      orphan.action = 'failed';
      orphan.error = err instanceof Error ? err.message : String(err);
      log.warn({ ...fields, err }, 'orphan sweep: could not archive Flyte project');
    }
    orphans.push(orphan);
  }
  return orphans;
}
