// The controller process when kube-apiserver cannot be reached, as an operator meets it: the log names the
// server and the cause (connection refused, TLS, 401), /readyz is 503 with the reason under ?verbose while
// the server was never reached or has been lost beyond the renew deadline, and a missing cluster
// configuration stops the process at once with a message naming both ways to give one.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLI, REPO_ROOT } from '../../harness/controller-process.js';
import { CONTROLLER_USERNAME } from '../../harness/controlplane.js';
import { type KubeProxy, startKubeProxy } from '../support/faults.js';
import { waitFor } from '../support/kube.js';
import { type Daemon, type DaemonEnv, daemonEnv, startDaemon } from './daemon-helpers.js';

let env: DaemonEnv;

beforeAll(async () => {
  env = await daemonEnv('contact');
});

afterAll(async () => {
  await env?.cleanup();
});

/** A port nothing listens on (bound once, then closed). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A kubeconfig file for the controller identity with `cluster` fields of the test's choosing. */
function kubeconfigWith(name: string, cluster: Record<string, unknown>, token = inject('kube').controllerToken) {
  const path = join(env.dir, `${name}.kubeconfig`);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster }],
      users: [{ name: CONTROLLER_USERNAME, user: { token } }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: CONTROLLER_USERNAME } }],
      'current-context': 'ctx',
    }),
    { mode: 0o600 },
  );
  return path;
}

/** A daemon of `env` whose kubeconfig is `kubeconfig` (stopped by the env's cleanup too). */
function startWith(name: string, kubeconfig: string, overrides: Record<string, unknown> = {}): Promise<Daemon> {
  return startDaemon({ ...env, kubeconfig }, name, overrides);
}

function logLines(d: Daemon): { msg?: string; server?: string; cause?: string; reason?: string }[] {
  return d.logs.flatMap((l: string) => {
    try {
      return [JSON.parse(l)];
    } catch {
      return [];
    }
  });
}

async function notReadyBecause(d: Daemon, pattern: RegExp): Promise<string> {
  return waitFor(
    async () => {
      const r = await d.http('health', '/readyz?verbose');
      return r.status === 503 && pattern.test(r.body) ? r.body : undefined;
    },
    { timeoutMs: 30_000, message: `/readyz 503 matching ${pattern}` },
  );
}

describe('an unreachable API server is named, with its cause, and keeps the process not ready', () => {
  it('connection refused: the log names the server and the cause; /readyz 503 says why; /healthz stays 200', async () => {
    const server = `https://127.0.0.1:${await closedPort()}`;
    const d = await startWith('refused', kubeconfigWith('refused', { server, 'insecure-skip-tls-verify': true }));
    try {
      const body = await notReadyBecause(d, /apiserver/);
      expect(body).toContain(`[-]apiserver failed: never reached: cannot reach the Kubernetes API server ${server}`);
      expect(body).toContain('connection refused (ECONNREFUSED)');
      await waitFor(() => logLines(d).find((l) => l.cause === 'connection-refused' && l.server === server), {
        timeoutMs: 10_000,
        message: `an error log line naming ${server} and connection-refused`,
      });
      // The lease loop's own lines name the server too, not "fetch failed".
      const leaseLines = logLines(d).filter((l) => l.msg === 'error retrieving lease');
      expect(leaseLines.length).toBeGreaterThan(0);
      for (const l of leaseLines) expect(l.reason).toContain(`${server}: connection refused (ECONNREFUSED)`);
      // Liveness is not readiness: restarting the pod would not bring the server back.
      expect((await d.http('health', '/healthz')).status).toBe(200);
    } finally {
      await d.stop();
    }
  });

  it('an untrusted server certificate is reported as a TLS problem', async () => {
    const { server } = inject('kube');
    const d = await startWith('tls', kubeconfigWith('tls', { server }));
    try {
      const body = await notReadyBecause(d, /TLS/);
      expect(body).toMatch(/never reached: cannot reach the Kubernetes API server .*: TLS: /);
    } finally {
      await d.stop();
    }
  });

  it('rejected credentials are reported as 401 Unauthorized', async () => {
    const { server, caData } = inject('kube');
    const path = kubeconfigWith('badtoken', { server, 'certificate-authority-data': caData }, 'not-a-valid-token');
    const d = await startWith('badtoken', path);
    try {
      const body = await notReadyBecause(d, /401/);
      expect(body).toContain(`the Kubernetes API server ${server} answered 401 Unauthorized`);
    } finally {
      await d.stop();
    }
  });

  it('a server lost beyond the renew deadline makes the process not ready, and ready again when it returns', async () => {
    const proxy: KubeProxy = await startKubeProxy(inject('kube'));
    // Leader election off: a leader that loses the server loses its lease and exits, which the failover
    // tests cover; here the same process must say it is cut off and recover by itself.
    const d = await startWith('lost', proxy.kubeconfigFile('controller', env.dir), {
      leaderElection: { enabled: false },
    });
    try {
      await waitFor(async () => (await d.http('health', '/readyz')).status === 200, {
        timeoutMs: 30_000,
        message: 'ready once caches synced',
      });
      proxy.setDown(true);
      proxy.killWatches();
      const body = await notReadyBecause(d, /apiserver failed: lost for \d+s/);
      expect(body).toContain(`cannot reach the Kubernetes API server ${proxy.url}`);
      proxy.setDown(false);
      await waitFor(async () => (await d.http('health', '/readyz')).status === 200, {
        timeoutMs: 60_000,
        message: 'ready again once the server answers',
      });
      expect(logLines(d).some((l) => l.msg === 'reached the Kubernetes API server again')).toBe(true);
    } finally {
      await d.stop();
      await proxy.close();
    }
  });
});

describe('no cluster configuration at all', () => {
  it('is a startup error that names both ways to configure one, not a TLS message later', async () => {
    const home = mkdtempSync(join(tmpdir(), 'fwc-nohome-'));
    try {
      const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home };
      const child = spawn(
        process.execPath,
        [CLI, 'run', '--set', 'server.metricsPort=0', '--set', 'server.healthPort=0'],
        {
          cwd: REPO_ROOT,
          env: childEnv,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      child.stdout?.on('data', (c) => {
        out += c;
      });
      child.stderr?.on('data', (c) => {
        out += c;
      });
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      expect(code).toBe(1);
      expect(out).toContain('no Kubernetes cluster configuration found');
      expect(out).toContain('KUBERNETES_SERVICE_HOST');
      expect(out).toContain('--kubeconfig');
      expect(out).not.toContain('skipTLSVerify');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
