// `flyte-workspace-controller status`: the fleet at a glance, from the workspace ConfigMaps' status
// annotations (one paginated LIST), in the spirit of `flux get`. `--watch` keeps printing rows as they change.
import { dumpYaml } from '@kubernetes/client-node';
import { objectKey, Reflector } from '../watch/reflector.js';
import {
  clusterFailure,
  configMapsPath,
  EXIT,
  listWatchClient,
  listWorkspaceConfigMaps,
  loadUserKubeConfig,
  reflectorLog,
  type Scope,
} from './kube.js';
import { isReady, rowJson, type WorkspaceRow, WorkspaceTable, workspaceRow } from './workspace-rows.js';

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml';

export interface StatusOptions {
  kubeconfig?: string;
  scope: Scope;
  labelSelector: string;
  notReady: boolean;
  watch: boolean;
  output: OutputFormat;
  /** Terminal width for cutting the MESSAGE column; 0 = do not cut. */
  width: number;
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** Ends --watch (default: SIGINT or SIGTERM). */
  stop?: AbortSignal;
}

export async function runStatus(o: StatusOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = o.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  let server: string | undefined;
  try {
    const kc = loadUserKubeConfig(o.kubeconfig);
    server = kc.getCurrentCluster()?.server;
    const client = listWatchClient(kc);
    const listed = await listWorkspaceConfigMaps(client, o.scope, o.labelSelector);
    const all = listed.items.map(workspaceRow);
    const rows = o.notReady ? all.filter((r) => !isReady(r)) : all;
    const table = printRows(rows, o, out);
    if (rows.length === 0 && (o.output === 'table' || o.output === 'wide')) {
      err(
        o.notReady && all.length > 0
          ? `all ${all.length} workspace(s) in ${scopeText(o.scope)} are Ready`
          : `no workspaces found in ${scopeText(o.scope)}`,
      );
    }
    if (o.watch) {
      await watchRows(kc, o, all, table, out, err);
      return EXIT.ok;
    }
    return o.notReady && rows.length > 0 ? EXIT.notReady : EXIT.ok;
  } catch (e) {
    return clusterFailure(e, server, err);
  }
}

function scopeText(scope: Scope): string {
  if (scope.allNamespaces) return 'any namespace';
  return scope.namespaces.length === 1
    ? `namespace ${scope.namespaces[0]}`
    : `namespaces ${scope.namespaces.join(', ')}`;
}

function printRows(rows: WorkspaceRow[], o: StatusOptions, out: (l: string) => void): WorkspaceTable {
  const table = new WorkspaceTable(
    { wide: o.output === 'wide', width: o.width, now: Date.now(), roomForChanges: o.watch },
    rows,
  );
  if (o.output === 'json') out(JSON.stringify({ items: rows.map(rowJson) }, null, 2));
  else if (o.output === 'yaml') out(dumpYaml({ items: rows.map(rowJson) }).trimEnd());
  // One write for the whole table: thousands of small writes to a pipe cost more than the rendering.
  else if (rows.length > 0) out([table.header(), ...rows.map((r) => table.line(r))].join('\n'));
  return table;
}

/** What a reader of the table would notice changing (ages move by themselves and do not count). */
function signature(r: WorkspaceRow): string {
  return JSON.stringify([
    r.phase,
    r.ready,
    r.readySince,
    r.failingStep,
    r.reason,
    r.message,
    r.workspaceId,
    r.requestedAt,
    r.lastHandledReconcileAt,
  ]);
}

/**
 * list-watch (the controller's reflector: relists on 410, retries with backoff) and print every row whose
 * state changed since it was last printed, like `kubectl get -w`. With --not-ready, rows that are not
 * Ready, and the ones that recovered from it.
 */
async function watchRows(
  kc: ReturnType<typeof loadUserKubeConfig>,
  o: StatusOptions,
  initial: WorkspaceRow[],
  table: WorkspaceTable,
  out: (l: string) => void,
  err: (l: string) => void,
): Promise<void> {
  const shown = new Map<string, { signature: string; ready: boolean }>();
  for (const r of initial) shown.set(`${r.namespace}/${r.name}`, { signature: signature(r), ready: isReady(r) });
  const emit = (row: WorkspaceRow) => {
    const key = `${row.namespace}/${row.name}`;
    const before = shown.get(key);
    const sig = signature(row);
    if (before?.signature === sig) return;
    shown.set(key, { signature: sig, ready: isReady(row) });
    if (o.notReady && isReady(row) && (before === undefined || before.ready)) return;
    if (o.output === 'json') out(JSON.stringify(rowJson(row)));
    else if (o.output === 'yaml') out(`---\n${dumpYaml(rowJson(row)).trimEnd()}`);
    else out(table.line(row, Date.now()));
  };
  const client = listWatchClient(kc);
  const paths = o.scope.allNamespaces ? [configMapsPath()] : o.scope.namespaces.map((ns) => configMapsPath(ns));
  const reflectors = paths.map((path) =>
    new Reflector({
      client,
      path,
      labelSelector: o.labelSelector,
      log: reflectorLog(err, path),
    })
      .onAdd((cm) => emit(workspaceRow(cm)))
      .onUpdate((_, cm) => emit(workspaceRow(cm)))
      .onDelete((cm) => {
        const row = workspaceRow(cm);
        emit({ ...row, phase: 'Deleted', ready: 'Unknown', reason: 'ConfigMapDeleted', message: 'ConfigMap deleted' });
        shown.delete(objectKey(cm));
      }),
  );
  const stop = o.stop ?? signalStop();
  await Promise.all(reflectors.map((r) => r.start()));
  if (!stop.aborted) await new Promise((resolve) => stop.addEventListener('abort', resolve, { once: true }));
  await Promise.all(reflectors.map((r) => r.stop()));
}

/** Aborted on the first SIGINT or SIGTERM (the handlers go away with it). */
function signalStop(): AbortSignal {
  const ac = new AbortController();
  const onSignal = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ac.signal;
}
