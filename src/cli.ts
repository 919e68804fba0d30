#!/usr/bin/env node
// flyte-workspace-controller: `run` the daemon, `plan` a workspace against live systems, `validate` a document,
// and the day-2 commands `status` and `rerun` (src/cli/), which need only a kubeconfig with access to the
// workspace ConfigMaps.
// First, and for its side effect: stop signals work from here on (see early-signals.ts).
import './cli/early-signals.js';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { releaseEarlySignals } from './cli/early-signals.js';
import { ConfigError, type ControllerConfig, loadConfig } from './config/config.js';
import { formatFieldErrors, parseWorkspace, type WorkspaceDocument, workspaceDocument } from './spec/workspace.js';

const USAGE: Record<string, string> = {
  main: `Usage: flyte-workspace-controller <command> [options]

Commands:
  run        start the controller (watch workspace ConfigMaps and reconcile)
  plan       show what the controller would create, change and delete for a workspace, changing nothing
  validate   check a workspace.json and report every error
  status     show every workspace's phase, readiness and last error (from the ConfigMaps' status)
  rerun      reconcile workspaces now and wait for the result

Run 'flyte-workspace-controller <command> --help' for the options of a command.`,
  run: `Usage: flyte-workspace-controller run [--config FILE] [--set SETTING=VALUE]... [--kubeconfig FILE]

Starts the daemon: leader election, watches, work queue, /metrics, /healthz, /readyz.
  --config FILE       controller configuration (JSON); FWC_CONFIG and FWC_* variables also apply
  --set K=V           override one setting, e.g. --set reconcile.concurrency=8 (flags beat env beat file)
  --kubeconfig FILE   kubeconfig to use (default: KUBECONFIG, then in-cluster, then ~/.kube/config)`,
  plan: `Usage: flyte-workspace-controller plan -f FILE [--source NAMESPACE/NAME] [--config FILE] [--kubeconfig FILE] [--json]

Computes the changes a reconcile of the workspace would make in Kubernetes (server-side dry-run),
IAM and FlyteAdmin, reading live state and writing nothing.
  -f, --file FILE     workspace.json, or a ConfigMap (JSON or YAML) holding it; '-' reads standard input
  --source NS/NAME    the ConfigMap that owns the workspace (default: <first source namespace>/<workspace id>)
  --json              print the plan as JSON`,
  validate: `Usage: flyte-workspace-controller validate -f FILE [--config FILE]

Validates a workspace.json (or a ConfigMap holding one) and prints every error with its field.
Exit code 0 when valid, 1 when invalid.`,
  status: `Usage: flyte-workspace-controller status [-n NAMESPACE | -A] [--not-ready] [-w] [-o wide|json|yaml] [--kubeconfig FILE] [--config FILE]

One line per workspace ConfigMap: source, workspace id, phase, Ready and for how long, the failing step
and its reason, the last error (cut to the terminal width). Reads the ConfigMaps' status annotation with
one paginated LIST; needs get/list (and watch for -w) on configmaps, nothing of the controller.
  -n, --namespace NS     source namespace to read (default: the configured sourceNamespaces, workspace-platform)
  -A, --all-namespaces   every namespace (ConfigMaps labelled with configMapSelector, app=workspace-config)
  --not-ready            only workspaces whose Ready condition is not True
  -w, --watch            keep watching and print a line whenever a workspace changes (Ctrl-C ends)
  -o, --output FORMAT    wide (adds namespaces, role, project, rerun state; message not cut), json or yaml
Exit codes: 0 listed; 1 --not-ready found some; 2 usage; 3 cluster unreachable (or no usable
kubeconfig); 4 the API server refused (Unauthorized, Forbidden).`,
  rerun: `Usage: flyte-workspace-controller rerun (NAME... | --all-not-ready) [-n NAMESPACE] [--timeout 5m] [--kubeconfig FILE] [--config FILE]

Requests a reconcile of each named workspace ConfigMap now, like \`flux reconcile\`: sets the annotation
workspaces.flyte.org/reconcile-requested-at to a fresh token (a JSON merge patch of that annotation only),
waits until the controller's status reports it handled (lastHandledReconcileAt), and prints the result.
Needs get, list, watch and patch on configmaps in the namespace (manifests/oncall-rbac.yaml).
  -n, --namespace NS     source namespace (default: the first configured source namespace, workspace-platform)
  --all-not-ready        rerun every workspace in the namespace whose Ready condition is not True
  --timeout DURATION     how long to wait for the controller, e.g. 90s, 5m (default 5m)
Exit codes: 0 every workspace reconciled and Ready; 1 some are not Ready, timed out or not found;
2 usage; 3 cluster unreachable (or no usable kubeconfig); 4 the API server refused (Unauthorized, Forbidden).`,
};

/** The options each command takes; any other is a usage error. */
const COMMAND_OPTIONS: Record<string, string[]> = {
  run: ['config', 'set', 'kubeconfig'],
  plan: ['config', 'set', 'kubeconfig', 'file', 'source', 'json'],
  validate: ['config', 'set', 'file'],
  status: ['config', 'set', 'kubeconfig', 'namespace', 'all-namespaces', 'not-ready', 'watch', 'output'],
  rerun: ['config', 'set', 'kubeconfig', 'namespace', 'all-not-ready', 'timeout'],
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // The interim stop handlers are for the daemon's start-up; the other commands handle (or ignore) signals
  // themselves, e.g. `status --watch` ends with exit 0 on Ctrl-C.
  if (command !== 'run') releaseEarlySignals();
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE.main);
    return command ? 0 : 2;
  }
  if (!(command in USAGE) || command === 'main') {
    console.error(`unknown command "${command}"\n\n${USAGE.main}`);
    return 2;
  }
  let values: Record<string, string | boolean | string[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: {
        help: { type: 'boolean', short: 'h' },
        config: { type: 'string' },
        kubeconfig: { type: 'string' },
        file: { type: 'string', short: 'f' },
        source: { type: 'string' },
        json: { type: 'boolean' },
        set: { type: 'string', multiple: true },
        namespace: { type: 'string', short: 'n' },
        'all-namespaces': { type: 'boolean', short: 'A' },
        'not-ready': { type: 'boolean' },
        watch: { type: 'boolean', short: 'w' },
        output: { type: 'string', short: 'o' },
        'all-not-ready': { type: 'boolean' },
        timeout: { type: 'string' },
      },
      strict: true,
      allowPositionals: true,
    }));
    const misplaced = Object.keys(values).find((k) => k !== 'help' && !COMMAND_OPTIONS[command]?.includes(k));
    if (misplaced) throw new Error(`option --${misplaced} does not apply to ${command}`);
    if (positionals.length > 0 && command !== 'rerun') throw new Error(`unexpected argument "${positionals[0]}"`);
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE[command]}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE[command]);
    return 0;
  }
  let cfg: ControllerConfig;
  try {
    cfg = loadConfig({
      file: values.config as string | undefined,
      env: process.env,
      overrides: setOverrides((values.set as string[] | undefined) ?? []),
    });
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : `cannot load configuration: ${(err as Error).message}`);
    return 2;
  }

  if (command === 'status' || command === 'rerun') {
    const { runDay2 } = await import('./cli/day2.js');
    const usage = (message: string) => {
      console.error(`${message}\n\n${USAGE[command]}`);
      return 2;
    };
    return runDay2(command, cfg, values, positionals, usage);
  }

  if (command === 'run') {
    const { runDaemon } = await import('./controller/daemon.js');
    return runDaemon(cfg, {
      kubeconfig: values.kubeconfig as string | undefined,
      onSignalsHandled: releaseEarlySignals,
    });
  }

  if (!values.file) {
    console.error(`-f FILE is required\n\n${USAGE[command]}`);
    return 2;
  }
  let raw: WorkspaceDocument;
  try {
    raw = await readDocument(values.file as string, cfg.configMapKey);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const parsed = parseWorkspace(raw, cfg);
  if (command === 'validate') {
    if (parsed.ok) {
      console.log(`valid: workspace ${parsed.spec.workspaceId} (flyte ${parsed.spec.flyteEnabled ? 'on' : 'off'})`);
      return 0;
    }
    for (const e of parsed.errors) console.log(`${e.field}: ${e.message}`);
    return 1;
  }
  if (!parsed.ok) {
    console.error(`invalid workspace document: ${formatFieldErrors(parsed.errors, 50)}`);
    return 1;
  }
  const { runPlan } = await import('./controller/plan.js');
  return runPlan(cfg, parsed.spec, parsed.specHash, {
    kubeconfig: values.kubeconfig as string | undefined,
    source: (values.source as string | undefined) ?? `${cfg.sourceNamespaces[0]}/${parsed.spec.workspaceId}`,
    json: values.json === true,
  });
}

/** `--set a.b=value` (repeatable) → { a: { b: value } }; values parse as JSON when they can. */
export function setOverrides(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(pair, 'expected --set path.to.setting=value');
    const path = pair.slice(0, eq).split('.');
    let value: unknown = pair.slice(eq + 1);
    try {
      value = JSON.parse(value as string);
    } catch {
      // plain string
    }
    let node = out;
    path.forEach((seg, i) => {
      if (i === path.length - 1) node[seg] = value;
      else {
        node[seg] ??= {};
        node = node[seg] as Record<string, unknown>;
      }
    });
  }
  return out;
}

/** Reads workspace.json from a file or stdin; a ConfigMap document is unwrapped to its data key. */
/** The document as bytes, so that invalid UTF-8 is reported rather than silently replaced. */
async function readDocument(file: string, dataKey: string): Promise<WorkspaceDocument> {
  const bytes = file === '-' ? readFileSync(0) : readFileSync(file);
  const text = bytes.toString('utf8');
  const trimmed = text.trimStart();
  if (/^(apiVersion|kind|metadata):/m.test(trimmed) && !trimmed.startsWith('{')) {
    const { loadYaml } = await import('@kubernetes/client-node');
    return extractFromConfigMap(loadYaml(text), dataKey, file);
  }
  try {
    const doc = JSON.parse(text) as { kind?: unknown };
    if (doc && doc.kind === 'ConfigMap') return extractFromConfigMap(doc, dataKey, file);
  } catch {
    // Not JSON: hand the raw bytes to the validator, which reports them precisely.
  }
  return bytes;
}

function extractFromConfigMap(doc: unknown, dataKey: string, file: string): WorkspaceDocument {
  const raw = workspaceDocument((doc ?? {}) as Record<string, unknown>, dataKey);
  if (typeof raw !== 'string' && !(raw instanceof Uint8Array)) {
    throw new Error(`${file}: ConfigMap has no data key "${dataKey}"`);
  }
  return raw;
}

const isEntry = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry || process.argv[1]?.endsWith('/cli.js')) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      // A missing cluster configuration is the operator's to fix: its message says how, a stack would not.
      const expected = err instanceof Error && err.name === 'ClusterConfigError';
      console.error(err instanceof Error ? (expected ? err.message : (err.stack ?? err.message)) : String(err));
      process.exitCode = 1;
    },
  );
}
