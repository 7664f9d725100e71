import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureModel, modelsDir } from "../../scripts/assets.mjs";

/** The repository root (this file is tools/test-support/src/paths.ts). */
export const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../..");
/**
 * The tiny test model's folder (`models/tiny`, named once, in tools/scripts/assets.mjs). The vitest projects with
 * tools/scripts/assets.mjs as globalSetup have it built before their tests run; elsewhere call {@link tinyModel}.
 */
export const modelDir = join(modelsDir, "tiny");

/**
 * `models/tiny`, generated first with tools/prepare-model when it is missing (as `npm test` does). Throws when it
 * still has no config.json afterwards: a test that needs the model fails rather than skips.
 */
export function tinyModel(): string {
  const dir = ensureModel("tiny");
  if (!existsSync(join(dir, "config.json"))) {
    throw new Error(`${dir} has no config.json and tools/prepare-model could not make it (run: npm run prepare-model -- tiny --out ${dir})`);
  }
  return dir;
}

/** `node --import tsx --conditions=source apps/<app>/src/main.ts ...args`: runs an app from its TS sources. */
export function appArgv(app: string, args: string[]): string[] {
  return [process.execPath, "--import", "tsx", "--conditions=source", resolve(repoRoot, `apps/${app}/src/main.ts`), ...args];
}
