// Builds build/libkvx.so (the CRC-32C and copy-with-CRC loops) when missing or older than its source.
// Usable as a vitest globalSetup and from the command line. Without it kv-transfer runs its JavaScript
// fallback (same results, slower).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const source = join(root, "native/kvx.c");
export const library = join(root, "build/libkvx.so");

export function buildNative({ force = false } = {}) {
  if (!force && existsSync(library) && statSync(library).mtimeMs >= statSync(source).mtimeMs) return library;
  mkdirSync(dirname(library), { recursive: true });
  const cc = process.env.CC ?? "cc";
  const r = spawnSync(cc, ["-O3", "-fPIC", "-shared", "-std=c11", "-Wall", "-o", library, source], { stdio: "inherit" });
  if (r.error) throw new Error(`${cc} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cc} failed building ${library}`);
  return library;
}

export default function setup() {
  buildNative();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(buildNative({ force: process.argv.includes("--force") }));
}
