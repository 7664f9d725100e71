// The binding's struct declarations agree with the C header: native/src/abi_layout_check.c pins each struct's
// size at compile time, and this test checks koffi's layout against the same numbers.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import koffi from "koffi";
import { describe, expect, it } from "vitest";
import { ABI_VERSION, Executor } from "../src/index.js";
import { tinyDir } from "./helpers.js";

describe("ABI", () => {
  it("koffi struct sizes equal the sizes the C compiler checks", async () => {
    await import("../src/native.js"); // registers the struct types
    const src = readFileSync(join(import.meta.dirname, "../native/src/abi_layout_check.c"), "utf8");
    const pinned = [...src.matchAll(/TRTD_CHECK_SIZE\((\w+), (\d+)\);/g)].map((m) => [m[1], Number(m[2])] as const);
    expect(pinned.length).toBeGreaterThanOrEqual(10);
    for (const [name, size] of pinned) expect(koffi.sizeof(name), name).toBe(size);
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
});
