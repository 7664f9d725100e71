import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "trtllm",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Builds packages/trtllm/build/libtrtd_ref.so and models/tiny when missing or stale.
    globalSetup: ["../../tools/scripts/assets.mjs"],
    // The executors use every core; test files take turns so timings and the event-loop checks stay meaningful.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
