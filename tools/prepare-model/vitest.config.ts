import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "prepare-model",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Builds packages/trtllm/build/libtrtd_ref.so and models/tiny when missing or stale (convert --precision is
    // checked on models/tiny with the reference executor).
    globalSetup: ["../../tools/scripts/assets.mjs"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
