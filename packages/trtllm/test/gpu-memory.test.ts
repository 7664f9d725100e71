// The KV budget behind the workers' --gpu-memory-fraction: fraction x GPU total - weights (2 bytes a parameter on
// the CUDA executor), and the GPU's total memory from the CUDA driver where there is one.
import koffi from "koffi";
import { describe, expect, it } from "vitest";
import { readSafetensorsHeader } from "@trtd/model";
import { cudaKvBudget, cudaWeightBytes, deviceTotalMemory, InvalidArgumentError, kvBudgetFromFraction, LibraryLoadError } from "../src/index.js";
import { tinyDir } from "./helpers.js";

const GiB = 2 ** 30;
/** Whether the dynamic loader finds the NVIDIA driver library here (LD_LIBRARY_PATH included, as the binding's load). */
const hasDriver = (() => {
  try {
    koffi.load("libcuda.so.1");
    return true;
  } catch {
    return false;
  }
})();

describe("gpu memory - KV budget from a fraction of the GPU", () => {
  it("gives the KV pool fraction x total minus the weights", () => {
    // An 8B bf16 model (16 GB of weights) on an 80 GiB GPU, sharing it with a second worker: 0.45 each.
    const b = kvBudgetFromFraction({ fraction: 0.45, totalBytes: 80 * GiB, weightBytes: 16e9 });
    expect(b.kvMemoryBytes).toBe(Math.floor(0.45 * 80 * GiB) - 16e9);
    expect(b).toMatchObject({ totalBytes: 80 * GiB, weightBytes: 16e9, fraction: 0.45 });
    expect(kvBudgetFromFraction({ fraction: 1, totalBytes: 1000, weightBytes: 0 }).kvMemoryBytes).toBe(1000);
  });

  it("refuses a fraction outside (0, 1] or one that leaves nothing after the weights, naming the figures", () => {
    for (const fraction of [0, -0.1, 1.5, Number.NaN]) {
      expect(() => kvBudgetFromFraction({ fraction, totalBytes: 80 * GiB, weightBytes: 0 })).toThrow(InvalidArgumentError);
    }
    expect(() => kvBudgetFromFraction({ fraction: 0.1, totalBytes: 80 * GiB, weightBytes: 16 * GiB })).toThrow(
      "GPU memory fraction 0.1 of 80.00 GiB is 8.00 GiB, not more than the weights' 16.00 GiB: no room for KV",
    );
  });

  it("counts the CUDA executor's weights at 2 bytes per parameter of the checkpoint (tied embeddings once)", () => {
    // tiny is stored in F32: its file holds 4 bytes per parameter; the device copy is bf16.
    const header = readSafetensorsHeader(`${tinyDir}/model.safetensors`);
    const fileBytes = [...header.tensors.values()].reduce((a, t) => a + (t.dataOffsets[1] - t.dataOffsets[0]), 0);
    expect(cudaWeightBytes(tinyDir)).toBe(fileBytes / 2);
  });

  it.skipIf(hasDriver)("without an NVIDIA driver, asking for the GPU's memory is a LibraryLoadError naming libcuda", () => {
    expect(() => deviceTotalMemory(0)).toThrow(LibraryLoadError);
    expect(() => deviceTotalMemory(0)).toThrow(/libcuda\.so\.1/);
    expect(() => cudaKvBudget(tinyDir, { deviceId: 0, fraction: 0.45 })).toThrow(LibraryLoadError);
  });

  it.skipIf(!hasDriver)("reads GPU 0's total memory from the driver and sizes tiny's KV pool from it", () => {
    const total = deviceTotalMemory(0);
    expect(total).toBeGreaterThan(GiB);
    const b = cudaKvBudget(tinyDir, { deviceId: 0, fraction: 0.45 });
    expect(b.kvMemoryBytes).toBe(Math.floor(0.45 * total) - cudaWeightBytes(tinyDir));
    expect(() => deviceTotalMemory(4096)).toThrow(/GPU 4096 not found/);
  });
});
