// The tsup build every package and app uses (their tsup.config.ts call it): ESM for Node 20 with source maps, and
// every dependency kept external (native and WASM modules fail when inlined).
import { defineConfig } from "tsup";

/**
 * @param {string[]} entry entry files, relative to the package
 * @param {{ dts?: boolean | { entry: string } }} [options] type declarations (default true; apps: false)
 */
export function tsupBuild(entry, options = {}) {
  return defineConfig({
    entry,
    format: ["esm"],
    target: "node20",
    dts: options.dts ?? true,
    sourcemap: true,
    clean: true,
    skipNodeModulesBundle: true,
  });
}
