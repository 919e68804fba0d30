// The `plan` command: run every step in dry-run against the live systems and print the changes.
import { pino } from 'pino';
import { CallStats } from '../adapters/call-stats.js';
import { createFlyteAdminClient } from '../adapters/flyteadmin.js';
import { SdkIamApi } from '../adapters/iam.js';
import { HttpKubeApi } from '../adapters/kubernetes.js';
import type { ControllerConfig } from '../config/config.js';
import { ClaimIndex } from '../reconcile/claims.js';
import { WorkspaceReconciler } from '../reconcile/reconciler.js';
import { type PlannedChange, stepDetails } from '../reconcile/types.js';
import type { WorkspaceSpec } from '../spec/workspace.js';
import { loadKubeConfig } from './daemon.js';
import { buildSteps, type ExternalClients } from './steps.js';

export interface PlanOptions {
  kubeconfig?: string;
  source: string;
  json: boolean;
  /** Where to print; default stdout. */
  print?: (line: string) => void;
}

const SYMBOL: Record<PlannedChange['action'], string> = {
  create: '+',
  update: '~',
  delete: '-',
  archive: '-',
  unarchive: '~',
};

export async function runPlan(
  cfg: ControllerConfig,
  spec: WorkspaceSpec,
  specHash: string,
  o: PlanOptions,
): Promise<number> {
  const print = o.print ?? ((l: string) => console.log(l));
  const log = pino({ level: 'silent' });
  const stats = {
    kubernetes: new CallStats('kubernetes'),
    iam: new CallStats('iam'),
    flyte: new CallStats('flyte'),
  };
  const kube = new HttpKubeApi(loadKubeConfig(o.kubeconfig), {
    fieldManager: cfg.fieldManager,
    stats: stats.kubernetes,
  });
  const clients: ExternalClients = {};
  if (cfg.aws.enabled) clients.iam = new SdkIamApi({ cfg, stats: stats.iam });
  const flyte = cfg.flyte.enabled
    ? createFlyteAdminClient(cfg.flyte, { stats: stats.flyte, log, fallbackDomains: cfg.domains })
    : undefined;
  if (flyte) clients.flyte = flyte;
  const steps = buildSteps(cfg, { kube, clients, sourceExists: () => true, onDrift: () => undefined });
  const noSources = { get: () => undefined };
  const reconciler = new WorkspaceReconciler({
    cfg,
    kube,
    steps,
    sources: noSources,
    claims: new ClaimIndex(noSources, cfg.configMapKey),
    events: { emit: async () => undefined },
    log,
  });
  try {
    const { changes, outcomes } = await reconciler.plan(spec, specHash, o.source);
    const writes = stats.kubernetes.writes + stats.iam.writes + stats.flyte.writes;
    if (o.json) {
      // Each step's result as the status records it (details), so the JSON reads like the status.
      const shown = Object.fromEntries(
        Object.entries(outcomes).map(([k, { result, ...rest }]) => [
          k,
          result ? { ...rest, details: stepDetails(result) } : rest,
        ]),
      );
      print(
        JSON.stringify({ workspace: spec.workspaceId, source: o.source, changes, outcomes: shown, writes }, null, 2),
      );
    } else {
      print(`Plan for workspace ${spec.workspaceId} (source ${o.source}):`);
      for (const system of ['kubernetes', 'iam', 'flyte'] as const) {
        const mine = changes.filter((c) => c.system === system);
        const outcome = outcomes[system];
        const note =
          outcome && (outcome.state === 'Failed' || outcome.state === 'Conflict')
            ? `  (${outcome.state}: ${outcome.message})`
            : '';
        print(`  ${system}:${mine.length === 0 && !note ? ' no changes' : ''}${note}`);
        for (const c of mine)
          print(`    ${SYMBOL[c.action]} ${c.action} ${c.target}${c.detail ? `  [${c.detail}]` : ''}`);
      }
      const count = (a: PlannedChange['action'][]) => changes.filter((c) => a.includes(c.action)).length;
      print(
        `${count(['create'])} to create, ${count(['update', 'unarchive'])} to change, ${count(['delete', 'archive'])} to delete. Writes made: ${writes}.`,
      );
    }
    const failed = Object.values(outcomes).some((x) => x.state === 'Failed' || x.state === 'Conflict');
    return failed ? 1 : 0;
  } finally {
    flyte?.close();
  }
}
