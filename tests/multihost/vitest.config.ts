import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "multihost",
    include: ["test/**/*.test.ts"],
    globalSetup: ["../../tools/scripts/assets.mjs"],
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
