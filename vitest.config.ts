import { defineConfig } from "vitest/config";
import TestSummaryReporter from "./scripts/test-summary-reporter.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    // GPU tests run on lavapipe, which uses every core: two files at a time is plenty.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default", new TestSummaryReporter()],
    // Kernel choices stay the adapter defaults (no measuring in idle time, no cache written), so a
    // run is deterministic; the autotune tests turn it on for themselves.
    env: { FULGUR_AUTOTUNE: "0" },
  },
});
