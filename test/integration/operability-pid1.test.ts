// The controller as PID 1 of its container (what a pod runs): Node installs no default action for SIGTERM
// there, so a pod stopped while the process is still loading its modules would wait out its whole grace
// period. A new PID namespace (unshare, as root, like the real-node suite) makes the process PID 1 here.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT } from '../../harness/controller-process.js';
import { waitFor } from '../support/kube.js';

const dir = mkdtempSync(join(tmpdir(), 'fwc-pid1-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the controller as PID 1', () => {
  it('a SIGTERM that arrives while it is still starting ends it at once', async () => {
    expect(process.getuid?.(), 'a PID namespace of our own needs root (CI runs as root)').toBe(0);
    // A cluster that never answers (nothing listens on that port): left alone, the process would run (and
    // retry) forever.
    const kubeconfig = join(dir, 'closed.kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:9', 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token: 'x' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    const args = ['run', '--set', 'server.metricsPort=0', '--set', 'server.healthPort=0', '--kubeconfig', kubeconfig];
    // --kill-child: the namespace's PID 1 is our process, and `unshare` passes signals on to it.
    const child = spawn(
      'unshare',
      ['--fork', '--pid', '--mount-proc', '--kill-child', process.execPath, CLI, ...args],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, HOME: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout?.on('data', (c) => {
      output += c;
    });
    child.stderr?.on('data', (c) => {
      output += c;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // The process inside is PID 1 of its namespace. Signal it once, 1 s after it started: Node has booted
    // and run our first module by then, and the daemon is still loading or has just installed its own
    // handlers. Both must end the process promptly (before the fix, neither did: the signal was dropped,
    // or the graceful stop waited for caches that never sync).
    const pid = await waitFor(() => childPid(child.pid as number), {
      timeoutMs: 10_000,
      intervalMs: 5,
      message: 'the controller process inside the PID namespace',
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain(CLI);
    process.kill(pid, 'SIGTERM');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    if (code === 'hung') child.kill('SIGKILL');
    expect(code, `still running 10 s after SIGTERM:\n${output}`).not.toBe('hung');
  });
});

/** The first child of `parent` (unshare's fork: PID 1 of the new namespace), if any yet. */
function childPid(parent: number): number | undefined {
  try {
    return (
      Number(
        execFileSync('pgrep', ['-P', String(parent)], { encoding: 'utf8' })
          .trim()
          .split('\n')[0],
      ) || undefined
    );
  } catch {
    return undefined;
  }
}
