// How manifests/deployment.yaml starts the controller: Node's flags on the container's command line and
// any NODE_OPTIONS in its environment. The benchmark runs the controller with the same flags, and a unit
// test checks that Node accepts each of them where the manifest puts it.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// js-yaml as client-node uses it, reading the documents exactly as written (no typed-model mapping).
const requireFromClientNode = createRequire(createRequire(import.meta.url).resolve('@kubernetes/client-node'));
const { loadAll } = requireFromClientNode('js-yaml') as { loadAll(text: string): unknown[] };

export interface ControllerNodeInvocation {
  /** The flags between `node` and the script in the container's `command`. */
  nodeFlags: string[];
  /** The script node runs (e.g. /app/dist/cli.js). */
  script: string;
  /** The container's `args` (the CLI's command line). */
  args: string[];
  /** The container's NODE_OPTIONS environment value, when it sets one. */
  nodeOptions: string | undefined;
}

interface Container {
  name?: string;
  command?: unknown;
  args?: unknown;
  env?: { name?: string; value?: unknown }[];
}

const strings = (v: unknown, what: string): string[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`${what} must be a list of strings`);
  return v as string[];
};

/** Reads the Deployment's container `containerName` from the text of a manifest file. */
export function controllerNodeInvocation(manifestText: string, containerName = 'controller'): ControllerNodeInvocation {
  const deployment = loadAll(manifestText).find(
    (d): d is { spec?: { template?: { spec?: { containers?: Container[] } } } } =>
      typeof d === 'object' && d !== null && (d as { kind?: unknown }).kind === 'Deployment',
  );
  if (!deployment) throw new Error('no Deployment in the manifest');
  const container = deployment.spec?.template?.spec?.containers?.find((c) => c.name === containerName);
  if (!container) throw new Error(`the Deployment has no container "${containerName}"`);
  const where = `spec.template.spec.containers[name=${containerName}]`;
  const command = strings(container.command, `${where}.command`);
  if (command[0] !== 'node')
    throw new Error(`${where}.command must start with "node" (got ${JSON.stringify(command)})`);
  const scriptAt = command.findIndex((c, i) => i > 0 && !c.startsWith('-'));
  if (scriptAt < 0) throw new Error(`${where}.command names no script for node`);
  const nodeOptions = container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  return {
    nodeFlags: command.slice(1, scriptAt),
    script: command[scriptAt] as string,
    args: [...command.slice(scriptAt + 1), ...strings(container.args, `${where}.args`)],
    nodeOptions: typeof nodeOptions === 'string' ? nodeOptions : undefined,
  };
}

/** The same, read from a manifest file. */
export function controllerNodeInvocationOf(file: string, containerName?: string): ControllerNodeInvocation {
  return controllerNodeInvocation(readFileSync(file, 'utf8'), containerName);
}
