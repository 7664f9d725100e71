// The binding's struct declarations agree with the C header: native/src/abi_layout_check.c pins each struct's
// size (and the offsets of fields added in tail padding) at compile time, and this test checks koffi's layout
// against the same numbers (pinned across ABI versions). Field by field against the header itself, enums and
// functions: abi-header.test.ts.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import koffi from "koffi";
import { describe, expect, it } from "vitest";
import { ABI_VERSION, defaultLibraryPath, Executor, executorLibraries, InvalidArgumentError } from "../src/index.js";
import { tinyDir } from "./helpers.js";

describe("ABI", () => {
  it("koffi struct sizes equal the sizes the C compiler checks", async () => {
    await import("../src/native.js"); // registers the struct types
    const src = readFileSync(join(import.meta.dirname, "../native/src/abi_layout_check.c"), "utf8");
    const pinned = [...src.matchAll(/TRTD_CHECK_SIZE\((\w+), (\d+)\);/g)].map((m) => [m[1], Number(m[2])] as const);
    expect(pinned.length).toBeGreaterThanOrEqual(10);
    for (const [name, size] of pinned) expect(koffi.sizeof(name), name).toBe(size);
    // Fields added in tail padding (trtd_request.generated_offset, ABI 2) keep the size: offsets are pinned too.
    const offsets = [...src.matchAll(/TRTD_CHECK_OFFSET\((\w+), (\w+), (\d+)\);/g)].map((m) => [m[1], m[2], Number(m[3])] as const);
    expect(offsets.map(([t, f]) => `${t}.${f}`)).toContain("trtd_request.generated_offset");
    for (const [type, field, offset] of offsets) expect(koffi.offsetof(type, field), `${type}.${field}`).toBe(offset);
  });

  it("the library reports its ABI version and name", async () => {
    const ex = Executor.open(tinyDir, { threads: 1 });
    try {
      expect(ex.native.abiVersion).toBe(ABI_VERSION);
      expect(ex.version).toMatch(/^trtd-ref /);
      expect(ex.model).toMatchObject({ vocabSize: 100352, numLayers: 2, hiddenSize: 64, numHeads: 4, numKvHeads: 2, headDim: 16 });
      expect(ex.model.eosTokenIds.length).toBeGreaterThan(0);
      expect(ex.model.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    } finally {
      await ex.close();
    }
  });

  it("another implementation is chosen by the library option or TRTD_EXECUTOR_LIB", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trtllm-lib-"));
    const copy = join(dir, "libtrtd_other.so");
    copyFileSync(defaultLibraryPath, copy);
    const saved = process.env.TRTD_EXECUTOR_LIB;
    try {
      const byOption = Executor.open(tinyDir, { threads: 1, library: copy });
      expect(byOption.native.path).toBe(copy);
      await byOption.close();
      process.env.TRTD_EXECUTOR_LIB = copy;
      const byEnv = Executor.open(tinyDir, { threads: 1 });
      expect(byEnv.native.path).toBe(copy);
      await byEnv.close();
      delete process.env.TRTD_EXECUTOR_LIB;
      const byDefault = Executor.open(tinyDir, { threads: 1 });
      expect(byDefault.native.path).toBe(defaultLibraryPath);
      await byDefault.close();
    } finally {
      if (saved === undefined) delete process.env.TRTD_EXECUTOR_LIB;
      else process.env.TRTD_EXECUTOR_LIB = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an implementation is chosen by name (over TRTD_EXECUTOR_LIB); a name with a path, or an unknown name, is refused", async () => {
    expect(executorLibraries.reference).toBe(defaultLibraryPath);
    expect(executorLibraries.cuda).toBe(join(dirname(defaultLibraryPath), "libtrtd_executor_cuda.so"));
    const saved = process.env.TRTD_EXECUTOR_LIB;
    process.env.TRTD_EXECUTOR_LIB = "/nonexistent/libtrtd_other.so";
    try {
      const ex = Executor.open(tinyDir, { threads: 1, executor: "reference" });
      expect(ex.native.path).toBe(defaultLibraryPath);
      expect(ex.deviceUuid()).toBeUndefined(); // host memory: no device (UNSUPPORTED)
      await ex.close();
    } finally {
      if (saved === undefined) delete process.env.TRTD_EXECUTOR_LIB;
      else process.env.TRTD_EXECUTOR_LIB = saved;
    }
    // The reference executor by name gets device_id -1; it refuses a device other than -1 or 0.
    expect(() => Executor.open(tinyDir, { threads: 1, executor: "reference", deviceId: 1 })).toThrow(/device_id must be -1 or 0/);
    expect(() => Executor.open(tinyDir, { executor: "reference", library: defaultLibraryPath })).toThrow(InvalidArgumentError);
    expect(() => Executor.open(tinyDir, { executor: "tpu" as never })).toThrow(/unknown executor tpu: one of reference, cuda/);
    expect(() => Executor.open(tinyDir, { executor: "toString" as never })).toThrow(InvalidArgumentError);
  });

  it("a plain C client runs aggregated and disaggregated requests through the header alone", () => {
    const smoke = join(import.meta.dirname, "../build/trtd_abi_smoke");
    for (const threads of ["1", "2"]) {
      const r = spawnSync(smoke, [tinyDir, threads], { encoding: "utf8", timeout: 60_000 });
      expect(r.stderr).toBe("");
      expect(r.stdout.trim()).toBe("ok");
      expect(r.status).toBe(0);
    }
  });
});
