// CPU per request of the Kubernetes adapter over HTTP/1.1 (the default pool) and
// over HTTP/2 (client-node's dispatcher), on the client and in kube-apiserver, in one process against one
// fresh control plane. Runs alternate (ABBA) so the machine's drift favours neither; medians are printed.
// `npm run bench:transport -- [--requests 3000] [--rounds 3]` (scripts/bench.sh builds the control plane).
import { parseArgs } from 'node:util';
import { startControlPlane } from '../harness/controlplane.js';
import { kubeConfigFor } from '../harness/kube.js';
import { CallStats } from '../src/adapters/call-stats.js';
import { HttpKubeApi } from '../src/adapters/kubernetes.js';
import { KubeClient } from '../src/kube/client.js';
import { KubeTransport } from '../src/kube/transport.js';
import { controlPlanePids, processCpuSeconds } from './bench/proc.js';
import { medianOf } from './bench/trials.js';

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' } },
});
const pairs = Math.max(1, Math.floor(Number(values.requests) / 2));
const rounds = Math.max(1, Number(values.rounds));

const cp = await startControlPlane({ binDir: process.env.KUBEBUILDER_ASSETS });
try {
  const kc = kubeConfigFor('admin', cp);
  const apiserverPid = controlPlanePids(cp).find(([name]) => name === 'kube-apiserver')?.[1];
  if (!apiserverPid) throw new Error('kube-apiserver pid not found');
  const apiserverCpuMs = () => processCpuSeconds(apiserverPid) * 1000;

  /** `pairs` × (server-side apply of a ConfigMap, then GET of it), 4 in flight, as the controller's workers. */
  async function trial(http2: boolean, tag: string, n: number) {
    // A transport of its own per trial (not the process's shared one), so every trial starts with a new pool.
    const kubeClient = new KubeClient(new KubeTransport(kc, http2));
    const kube = new HttpKubeApi(kubeClient, { fieldManager: 'bench-transport', stats: new CallStats('kubernetes') });
    let next = 0;
    const client0 = process.cpuUsage();
    const api0 = apiserverCpuMs();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < n) {
          const name = `bt-${tag}-${next++}`;
          await kube.apply({
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name, namespace: 'default', labels: { 'app.kubernetes.io/name': 'bench-transport' } },
            data: { payload: 'x'.repeat(200) },
          });
          await kube.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name });
        }
      }),
    );
    const requests = 2 * n;
    const client = process.cpuUsage(client0);
    return {
      protocol: http2 ? 'HTTP/2' : 'HTTP/1.1',
      requests,
      wallMs: Math.round(performance.now() - t0),
      clientUsPerRequest: Math.round((client.user + client.system) / requests),
      apiserverUsPerRequest: Math.round(((apiserverCpuMs() - api0) * 1000) / requests),
    };
  }

  await trial(true, 'warm-h2', 200);
  await trial(false, 'warm-h1', 200);
  const rows: Awaited<ReturnType<typeof trial>>[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const http2 of r % 2 ? [false, true] : [true, false]) rows.push(await trial(http2, `r${r}-${http2}`, pairs));
  }
  console.table(rows);
  for (const protocol of ['HTTP/1.1', 'HTTP/2']) {
    const of = rows.filter((x) => x.protocol === protocol);
    console.log(
      `${protocol}: median client ${medianOf(of.map((x) => x.clientUsPerRequest))} µs, ` +
        `kube-apiserver ${medianOf(of.map((x) => x.apiserverUsPerRequest))} µs per request`,
    );
  }
} finally {
  await cp.stop();
}
process.exit(0);
