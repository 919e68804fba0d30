// All Prometheus metrics in one registry. Names and labels follow controller-runtime and client-go so
// existing dashboards and alerts work; our own series use bounded labels only (never workspace ids).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75,
  2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
// controller-runtime: ExponentialBuckets(10e-9, 10, 12)
const WORKQUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => 1e-8 * 10 ** i);

export class Metrics {
  readonly registry = new Registry();

  readonly reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly terminalReconcileErrors = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly reconcilePanics = new Counter({
    name: 'controller_runtime_reconcile_panics_total',
    help: 'Total number of reconciliation panics per controller',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'] as const,
    buckets: RECONCILE_BUCKETS,
    registers: [this.registry],
  });
  readonly activeWorkers = new Gauge({
    name: 'controller_runtime_active_workers',
    help: 'Number of currently used workers per controller',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });
  readonly maxConcurrentReconciles = new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Maximum number of concurrent reconciles per controller',
    labelNames: ['controller'] as const,
    registers: [this.registry],
  });

  readonly workqueueDepth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue',
    labelNames: ['name', 'controller'] as const,
    registers: [this.registry],
  });
  readonly workqueueAdds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name', 'controller'] as const,
    registers: [this.registry],
  });
  readonly workqueueQueueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name', 'controller'] as const,
    buckets: WORKQUEUE_BUCKETS,
    registers: [this.registry],
  });
  readonly workqueueWorkDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['name', 'controller'] as const,
    buckets: WORKQUEUE_BUCKETS,
    registers: [this.registry],
  });
  readonly workqueueUnfinishedWork = new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads.",
    labelNames: ['name', 'controller'] as const,
    registers: [this.registry],
  });
  readonly workqueueLongestRunning = new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running',
    labelNames: ['name', 'controller'] as const,
    registers: [this.registry],
  });
  readonly workqueueRetries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name', 'controller'] as const,
    registers: [this.registry],
  });

  readonly leaderStatus = new Gauge({
    name: 'leader_election_master_status',
    help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
    labelNames: ['name'] as const,
    registers: [this.registry],
  });

  // Our own series.
  readonly workspacesByPhase = new Gauge({
    name: 'flyte_workspace_workspaces',
    help: 'Workspaces known to the controller, by status phase',
    labelNames: ['phase'] as const,
    registers: [this.registry],
  });
  readonly stepFailures = new Counter({
    name: 'flyte_workspace_step_failures_total',
    help: 'Reconcile step failures by step and reason class (retryable, terminal, conflict, invalid)',
    labelNames: ['step', 'class'] as const,
    registers: [this.registry],
  });
  readonly externalRequests = new Counter({
    name: 'flyte_workspace_external_requests_total',
    help: 'Calls to Kubernetes, FlyteAdmin and IAM by operation, access (read|write) and outcome',
    labelNames: ['system', 'operation', 'access', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly externalRequestDuration = new Histogram({
    name: 'flyte_workspace_external_request_duration_seconds',
    help: 'Latency of calls to Kubernetes, FlyteAdmin and IAM by operation',
    labelNames: ['system', 'operation'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: 'flyte_workspace_drift_repairs_total',
    help: 'Managed objects found changed or missing and repaired, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly laneJobs = new Gauge({
    name: 'flyte_workspace_external_jobs',
    help: "Workspace steps in an external system's lane (bulkhead): running, or waiting for a free slot",
    labelNames: ['system', 'state'] as const,
    registers: [this.registry],
  });
  readonly driftCheckInterval = new Gauge({
    name: 'flyte_workspace_drift_check_interval_seconds',
    help: 'How often each converged workspace is re-read in an external system to find drift (IAM: stretched to the request budget)',
    labelNames: ['system'] as const,
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'flyte_workspace_watch_restarts_total',
    help: 'Watch restarts by resource and reason (expired, error, stalled, timeout)',
    labelNames: ['resource', 'reason'] as const,
    registers: [this.registry],
  });
  readonly lastWatchEvent = new Gauge({
    name: 'flyte_workspace_last_watch_event_timestamp_seconds',
    help: 'Unix time of the last watch event (including bookmarks) per resource',
    labelNames: ['resource'] as const,
    registers: [this.registry],
  });
  readonly secondsSinceWatchEvent = new Gauge({
    name: 'flyte_workspace_seconds_since_last_watch_event',
    help: 'Seconds since the last watch event (including bookmarks) per resource',
    labelNames: ['resource'] as const,
    registers: [this.registry],
    // Computed at scrape time from the last event time, so it keeps growing while a watch is silent.
    collect: async () => {
      const last = await this.lastWatchEvent.get();
      const now = Date.now() / 1000;
      this.secondsSinceWatchEvent.reset();
      for (const v of last.values) this.secondsSinceWatchEvent.set(v.labels, Math.max(0, now - v.value));
    },
  });
  readonly orphansRemoved = new Counter({
    name: 'flyte_workspace_orphans_removed_total',
    help: 'Resources removed by the orphan sweep because their workspace no longer exists, by system',
    labelNames: ['system', 'dry_run'] as const,
    registers: [this.registry],
  });

  constructor(
    readonly controller = 'workspace',
    opts: { defaultMetrics?: boolean } = {},
  ) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    for (const result of ['success', 'error', 'requeue', 'requeue_after']) {
      this.reconcileTotal.inc({ controller, result }, 0);
    }
    this.reconcileErrors.inc({ controller }, 0);
    this.terminalReconcileErrors.inc({ controller }, 0);
    this.reconcilePanics.inc({ controller }, 0);
    this.activeWorkers.set({ controller }, 0);
    this.workqueueDepth.set({ name: controller, controller }, 0);
    this.workqueueAdds.inc({ name: controller, controller }, 0);
    this.workqueueRetries.inc({ name: controller, controller }, 0);
    // At 0 from the start, so that rate() and increase() (and the alerts on them) see the first failure.
    for (const step of ['kubernetes', 'iam', 'flyte']) {
      for (const cls of ['retryable', 'terminal', 'conflict']) this.stepFailures.inc({ step, class: cls }, 0);
    }
    this.stepFailures.inc({ step: 'spec', class: 'invalid' }, 0);
  }

  async render(): Promise<string> {
    return this.registry.metrics();
  }
}
