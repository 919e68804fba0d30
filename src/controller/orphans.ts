// Periodic orphan sweep: workspaces whose ConfigMap vanished without our finalizer running (removed by
// force while no controller was up) are torn down. Kubernetes objects are found through the managed
// object index; IAM roles and Flyte projects are found in those systems themselves (by tag / label),
// so they are swept even when nothing of the workspace is left in Kubernetes (sweepExternalOrphans). Conservative by design: the ConfigMap's absence is
// confirmed by a live read, and only workspaces that came from a currently allowed source namespace count.
import type { Logger } from 'pino';
import type { KubeApi } from '../adapters/kubernetes.js';
import { type ControllerConfig, SOURCE_ANNOTATION } from '../config/config.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ClaimIndex } from '../reconcile/claims.js';
import type { WorkspaceReconciler } from '../reconcile/reconciler.js';
import type { ManagedObjectIndex } from './managed-cache.js';
import type { ExternalClients } from './steps.js';

export interface OrphanSweeperOptions {
  /** The sweep interval and the watched source namespaces. */
  cfg: Pick<ControllerConfig, 'sourceNamespaces' | 'reconcile'>;
  kube: KubeApi;
  log: Logger;
  metrics: Metrics;
  reconciler: WorkspaceReconciler;
  index: ManagedObjectIndex;
  claims: ClaimIndex;
  sourceExists: (source: string) => Promise<boolean>;
  clients: ExternalClients;
}

export interface SweepReport {
  kubernetes: string[];
  skipped: string[];
}

export class OrphanSweeper {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(private readonly o: OrphanSweeperOptions) {}

  start(): void {
    const every = this.o.cfg.reconcile.orphanSweepIntervalSeconds * 1000;
    this.timer = setInterval(
      () => void this.sweep().catch((err) => this.o.log.warn({ err }, 'orphan sweep failed')),
      every,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async sweep(): Promise<SweepReport> {
    const report: SweepReport = { kubernetes: [], skipped: [] };
    if (this.running || !this.o.index.synced()) return report;
    this.running = true;
    try {
      const live = new Set(this.o.claims.workspaceIds());
      const allowAll = this.o.cfg.sourceNamespaces.includes('*');
      for (const id of this.o.index.workspaceIds()) {
        if (live.has(id)) continue;
        const ns = this.o.index.listForWorkspace('Namespace', id)[0];
        const source = ns?.metadata.annotations?.[SOURCE_ANNOTATION];
        const sourceNs = source?.split('/')[0];
        if (!source || !sourceNs || (!allowAll && !this.o.cfg.sourceNamespaces.includes(sourceNs))) {
          // Not provably ours to judge (e.g. the source namespace left the config): leave it, say so.
          report.skipped.push(id);
          continue;
        }
        if (await this.o.sourceExists(source)) continue; // cache lag, not an orphan
        this.o.log.info({ workspace: id, source }, 'workspace ConfigMap is gone: removing orphaned resources');
        await this.o.reconciler.teardownOrphan(id, source);
        this.o.metrics.orphansRemoved.inc({ system: 'kubernetes', dry_run: 'false' });
        report.kubernetes.push(id);
      }
      if (report.skipped.length > 0) {
        this.o.log.warn(
          { workspaces: report.skipped.slice(0, 20) },
          'managed objects without a known source left alone',
        );
      }
      await this.o.clients.sweepExternalOrphans?.(live, (id) => this.o.claims.claimants(id).length > 0);
      return report;
    } finally {
      this.running = false;
    }
  }
}
