// `flyte-workspace-controller rerun`: ask the controller to reconcile workspaces now and wait for the answer,
// the way `flux reconcile` does: annotate with a fresh token (JSON merge patch of that one annotation),
// wait until the status echoes it in lastHandledReconcileAt, report Ready or why not. Progress goes to
// stderr in Flux's wording and symbols (► action, ✔ success, ◎ waiting, ✗ failure).
import { CallStats } from '../adapters/call-stats.js';
import { HttpKubeApi, type KubeObject } from '../adapters/kubernetes.js';
import { RECONCILE_REQUEST_ANNOTATION, STATUS_ANNOTATION } from '../config/config.js';
import { KubeStatusError } from '../kube/status.js';
import { matchesSelector } from '../reconcile/reconciler.js';
import { parseStatus } from '../reconcile/status.js';
import { Reflector } from '../watch/reflector.js';
import {
  clusterFailure,
  configMapsPath,
  EXIT,
  listWatchClient,
  listWorkspaceConfigMaps,
  loadUserKubeConfig,
  reflectorLog,
} from './kube.js';
import { formatDuration, isReady, workspaceRow } from './workspace-rows.js';

export interface RerunOptions {
  kubeconfig?: string;
  namespace: string;
  names: string[];
  allNotReady: boolean;
  labelSelector: string;
  timeoutMs: number;
  /** Field manager of the annotation patch (shows in the ConfigMap's managedFields). */
  fieldManager: string;
  err?: (line: string) => void;
  /** The rerun token; default: now, RFC 3339 (what `flux reconcile` writes). */
  token?: string;
}

/** The rerun request: exactly one annotation, nothing else of the ConfigMap. */
export function rerunPatch(token: string): { metadata: { annotations: Record<string, string> } } {
  return { metadata: { annotations: { [RECONCILE_REQUEST_ANNOTATION]: token } } };
}

/**
 * Whether the controller has answered the request `token`. A later request (someone else's rerun) that
 * replaced ours and was handled answers ours too.
 */
export function rerunHandled(cm: KubeObject, token: string): boolean {
  const handled = parseStatus(cm.metadata.annotations?.[STATUS_ANNOTATION])?.lastHandledReconcileAt;
  if (handled === undefined) return false;
  const current = cm.metadata.annotations?.[RECONCILE_REQUEST_ANNOTATION];
  return handled === token || (current !== undefined && current !== token && handled === current);
}

export async function runRerun(o: RerunOptions): Promise<number> {
  const say = o.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  const ns = o.namespace;
  let server: string | undefined;
  try {
    const kc = loadUserKubeConfig(o.kubeconfig);
    server = kc.getCurrentCluster()?.server;
    const kube = new HttpKubeApi(kc, { fieldManager: o.fieldManager, stats: new CallStats('kubernetes') });
    let failed = 0;
    let targets: string[] = [];
    if (o.allNotReady) {
      const listed = await listWorkspaceConfigMaps(
        listWatchClient(kc),
        { allNamespaces: false, namespaces: [ns] },
        o.labelSelector,
      );
      const rows = listed.items.map(workspaceRow);
      targets = rows.filter((r) => !isReady(r)).map((r) => r.name);
      if (targets.length === 0) {
        say(`✔ all ${rows.length} workspace(s) in ${ns} namespace are Ready; nothing to rerun`);
        return EXIT.ok;
      }
      say(`► ${targets.length} of ${rows.length} workspace(s) in ${ns} namespace are not Ready`);
    } else {
      for (const name of new Set(o.names)) {
        const cm = await kube.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name });
        if (!cm) {
          say(`✗ workspace ${name} not found in ${ns} namespace`);
          failed++;
        } else if (!matchesSelector(cm, o.labelSelector)) {
          say(`✗ ConfigMap ${name} in ${ns} namespace is not a workspace (labels do not match ${o.labelSelector})`);
          failed++;
        } else targets.push(name);
      }
    }

    const token = o.token ?? new Date().toISOString();
    const annotated: string[] = [];
    for (const name of targets) {
      say(`► annotating workspace ${name} in ${ns} namespace`);
      try {
        await kube.mergePatch({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name }, rerunPatch(token), {
          fieldManager: o.fieldManager,
        });
        say(`✔ workspace ${name} annotated`);
        annotated.push(name);
      } catch (e) {
        // Deleted since it was read: one failure. Anything else (Forbidden, unreachable) ends the run below.
        if (!(e instanceof KubeStatusError && e.code === 404)) throw e;
        say(`✗ workspace ${name} not found in ${ns} namespace`);
        failed++;
      }
    }
    if (annotated.length > 0) failed += await waitForAnswers(kc, o, annotated, token, say);
    const requested = o.allNotReady ? targets.length : new Set(o.names).size;
    if (requested > 1) {
      say(
        failed > 0
          ? `✗ ${failed} of ${requested} workspaces are not Ready`
          : `✔ ${requested} workspaces reconciled and Ready`,
      );
    }
    return failed > 0 ? EXIT.notReady : EXIT.ok;
  } catch (e) {
    return clusterFailure(e, server, say);
  }
}

/** Watches the annotated ConfigMaps until each status echoes the token, or the timeout; returns the failures. */
async function waitForAnswers(
  kc: ReturnType<typeof loadUserKubeConfig>,
  o: RerunOptions,
  names: string[],
  token: string,
  say: (l: string) => void,
): Promise<number> {
  const pending = new Set(names);
  let failed = 0;
  say(
    names.length === 1
      ? `◎ waiting for workspace ${names[0]} reconciliation`
      : `◎ waiting for ${names.length} workspace reconciliations`,
  );
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const settle = (name: string, ok: boolean) => {
    pending.delete(name);
    if (!ok) failed++;
    if (pending.size === 0) finish();
  };
  const check = (cm: KubeObject) => {
    const name = cm.metadata.name;
    if (!pending.has(name) || !rerunHandled(cm, token)) return;
    const row = workspaceRow(cm);
    say(`✔ workspace ${name} reconciliation completed`);
    if (isReady(row)) say(`✔ workspace ${name} is Ready: ${row.message || row.phase}`);
    else {
      const where = row.failingStep ? `${row.failingStep} ${row.reason}` : row.reason;
      say(`✗ workspace ${name} reconciliation failed: ${row.phase} (${where}): ${row.message}`);
    }
    settle(name, isReady(row));
  };
  const reflector = new Reflector({
    client: listWatchClient(kc),
    path: configMapsPath(o.namespace),
    labelSelector: o.labelSelector,
    log: reflectorLog(say, configMapsPath(o.namespace)),
    // One object: let the server filter instead of sending the whole namespace.
    ...(names.length === 1 ? { fieldSelector: `metadata.name=${names[0]}` } : {}),
  })
    .onAdd(check)
    .onUpdate((_, cm) => check(cm))
    .onDelete((cm) => {
      if (!pending.has(cm.metadata.name)) return;
      say(`✗ workspace ${cm.metadata.name} was deleted while waiting for its reconciliation`);
      settle(cm.metadata.name, false);
    });
  const timer = setTimeout(finish, o.timeoutMs);
  void reflector.start();
  await done;
  clearTimeout(timer);
  await reflector.stop();
  for (const name of pending) {
    say(`✗ timed out after ${formatDuration(o.timeoutMs)} waiting for workspace ${name} reconciliation`);
    failed++;
  }
  return failed;
}
