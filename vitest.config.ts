import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons are safest in child processes (one addon instance per fork).
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
