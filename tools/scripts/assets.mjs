// Builds and prepares what tests, benchmarks and the quick start need, only when missing or stale:
// the reference executor's native library and the generated models. Usable as a vitest globalSetup.
import { spawnSync } from "node:child_process";
import { existsSync, statSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const nativeSourceDir = join(repoRoot, "packages/trtllm/native");
export const nativeBuildDir = join(repoRoot, "packages/trtllm/build");
export const modelsDir = join(repoRoot, "models");

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: repoRoot, ...opts });
  if (r.error) throw new Error(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Builds the native code, each part only when its sources are newer than its build: the reference executor
 * (packages/trtllm/native, CMake Release) and kv-transfer's checksum helper. TRTD_NATIVE_ARCH=OFF builds
 * the executor for any x86-64 (for images built on one machine and run on another); the default tunes it
 * for this CPU.
 */
export async function ensureNative({ force = false } = {}) {
  const stamp = join(nativeBuildDir, ".built");
  if (force || !existsSync(stamp) || statSync(stamp).mtimeMs < newestMtime(nativeSourceDir)) {
    const arch = process.env.TRTD_NATIVE_ARCH === "OFF" ? "OFF" : "ON";
    run("cmake", ["-S", nativeSourceDir, "-B", nativeBuildDir, "-DCMAKE_BUILD_TYPE=Release", `-DTRTD_NATIVE_ARCH=${arch}`]);
    run("cmake", ["--build", nativeBuildDir, "-j", "2"]);
    run("touch", [stamp]);
  }
  const kvx = await import("../../packages/kv-transfer/scripts/build-native.mjs");
  kvx.buildNative({ force });
}

/** Generates models/<size> with tools/prepare-model when it is missing. */
export function ensureModel(size = "tiny") {
  const dir = join(modelsDir, size);
  if (existsSync(join(dir, "config.json"))) return dir;
  if (!existsSync(join(repoRoot, "tools/prepare-model/src/cli.ts"))) return dir;
  run(process.execPath, ["--import", "tsx", "--conditions=source", "tools/prepare-model/src/cli.ts", size, "--out", dir]);
  return dir;
}

/** vitest globalSetup entry: everything the tests need. */
export default async function setup() {
  await ensureNative();
  ensureModel("tiny");
}
