import { defineConfig } from 'vitest/config';

// Two projects: `unit` is pure code and scripted fake peers (no guest, no build; seconds), `lab`
// migrates real QEMU guests. This machine has 2 cores and each TCG guest wants one, so lab test
// files run one at a time. `npm test` runs both; `npm run test:unit` only the first.
export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 30_000 },
      },
      {
        extends: true,
        test: {
          name: 'lab',
          include: ['test/integration/**/*.test.ts', 'test/faults/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
