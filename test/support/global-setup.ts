// vitest globalSetup of the `integration` project: one real control plane (etcd + kube-apiserver +
// kube-controller-manager) and one moto server for the whole run, torn down at the end. Any failure here
// throws, so the run fails rather than skipping the integration tests.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ApiException, CoreV1Api } from '@kubernetes/client-node';
import type { TestProject } from 'vitest/node';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.js';
import { startMoto } from '../../harness/moto.js';
import { applyManifestFile, describeError, kubeConfigFor, waitFor } from './kube.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const NAMESPACES = ['flyte-workspace-controller', 'workspace-platform', 'flyte'];
const MANIFESTS = ['manifests/rbac.yaml', 'manifests/workspace-roles.yaml', 'manifests/admission-policy.yaml'];

const say = (msg: string) => process.stderr.write(`[global-setup] ${msg}\n`);

/** Runs scripts/build-control-plane.sh (a no-op when the binaries exist) and returns the directory it prints. */
async function resolveBinDir(): Promise<string> {
  const script = `${root}scripts/build-control-plane.sh`;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      out += c;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = out.trim().split('\n').pop() ?? '';
      if (code === 0 && dir) resolve(dir);
      else
        reject(new Error(`${script} failed (exit ${code}); its output is above. Control-plane binaries are required.`));
    });
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  const binDir = await resolveBinDir();
  const cp: ControlPlane = await startControlPlane({ binDir });
  say(`control plane up at ${cp.server} in ${Date.now() - t0} ms (logs: ${cp.dir})`);
  let moto: Awaited<ReturnType<typeof startMoto>> | undefined;
  try {
    const admin = kubeConfigFor('admin', cp);
    const core = admin.makeApiClient(CoreV1Api);
    for (const name of NAMESPACES) {
      try {
        await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
      } catch (e) {
        if (!(e instanceof ApiException && e.code === 409))
          throw new Error(`creating namespace ${name}: ${describeError(e)}`);
      }
    }
    for (const m of MANIFESTS) await applyManifestFile(admin, `${root}${m}`);
    await waitForAdmissionPolicy(cp);
    say(`namespaces and manifests applied (${Date.now() - t0} ms)`);

    moto = await startMoto();
    say(`moto at ${moto.endpoint} (${Date.now() - t0} ms)`);
  } catch (e) {
    await moto?.stop().catch(() => {});
    const tails = cp.logTails();
    await cp.stop().catch(() => {});
    throw new Error(`integration setup failed: ${(e as Error).message}\n${tails}`);
  }

  project.provide('kube', {
    server: cp.server,
    caData: cp.caData,
    adminToken: cp.adminToken,
    controllerToken: cp.controllerToken,
    oncallToken: cp.oncallToken,
  });
  project.provide('motoEndpoint', moto.endpoint);

  const running = moto;
  return async () => {
    const t = Date.now();
    const errors: unknown[] = [];
    await running.stop().catch((e: unknown) => errors.push(e));
    await cp.stop().catch((e: unknown) => errors.push(e));
    say(`teardown took ${Date.now() - t} ms`);
    if (errors.length > 0) throw new AggregateError(errors, 'integration teardown failed');
  };
}

/**
 * Policies reach the admission plugin through an informer, so the first requests after applying
 * admission-policy.yaml may not see it. Probe with a dry-run delete, as the controller, of a namespace
 * without our label until the policy's own message comes back.
 */
async function waitForAdmissionPolicy(cp: ControlPlane): Promise<void> {
  const admin = kubeConfigFor('admin', cp).makeApiClient(CoreV1Api);
  const controller = kubeConfigFor('controller', cp).makeApiClient(CoreV1Api);
  const name = 'fwc-admission-probe';
  await admin.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
  try {
    await waitFor(
      async () => {
        try {
          await controller.deleteNamespace({ name, dryRun: 'All' });
          return undefined; // allowed: policy not in force yet
        } catch (e) {
          if (
            e instanceof ApiException &&
            e.code === 403 &&
            /may only change or delete objects it manages/.test(describeError(e))
          ) {
            return true;
          }
          throw e;
        }
      },
      { timeoutMs: 30_000, intervalMs: 200, message: 'the ValidatingAdmissionPolicy to deny the controller' },
    );
  } finally {
    await admin.deleteNamespace({ name });
  }
}
