import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "prefill",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Builds the native executor and models/tiny when missing.
    globalSetup: ["../../tools/scripts/assets.mjs"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
