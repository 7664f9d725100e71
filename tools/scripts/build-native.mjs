import { ensureNative } from "./assets.mjs";
ensureNative({ force: process.argv.includes("--force") });
