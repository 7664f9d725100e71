// The vitest project every workspace folder uses (their vitest.config.ts call it): TypeScript sources through the
// "source" export condition, tests under src/ and test/, 60 s bounds. `assets` adds the setup that builds the
// native libraries and models/tiny when missing or stale (tools/scripts/assets.mjs).
import { fileURLToPath } from "node:url";
import { defineProject } from "vitest/config";

const assetsSetup = fileURLToPath(new URL("../scripts/assets.mjs", import.meta.url));

/**
 * @param {string} name the project's name (`vitest run --project <name>`)
 * @param {{ assets?: boolean, globalSetup?: string[], include?: string[], fileParallelism?: boolean,
 *           testTimeout?: number, hookTimeout?: number }} [options]
 *   globalSetup: more setup files, relative to the project; fileParallelism false: files take turns (tests that
 *   start processes or use every core)
 */
export function vitestProject(name, options = {}) {
  return defineProject({
    resolve: { conditions: ["source"] },
    ssr: { resolve: { conditions: ["source"], externalConditions: ["source"] } },
    test: {
      name,
      include: options.include ?? ["src/**/*.test.ts", "test/**/*.test.ts"],
      globalSetup: [...(options.assets ? [assetsSetup] : []), ...(options.globalSetup ?? [])],
      fileParallelism: options.fileParallelism ?? true,
      testTimeout: options.testTimeout ?? 60_000,
      hookTimeout: options.hookTimeout ?? 60_000,
    },
  });
}
