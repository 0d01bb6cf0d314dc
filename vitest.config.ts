import { defineConfig } from "vitest/config";

// GPU tests share one adapter (lavapipe on CPU-only machines): files run one at a time so they do
// not fight over the cores, each in its own process.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
