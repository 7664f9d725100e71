import { ensureNative } from "./assets.mjs";
await ensureNative({ force: process.argv.includes("--force") });
