// The `run` command: HTTP endpoints, leader election, the controller while leading, graceful shutdown.
import { KubeConfig } from '@kubernetes/client-node';
import type { ControllerConfig } from '../config/config.js';
import { defaultIdentity, LeaseElector } from '../leader/lease-election.js';
import { createLogger, flushLogger } from '../log.js';
import { Metrics } from '../metrics/metrics.js';
import { HttpServers } from '../server/http.js';
import { ShutdownCoordinator } from '../shutdown.js';
import { WorkspaceController } from './controller.js';

export interface DaemonOptions {
  kubeconfig?: string;
}

export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

export async function runDaemon(cfg: ControllerConfig, opts: DaemonOptions = {}): Promise<number> {
  const log = createLogger({ level: cfg.logLevel });
  const metrics = new Metrics(cfg.controllerName);
  const kc = loadKubeConfig(opts.kubeconfig);
  const identity = defaultIdentity();
  const http = new HttpServers({ cfg, metrics, log });
  const shutdown = new ShutdownCoordinator({ graceSeconds: cfg.shutdownGraceSeconds, log }).install();
  let controller: WorkspaceController | undefined;
  let starting: Promise<WorkspaceController> | undefined;

  const elector = cfg.leaderElection.enabled ? new LeaseElector({ kc, cfg, log, metrics, identity }) : undefined;
  // Non-leaders are ready (they can take over) but idle; the leader is ready once its caches synced.
  http.addReadyCheck('controller', () => {
    if (elector && !elector.isLeader()) return true;
    if (!controller) return 'caches not synced yet';
    const r = controller.ready();
    return r.ok || r.failing.join(', ');
  });
  if (elector) http.addHealthCheck('leader-election', () => elector.check() ?? true);
  const ports = await http.start();
  log.info({ identity, ...ports, sourceNamespaces: cfg.sourceNamespaces }, 'flyte-workspace-controller starting');

  const startController = async (): Promise<void> => {
    // Fencing: every write checks that we still hold the lease by our own clock. The renew loop only
    // declares the lease lost after its deadline, and a process frozen past its lease (GC pause, SIGSTOP,
    // a stalled VM) would otherwise finish the reconciles it had in flight while another leader works.
    const mayWrite = elector ? () => elector.isLeader() : undefined;
    starting = WorkspaceController.start({ cfg, kc, log, metrics, identity, mayWrite });
    controller = await starting;
    log.info('caches synced; reconciling');
  };

  shutdown
    .register(
      'stop-controller',
      async (ctx) => {
        const running = controller ?? (await starting?.catch(() => undefined));
        // Drain within this hook's own timeout (leaving 1 s to stop the watches), so slow reconciles are
        // abandoned cleanly instead of the hook timing out and the process exiting 1.
        const drainMs = Math.min(ctx.remainingMs() - 2000, cfg.shutdownGraceSeconds * 1000 - 1000);
        const abandoned = await running?.stop(Math.max(0, drainMs));
        if (abandoned?.length)
          log.warn({ abandoned }, 'in-flight reconciles abandoned at shutdown; the next leader redoes them');
      },
      { timeoutMs: cfg.shutdownGraceSeconds * 1000 },
    )
    .register('release-lease', async () => {
      await elector?.release();
    })
    .register('stop-http', () => http.stop())
    .register('flush-logs', () => flushLogger(log));

  process.on('SIGHUP', () => {
    log.info('SIGHUP: resyncing every workspace');
    void controller?.resyncAll();
  });

  if (elector) {
    void elector.run({
      onStartedLeading: async (signal) => {
        log.info({ identity }, 'became leader');
        signal.addEventListener('abort', () => undefined);
        await startController();
      },
      onStoppedLeading: (info) => {
        if (info?.reason === 'lost') {
          // Like controller-runtime: never keep acting without the lease; let Kubernetes restart us.
          log.error('leader election lost; exiting');
          void flushLogger(log).finally(() => process.exit(1));
        }
      },
      onNewLeader: (leader) => {
        if (leader && leader !== identity) log.info({ leader }, 'following leader');
      },
    });
  } else {
    await startController();
  }
  await new Promise<never>(() => undefined); // the shutdown coordinator exits the process
  return 0;
}
