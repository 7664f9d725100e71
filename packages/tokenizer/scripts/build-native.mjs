// Builds build/libtrtd_bpe.so (the native BPE encoder, native/) when missing or older than its sources. Called
// by the repo's native build (tools/scripts/assets.mjs: `npm run build:native`), usable as a vitest globalSetup
// and from the command line. Without the library the tokenizer encodes with the tiktoken WASM package (same
// ids, slower).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(root, "native");
export const library = join(root, "build/libtrtd_bpe.so");

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

export function buildNative({ force = false } = {}) {
  if (!force && existsSync(library) && statSync(library).mtimeMs >= newest(nativeDir)) return library;
  mkdirSync(dirname(library), { recursive: true });
  const cxx = process.env.CXX ?? "c++";
  const args = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wextra", "-I", join(nativeDir, "include"),
    "-o", library, join(nativeDir, "src/bpe.cpp")];
  const r = spawnSync(cxx, args, { stdio: "inherit" });
  if (r.error) throw new Error(`${cxx} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cxx} failed building ${library}`);
  return library;
}

export default function setup() {
  buildNative();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(buildNative({ force: process.argv.includes("--force") }));
}
