import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/cli.ts", "src/index.ts"],
  format: ['esm'],
  target: "node20",
  dts: { entry: "src/index.ts" },
  sourcemap: true,
  clean: true,
  // Native/WASM modules fail when inlined: keep every dependency external.
  skipNodeModulesBundle: true,
});
