import { availableParallelism } from 'node:os';

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons are safest in child processes (one addon instance per fork).
    pool: 'forks',
    // At least two test files at once: vitest's default leaves one core idle, which on a
    // 2-core machine runs the files one by one (6.5 of .ci/run's 20 minutes; 4.2 with two).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
