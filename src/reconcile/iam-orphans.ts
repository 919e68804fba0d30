// IAM orphan sweep: roles this controller created for workspaces that no longer exist (their ConfigMap
// was removed while no controller ran, or teardown failed for good) are found by tag and deleted.
// Only roles under cfg.aws.rolePath carrying managed-by=<fieldManager> and a workspace-id are candidates;
// roles without our tag are never touched, whatever their name. Dry-run reports without deleting.
import type { Logger } from 'pino';
import { type IamApi, isNoSuchEntity } from '../adapters/iam.js';
import type { ControllerConfig } from '../config/config.js';
import { IAM_TAG_MANAGED_BY, IAM_TAG_WORKSPACE_ID } from '../desired/iam.js';
import { deleteOwnedRole } from './steps/iam.js';
import { stepWriter } from './steps/scaffold.js';

export interface IamOrphan {
  roleName: string;
  roleArn: string;
  workspaceId: string;
  /** deleted; would-delete (dry-run); failed (see error; the next sweep tries again). */
  action: 'deleted' | 'would-delete' | 'failed';
  error?: string;
}

export interface SweepIamOrphansOptions {
  api: IamApi;
  /** Our tag value and the role path the sweep lists. */
  cfg: Pick<ControllerConfig, 'fieldManager'> & { aws: Pick<ControllerConfig['aws'], 'rolePath'> };
  /** Workspace ids that currently have a (valid, claimed) ConfigMap. */
  liveWorkspaceIds: Set<string>;
  dryRun: boolean;
  log: Logger;
  /**
   * Roles younger than this are left for the next sweep: a workspace created after `liveWorkspaceIds`
   * was computed may already have its role. Default 10 minutes.
   */
  minAgeMs?: number;
  now?: () => number;
}

export const IAM_ORPHAN_MIN_AGE_MS = 10 * 60 * 1000;

export async function sweepIamOrphans(o: SweepIamOrphansOptions): Promise<IamOrphan[]> {
  const { api, cfg, log } = o;
  const minAge = o.minAgeMs ?? IAM_ORPHAN_MIN_AGE_MS;
  const now = (o.now ?? Date.now)();
  const orphans: IamOrphan[] = [];
  for (const role of await api.listRoles(cfg.aws.rolePath)) {
    if (role.createdAt && now - role.createdAt.getTime() < minAge) continue;
    let tags: Record<string, string>;
    try {
      tags = await api.listRoleTags(role.name);
    } catch (err) {
      if (!isNoSuchEntity(err)) log.warn({ role: role.name, err }, 'orphan sweep: cannot read role tags; skipping');
      continue;
    }
    const workspaceId = tags[IAM_TAG_WORKSPACE_ID];
    if (tags[IAM_TAG_MANAGED_BY] !== cfg.fieldManager || !workspaceId) continue;
    if (o.liveWorkspaceIds.has(workspaceId)) continue;

    const orphan: IamOrphan = { roleName: role.name, roleArn: role.arn, workspaceId, action: 'would-delete' };
    if (o.dryRun) {
      log.info({ role: role.name, workspace: workspaceId }, 'orphan sweep (dry-run): would delete IAM role');
      orphans.push(orphan);
      continue;
    }
    try {
      await deleteOwnedRole(api, role, { dryRun: false, log }, stepWriter({ dryRun: false, changes: [] }));
      orphan.action = 'deleted';
      log.info({ role: role.name, workspace: workspaceId }, 'orphan sweep: deleted IAM role of a removed workspace');
    } catch (err) {
      orphan.action = 'failed';
      orphan.error = err instanceof Error ? err.message : String(err);
      log.warn({ role: role.name, workspace: workspaceId, err }, 'orphan sweep: could not delete IAM role');
    }
    orphans.push(orphan);
  }
  return orphans;
}
