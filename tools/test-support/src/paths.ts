import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

/** The repository root (this file is tools/test-support/src/paths.ts). */
export const repoRoot = resolve(fileURLToPath(import.meta.url), "../../../..");
/** The tiny test model built by tools/scripts/assets.mjs. */
export const modelDir = resolve(repoRoot, "models/tiny");

/** `node --import tsx --conditions=source apps/<app>/src/main.ts ...args`: runs an app from its TS sources. */
export function appArgv(app: string, args: string[]): string[] {
  return [process.execPath, "--import", "tsx", "--conditions=source", resolve(repoRoot, `apps/${app}/src/main.ts`), ...args];
}
