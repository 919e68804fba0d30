// Node refuses some of its flags in NODE_OPTIONS (--optimize-for-size: "is not allowed in NODE_OPTIONS",
// exit 9) while accepting them on the command line, so a Deployment that puts them in its env crash-loops on
// every cluster before any of our code runs. This runs node exactly as manifests/deployment.yaml does.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ControllerNodeInvocation, controllerNodeInvocation } from '../../harness/deployment-manifest.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MANIFEST = readFileSync(join(ROOT, 'manifests/deployment.yaml'), 'utf8');

/** What node says about the flags where the manifest puts them; empty when it accepts all of them. */
function refusals(invocation: ControllerNodeInvocation): string[] {
  const out: string[] = [];
  const run = (args: string[], env: NodeJS.ProcessEnv, where: string) => {
    const r = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) out.push(`${where}: exit ${r.status ?? r.signal}: ${r.stderr.trim()}`);
  };
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  run([...invocation.nodeFlags, '-e', '0'], env, `command line ${JSON.stringify(invocation.nodeFlags)}`);
  if (invocation.nodeOptions !== undefined) {
    run(['-e', '0'], { ...env, NODE_OPTIONS: invocation.nodeOptions }, `NODE_OPTIONS="${invocation.nodeOptions}"`);
  }
  return out;
}

describe('manifests/deployment.yaml starts node with flags node accepts', () => {
  const shipped = controllerNodeInvocation(MANIFEST);

  it('sets the heap limit on the command line and node accepts every flag where it is put', () => {
    expect(shipped.nodeFlags).toContain('--max-old-space-size=384');
    expect(refusals(shipped)).toEqual([]);
  });

  it('runs the script the image ships, where the image puts it', () => {
    // The runtime stage's WORKDIR and ENTRYPOINT script, as the Dockerfile writes them.
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const workdir = [...dockerfile.matchAll(/^WORKDIR\s+(\S+)/gm)].at(-1)?.[1];
    const entrypoint = JSON.parse(/^ENTRYPOINT\s+(\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]') as string[];
    expect(entrypoint[0]).toBe('node');
    expect(shipped.script).toBe(`${workdir}/${entrypoint[1]}`);
    expect(shipped.args[0]).toBe('run');
  });

  it('would catch a flag that node refuses in NODE_OPTIONS', () => {
    // The manifest as it shipped before: both flags in the container's env.
    const broken = MANIFEST.replace(
      /(\n\s+)- name: NODE_ENV\n/,
      '$1- name: NODE_OPTIONS$1  value: "--max-old-space-size=384 --optimize-for-size"$&',
    );
    const invocation = controllerNodeInvocation(broken);
    expect(invocation.nodeOptions).toBe('--max-old-space-size=384 --optimize-for-size');
    expect(refusals(invocation).join('\n')).toMatch(/exit 9: .*--optimize-for-size is not allowed in NODE_OPTIONS/);
  });
});
