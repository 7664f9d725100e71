// The CUDA executor's library, checked from the host side, so CI runs it without a GPU: where nvcc is on PATH
// the setup (tools/scripts/assets.mjs) must have built build/libtrtd_executor_cuda.so (missing is a failure, not
// a skip); it loads with this binding's ABI, names itself, has sane defaults, refuses a negative device_id before
// it looks for a GPU, and without a GPU refuses to create an executor with a non-OK status and a message saying
// why. TRTD_CUDA=OFF (the setup builds no CUDA executor: tools/gpu/run_conformance.sh on a GPU machine, which
// carries a library built elsewhere) skips only the build check: the other checks run on whatever library is
// there, and are skipped, saying so, when there is none. The ABI conformance suites run against it on a GPU
// machine with TRTD_TEST_EXECUTOR=cuda (test/helpers.ts).
import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { ABI_VERSION, defaultLibraryPath, Executor, ExecutorError, executorLibraries, InvalidArgumentError, UnsupportedError } from "../src/index.js";
import { loadLibrary } from "../src/native.js";
import { tinyDir } from "./helpers.js";

const cudaLib = executorLibraries.cuda;

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

const nvcc = onPath("nvcc");
const cudaOff = process.env.TRTD_CUDA === "OFF";
/** Why the setup did not build the library here (then its presence is not checked), or undefined. */
const notBuilt = cudaOff
  ? "TRTD_CUDA=OFF: the setup does not build the CUDA executor"
  : nvcc === undefined
    ? "nvcc is not on PATH: the setup does not build the CUDA executor on this machine"
    : undefined;
const present = existsSync(cudaLib);
/** Why the host-side checks of the library cannot run, or undefined: built here, or present although not built. */
const noLibrary = notBuilt === undefined || present ? undefined : `${notBuilt}, and there is no ${cudaLib}`;
if (notBuilt) console.warn(`[trtllm cuda executor] SKIPPED the build check: ${notBuilt}`);
if (noLibrary) console.warn(`[trtllm cuda executor] SKIPPED: ${noLibrary}`);
else if (notBuilt) console.warn(`[trtllm cuda executor] checking ${cudaLib}, built elsewhere`);
const hasGpu = existsSync("/dev") && readdirSync("/dev").some((n) => /^nvidia\d+$/.test(n));
if (!noLibrary && hasGpu) {
  console.warn("[trtllm cuda executor] SKIPPED the no-GPU refusal: this machine has a GPU (run the suites with TRTD_TEST_EXECUTOR=cuda)");
}
if (!noLibrary && !hasGpu) console.warn("[trtllm cuda executor] SKIPPED the open on a GPU: this machine has none (no /dev/nvidia<N>)");

describe.skipIf(noLibrary !== undefined)("CUDA executor library, host side", () => {
  it.skipIf(notBuilt !== undefined)("is built where nvcc is on PATH", () => {
    expect(existsSync(cudaLib), `${cudaLib} is missing although nvcc is at ${nvcc}: npm run build:native must build it`).toBe(true);
  });

  it(`loads with ABI ${ABI_VERSION} and reports its name and version`, () => {
    const lib = loadLibrary(cudaLib); // AbiMismatchError for another ABI
    expect(lib.abiVersion).toBe(ABI_VERSION);
    expect(lib.version).toMatch(/^trtd-\S*cuda\S* \d+\.\d+/i);
    expect(lib.version).not.toBe(loadLibrary(defaultLibraryPath).version);
  });

  it("has a sane default config: 32 tokens per KV block on device 0", () => {
    const cfg = loadLibrary(cudaLib).defaultConfig();
    expect(cfg).toMatchObject({ kv_tokens_per_block: 32, device_id: 0, enable_prefix_cache: true });
    expect(cfg.max_batch_size).toBeGreaterThanOrEqual(1);
    expect(cfg.max_tokens_per_iteration).toBeGreaterThanOrEqual(1);
    expect(cfg.kv_block_count).toBeGreaterThanOrEqual(0);
    expect(Number(cfg.kv_memory_bytes) > 0 || cfg.kv_block_count > 0, "a KV pool size: bytes or blocks").toBe(true);
    for (const k of ["num_threads", "max_context_length", "max_queued_requests"] as const) expect(cfg[k], k).toBeGreaterThanOrEqual(0);
  });

  it.skipIf(hasGpu)("without a GPU, create on models/tiny fails with a non-OK status and says there is no CUDA device", () => {
    const lib = loadLibrary(cudaLib);
    const out: unknown[] = [null];
    const status = lib.create(tinyDir, lib.defaultConfig(), out);
    expect(status).not.toBe(0);
    expect(lib.lastError()).toMatch(/no CUDA device/);
    expect(out[0]).toBeNull(); // nothing to destroy
    // Through the binding: a typed error carrying the status.
    let err: unknown;
    try {
      void Executor.open(tinyDir, { executor: "cuda" }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExecutorError);
    expect((err as ExecutorError).status).toBe(status);
    expect((err as Error).message).toMatch(/no CUDA device/);
  });

  it("refuses a negative device_id, GPU or not (before it looks for one)", () => {
    expect(() => Executor.open(tinyDir, { executor: "cuda", deviceId: -1 })).toThrow(InvalidArgumentError);
    expect(() => Executor.open(tinyDir, { executor: "cuda", deviceId: -1 })).toThrow(/the CUDA executor needs device_id >= 0/);
  });

  it.skipIf(!hasGpu)("with a GPU, opens models/tiny on device 0 and names the device", async () => {
    const ex = Executor.open(tinyDir, { executor: "cuda" });
    try {
      expect(ex.version).toMatch(/cuda/i);
      expect(ex.deviceUuid()).toMatch(/^GPU-[0-9a-f]{8}-/);
      expect(ex.kvLayout()).toMatchObject({ dtype: "bfloat16", memoryKind: "cuda_device", tokensPerBlock: 32 });
      expect(ex.stats().kvBlocksTotal).toBe(Math.floor((2 * 1024 ** 3) / ex.kvLayout().bytesPerBlock)); // the default 2 GiB pool
    } finally {
      await ex.close();
    }
  });

  it.skipIf(!hasGpu)("with a GPU, refuses a constrained request (no token masks on the device yet) and leaks nothing", async () => {
    const ex = Executor.open(tinyDir, { executor: "cuda" });
    try {
      const all = new Uint32Array(Math.ceil(ex.model.vocabSize / 32)).fill(0xffffffff);
      const constraint = { acceptToken: () => true, nextTokenMask: () => all };
      expect(() => ex.generate({ prompt: [1, 2, 3], maxNewTokens: 2, constraint })).toThrow(UnsupportedError);
      expect(() => ex.generate({ prompt: [1, 2, 3], maxNewTokens: 2, constraint })).toThrow(/constrained/);
      const plain = ex.generate({ prompt: [1, 2, 3], maxNewTokens: 50 });
      expect(ex.native.setTokenMask(ex.handle(), plain.requestId, all, all.length)).toBe(-9); // TRTD_STATUS_UNSUPPORTED
      await plain.collect();
      expect(ex.stats()).toMatchObject({ activeRequests: 0, queuedRequests: 0, kvBlocksUsed: 0 });
    } finally {
      await ex.close();
    }
  });
});
