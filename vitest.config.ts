import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure logic, no I/O) and `integration` (real kube-apiserver + etcd +
// kube-controller-manager, moto and the FlyteAdmin double, started once by the global setup).
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
    ],
  },
});
