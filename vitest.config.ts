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
        },
      },
    ],
  },
});
