import { defineConfig } from 'vitest/config';

// Integration tests run real QEMU guests; this machine has 2 cores and each TCG guest
// wants one, so test files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default'],
  },
});
