// What the day-2 commands (`status`, `rerun`) need from the cluster, through the user's own kubeconfig
// and RBAC (get, list, watch, patch on workspace ConfigMaps; no access to the controller), and the exit
// codes they share.
import { KubeConfig } from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';
import { KubeClient, type ListResult } from '../kube/client.js';
import { KubeStatusError } from '../kube/status.js';

/** Exit codes of `status` and `rerun` (documented in their --help and the README; scripts rely on them). */
export const EXIT = {
  ok: 0,
  /** `status --not-ready` found some; `rerun`: a workspace is not Ready, timed out, or was not found. */
  notReady: 1,
  usage: 2,
  /** No usable kubeconfig, or the API server could not be reached (connection, TLS, timeout, 502-504). */
  unreachable: 3,
  /** The API server answered with an error: Unauthorized, Forbidden (RBAC), or another refusal. */
  refused: 4,
} as const;

export type Scope = { allNamespaces: true } | { allNamespaces: false; namespaces: string[] };

export function loadUserKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new KubeConfigError('the kubeconfig has no current cluster');
  return kc;
}

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

export function configMapsPath(namespace?: string): string {
  return namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps` : '/api/v1/configmaps';
}

/**
 * Every workspace ConfigMap in scope: one paginated LIST per namespace (500 a page), or one across the
 * cluster for --all-namespaces. Items keep the server's order (namespace, then name).
 */
export async function listWorkspaceConfigMaps(
  client: Pick<KubeClient, 'list'>,
  scope: Scope,
  labelSelector: string,
): Promise<ListResult> {
  if (scope.allNamespaces) return client.list(configMapsPath(), { labelSelector, limit: 500 });
  const items: ListResult['items'] = [];
  let resourceVersion = '';
  for (const ns of scope.namespaces) {
    const page = await client.list(configMapsPath(ns), { labelSelector, limit: 500 });
    items.push(...page.items);
    resourceVersion = page.resourceVersion;
  }
  return { items, resourceVersion };
}

/** The command's client: the process's transport for `kc`, 30 s a request (a person is waiting). */
export function listWatchClient(kc: KubeConfig): KubeClient {
  return KubeClient.forConfig(kc, { timeoutMs: 30_000 });
}

/** An HTTP error answer of the API server, or undefined for anything else. */
function httpStatusOf(err: unknown): number | undefined {
  if (err instanceof KubeStatusError) return err.code;
  return undefined;
}

/**
 * The exit code for a failure to talk to the cluster, or undefined when `err` is not one (a bug: let it
 * surface with its stack).
 */
export function exitCodeFor(err: unknown): number | undefined {
  if (err instanceof KubeConfigError) return EXIT.unreachable;
  const http = httpStatusOf(err);
  if (http !== undefined) return http >= 502 && http <= 504 ? EXIT.unreachable : EXIT.refused;
  const e = err as { name?: string; code?: unknown } | undefined;
  // Socket, DNS and TLS failures carry a string code (ECONNREFUSED, ENOTFOUND, UND_ERR_CONNECT_TIMEOUT,
  // DEPTH_ZERO_SELF_SIGNED_CERT…); request timeouts are TimeoutError/AbortError.
  if (typeof e?.code === 'string' || e?.name === 'TimeoutError' || e?.name === 'AbortError') return EXIT.unreachable;
  return undefined;
}

/** Says what kept the command from the cluster and returns its exit code; anything else (a bug) is rethrown. */
export function clusterFailure(err: unknown, server: string | undefined, say: (line: string) => void): number {
  const code = exitCodeFor(err);
  if (code === undefined) throw err;
  say(`✗ ${describeClusterError(err, server)}`);
  return code;
}

/** One line for the user: what failed and, for RBAC refusals, what permission is missing. */
export function describeClusterError(err: unknown, server: string | undefined): string {
  const http = httpStatusOf(err);
  const message = err instanceof Error ? err.message : String(err);
  if (http === 401) return `the API server at ${server} did not accept the kubeconfig's credentials: ${message}`;
  if (http === 403)
    return `forbidden: ${message} (needs get, list, watch and patch on configmaps in the namespace; see manifests/oncall-rbac.yaml)`;
  if (http !== undefined) return `the API server refused the request: ${message}`;
  const cause = (err as { cause?: { message?: string } }).cause?.message;
  return `cannot reach the cluster at ${server ?? '(no server)'}: ${message}${cause ? ` (${cause})` : ''}`;
}

/** A logger for a Reflector: its retries become one warning line each (it keeps retrying on its own). */
export function reflectorLog(say: (line: string) => void, path: string): Logger {
  return pino(
    { level: 'warn', base: null, timestamp: false },
    {
      write(line: string) {
        const entry = JSON.parse(line) as { msg?: string; err?: { message?: string } };
        say(`⚠️ watch ${path}: ${entry.msg ?? ''}${entry.err?.message ? `: ${entry.err.message}` : ''}`);
      },
    },
  );
}
