import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "reliability",
    include: ["test/**/*.test.ts"],
    globalSetup: ["../../tools/scripts/assets.mjs"],
    // Each file runs its own deployment of real processes; one at a time on a 2-core machine.
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 90_000,
  },
});
