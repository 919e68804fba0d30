import { defineConfig } from 'vitest/config';

// Three projects: `unit` (pure logic, no I/O), `integration` (real kube-apiserver + etcd +
// kube-controller-manager, moto and the FlyteAdmin double, started once by the global setup) and `node`
// (the shipped manifests and image on a real kubelet; needs root, run by `npm test` as its own phase after
// the image is built).
export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 240_000,
          maxWorkers: 2,
          // Fault-injection tests of 30 s or more (daemon kills, apiserver restarts, outages). They run in CI;
          // locally `npx vitest run --project integration --tagsFilter='!slow'` leaves them out.
          tags: [{ name: 'slow', description: 'long fault-injection test (30 s or more)', timeout: 300_000 }],
        },
      },
      {
        test: {
          name: 'node',
          // Only in scripts/test.sh's node phase (FWC_REAL_NODE=1): it changes the host (bridge, iptables,
          // sysctls, restored afterwards) and needs the image archive that phase builds.
          include: process.env.FWC_REAL_NODE === '1' ? ['test/node/**/*.test.ts'] : [],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 600_000,
          maxWorkers: 1,
          fileParallelism: false,
        },
      },
    ],
  },
});
