// Starts moto's server (an AWS emulator; we use its IAM) on a free local port for tests.
// docs/external-systems.md (IAM) says where moto deviates from AWS; no test may rely on those deviations.
//
// The server is `python -m moto.server -H 127.0.0.1 -p 0` (the project's pinned venv), run through a tiny
// wrapper that also exits when its stdin closes: if the test process dies without running exit handlers
// (SIGKILL, crash), the pipe closes and moto goes with it instead of lingering on the machine.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export interface Moto {
  /** http://127.0.0.1:<port> — use as the AWS endpoint for every service. */
  endpoint: string;
  /** Drops all state (every service, every account). */
  reset(): Promise<void>;
  /** Stops the server; safe to call twice. */
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /** Python interpreter. Default $MOTO_PYTHON, else the project's pinned venv (.tools/moto-venv). */
  python?: string;
  startTimeoutMs?: number;
  /** Extra environment for the server (e.g. MOTO_ACCOUNT_ID). */
  env?: Record<string, string>;
}

const WRAPPER = [
  'import os, sys, threading, runpy',
  'def _watch():',
  '    try:',
  '        sys.stdin.buffer.read()',
  '    finally:',
  '        os._exit(0)',
  'threading.Thread(target=_watch, daemon=True).start()',
  "sys.argv = ['moto.server', '-H', '127.0.0.1', '-p', '0']",
  "runpy.run_module('moto.server', run_name='__main__', alter_sys=True)",
].join('\n');

const LISTENING = /Running on (http:\/\/127\.0\.0\.1:(\d+))/;

/**
 * The python of the project's moto virtual environment, which scripts/lib/toolchain.sh (ensure_moto; run by
 * `npm test` and `npm run local`) installs with moto pinned. Found by walking up to the project root, so it
 * does not depend on where this file lives.
 */
export function projectMotoPython(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return join(dir, '.tools', 'moto-venv', 'bin', 'python');
}

export async function startMoto(opts: StartMotoOptions = {}): Promise<Moto> {
  const python = opts.python ?? process.env.MOTO_PYTHON ?? projectMotoPython();
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const child = spawn(python, ['-u', '-c', WRAPPER], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...opts.env },
  });
  // Keep draining both streams for the server's whole life: moto logs every request, and a full pipe
  // would block it. Only the tail is kept, for error messages.
  const tail: string[] = [];
  let onLine: ((line: string) => void) | undefined;
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
      onLine?.(line);
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  let endpoint: string;
  try {
    endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`moto did not start within ${timeoutMs} ms:\n${tail.join('\n')}`)),
        timeoutMs,
      );
      onLine = (line) => {
        const m = LISTENING.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1] as string);
        }
      };
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          err.code === 'ENOENT'
            ? new Error(
                `cannot start moto: "${python}" not found (\`source scripts/lib/toolchain.sh && ensure_moto\` installs it; npm test and npm run local do)`,
              )
            : err,
        );
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        const text = tail.join('\n');
        reject(
          new Error(
            /No module named ['"]?moto/.test(text)
              ? `cannot start moto: the Python module "moto" is not installed for ${python} (pip install -r scripts/lib/moto-requirements.txt)`
              : `moto exited before listening (code ${code}, signal ${signal}):\n${text}`,
          ),
        );
      });
    });
    onLine = undefined;
    await waitReady(endpoint, timeoutMs);
  } catch (err) {
    killOnExit();
    process.removeListener('exit', killOnExit);
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    async reset() {
      const res = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      if (!res.ok) throw new Error(`moto reset failed: HTTP ${res.status}`);
      await res.arrayBuffer();
    },
    stop() {
      stopped ??= (async () => {
        process.removeListener('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.stdin?.end(); // the wrapper exits on EOF
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      })();
      return stopped;
    },
  };
}

async function waitReady(endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${endpoint}/moto-api/`);
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`moto at ${endpoint} not ready within ${timeoutMs} ms (${last})`);
}
