import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
  test: {
    name: "kv-transfer",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Builds the reference executor's native library and models/tiny when missing (the process-level tests use them).
    // and this package's optional native helper (build/libkvx.so).
    globalSetup: ["../../tools/scripts/assets.mjs", "./scripts/build-native.mjs"],
    // Each file spawns executor processes; on a small machine they take turns.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
