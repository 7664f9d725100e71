import { vitestProject } from "../../tools/config/vitest.mjs";

export default vitestProject("kv-transfer", {
  assets: true,
  globalSetup: ["./scripts/build-native.mjs"], // this package's optional native helper (build/libkvx.so)
  fileParallelism: false, // each file spawns executor processes; on a small machine they take turns
  hookTimeout: 120_000,
});
