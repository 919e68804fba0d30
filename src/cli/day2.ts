// Flags of `status` and `rerun` → their options, with the defaults from the controller configuration
// (source namespaces, ConfigMap label selector), so the commands look where the controller looks.
import type { ControllerConfig } from '../config/config.js';
import type { Scope } from './kube.js';
import { parseDuration } from './workspace-rows.js';

type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Field manager of the rerun annotation in the ConfigMap's managedFields (kubectl's is kubectl-annotate). */
export const CLI_FIELD_MANAGER = 'flyte-workspace-controller-cli';
const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const OUTPUTS = ['wide', 'json', 'yaml'] as const;

export async function runDay2(
  command: 'status' | 'rerun',
  cfg: Pick<ControllerConfig, 'sourceNamespaces' | 'configMapSelector'>,
  values: FlagValues,
  positionals: string[],
  usage: (message: string) => number,
): Promise<number> {
  const namespace = values.namespace as string | undefined;
  const kubeconfig = values.kubeconfig as string | undefined;
  const allSources = cfg.sourceNamespaces.includes('*');

  if (command === 'status') {
    if (namespace !== undefined && values['all-namespaces']) return usage('-n and -A exclude each other');
    const output = values.output as string | undefined;
    if (output !== undefined && !(OUTPUTS as readonly string[]).includes(output)) {
      return usage(`-o ${output}: expected one of ${OUTPUTS.join(', ')}`);
    }
    const scope: Scope =
      values['all-namespaces'] || (namespace === undefined && allSources)
        ? { allNamespaces: true }
        : { allNamespaces: false, namespaces: namespace !== undefined ? [namespace] : cfg.sourceNamespaces };
    const { runStatus } = await import('./status.js');
    return runStatus({
      kubeconfig,
      scope,
      labelSelector: cfg.configMapSelector,
      notReady: values['not-ready'] === true,
      watch: values.watch === true,
      output: (output as (typeof OUTPUTS)[number] | undefined) ?? 'table',
      width: terminalWidth(),
    });
  }

  const allNotReady = values['all-not-ready'] === true;
  if (allNotReady === positionals.length > 0)
    return usage('give workspace ConfigMap names or --all-not-ready (one of them)');
  if (namespace === undefined && allSources) return usage('-n NAMESPACE is required: sourceNamespaces is "*"');
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (values.timeout !== undefined) {
    const parsed = parseDuration(values.timeout as string);
    if (parsed === undefined) return usage(`--timeout ${values.timeout}: expected a duration such as 90s, 5m or 1h`);
    timeoutMs = parsed;
  }
  const { runRerun } = await import('./rerun.js');
  return runRerun({
    kubeconfig,
    namespace: namespace ?? (cfg.sourceNamespaces[0] as string),
    names: positionals,
    allNotReady,
    labelSelector: cfg.configMapSelector,
    timeoutMs,
    fieldManager: CLI_FIELD_MANAGER,
  });
}

/** Columns to fit the table in: the terminal's, or $COLUMNS; 0 (no cutting) when writing to a pipe or file. */
function terminalWidth(): number {
  if (process.stdout.isTTY) return process.stdout.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : 0;
}
