// The `run` command: HTTP endpoints, leader election, the controller while leading, graceful shutdown.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ControllerConfig } from '../config/config.js';
import { apiServerContact } from '../kube/contact.js';
import { defaultIdentity, LeaseElector } from '../leader/lease-election.js';
import { createLogger, flushLogger } from '../log.js';
import { Metrics } from '../metrics/metrics.js';
import { HttpServers } from '../server/http.js';
import { ShutdownCoordinator } from '../shutdown.js';
import { WorkspaceController } from './controller.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface DaemonOptions {
  kubeconfig?: string;
  /** Called once the daemon's own signal handlers are installed (the caller drops its interim ones). */
  onSignalsHandled?: () => void;
}

/** Where a cluster configuration can come from, in the order controller-runtime's GetConfig tries them. */
export const CLUSTER_CONFIG_SOURCES =
  'either run in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, and a ServiceAccount token at ' +
  `${SERVICE_ACCOUNT_TOKEN}), or give a kubeconfig (--kubeconfig FILE, the KUBECONFIG environment variable, ` +
  'or ~/.kube/config)';

/** A cluster configuration that cannot be loaded: a startup error, never a silent default. */
export class ClusterConfigError extends Error {
  override name = 'ClusterConfigError';
}

/**
 * The cluster configuration, tried in controller-runtime's order: --kubeconfig, $KUBECONFIG, in-cluster,
 * ~/.kube/config. client-node's loadFromDefault() would fall back to http://localhost:8080 when none exists,
 * which later fails with an unrelated TLS message; here that is a startup error naming both ways.
 */
export function loadKubeConfig(file?: string, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  const load = (what: string, fn: () => void): KubeConfig => {
    try {
      fn();
    } catch (err) {
      throw new ClusterConfigError(`cannot load the cluster configuration from ${what}: ${(err as Error).message}`);
    }
    if (!kc.getCurrentCluster()) throw new ClusterConfigError(`${what} names no current cluster (current-context)`);
    return kc;
  };
  if (file) return load(`--kubeconfig ${file}`, () => kc.loadFromFile(file));
  if (env.KUBECONFIG) {
    const [first, ...rest] = env.KUBECONFIG.split(delimiter).filter(Boolean);
    return load(`KUBECONFIG=${env.KUBECONFIG}`, () => {
      if (first) kc.loadFromFile(first);
      for (const file of rest) {
        const more = new KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more, true);
      }
    });
  }
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    return load('the in-cluster ServiceAccount', () => kc.loadFromCluster());
  }
  const home = join(env.HOME ?? homedir(), '.kube', 'config');
  if (existsSync(home)) return load(home, () => kc.loadFromFile(home));
  throw new ClusterConfigError(`no Kubernetes cluster configuration found: ${CLUSTER_CONFIG_SOURCES}`);
}

/**
 * Readiness and logs for the API server connection: not ready until it was reached once, or while it has
 * failed for longer than the renew deadline (a leader would have lost its lease by then). The log names
 * the server and the cause when calls start failing, and says when they recover.
 */
function watchApiServerContact(
  kc: KubeConfig,
  cfg: { leaderElection: Pick<ControllerConfig['leaderElection'], 'renewDeadlineSeconds'> },
  http: HttpServers,
  log: Logger,
): void {
  const contact = apiServerContact(kc.getCurrentCluster()?.server ?? '');
  const toleranceMs = cfg.leaderElection.renewDeadlineSeconds * 1000;
  http.addReadyCheck('apiserver', () => contact.readiness(toleranceMs));
  contact.onChange((event, s) => {
    if (event === 'failing' && s.failure) {
      log.error({ server: s.server, cause: s.failure.cause }, s.failure.message);
    } else if (event === 'restored') {
      log.info({ server: s.server }, 'reached the Kubernetes API server again');
    }
  });
}

export async function runDaemon(cfg: ControllerConfig, opts: DaemonOptions = {}): Promise<number> {
  const log = createLogger({ level: cfg.logLevel });
  const metrics = new Metrics(cfg.controllerName);
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig(opts.kubeconfig);
  } catch (err) {
    if (!(err instanceof ClusterConfigError)) throw err;
    log.fatal(err.message);
    await flushLogger(log);
    return 1;
  }
  const identity = defaultIdentity();
  const http = new HttpServers({ cfg, metrics, log });
  const shutdown = new ShutdownCoordinator({ graceSeconds: cfg.shutdownGraceSeconds, log }).install();
  opts.onSignalsHandled?.();
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
  watchApiServerContact(kc, cfg, http, log);
  const ports = await http.start();
  log.info(
    { identity, ...ports, server: kc.getCurrentCluster()?.server, sourceNamespaces: cfg.sourceNamespaces },
    'flyte-workspace-controller starting',
  );

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
        // Before its caches synced the controller reconciled nothing, so there is nothing to drain; waiting
        // for a sync that may never come (an unreachable API server) would only hold the process up.
        const running = controller;
        if (!running && starting) log.info('stopping before the caches synced');
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
