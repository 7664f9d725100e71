// npm run build:native [-- --force] [--models tiny,small]: the native libraries (each only when stale), and with
// --models the generated model directories under models/ (for benches that run outside the test setup).
import { ensureModel, ensureNative } from "./assets.mjs";

await ensureNative({ force: process.argv.includes("--force") });
const at = process.argv.indexOf("--models");
if (at >= 0) for (const size of (process.argv[at + 1] ?? "").split(",").filter(Boolean)) ensureModel(size);
