// GPU memory figures for sizing the CUDA executor's KV pool from a fraction of the device (the workers'
// --gpu-memory-fraction). The C ABI takes a KV budget in bytes (trtd_executor_config.kv_memory_bytes); this file
// turns "a fraction of the GPU for weights + KV" into that budget, without touching the ABI.
import koffi from "koffi";
import { readModelConfig, parameterCount } from "@trtd/model";
import { InvalidArgumentError, LibraryLoadError } from "./errors.js";

/** The CUDA executor keeps weights in bf16 or fp16 on the device, whatever the checkpoint's dtype. */
export const CUDA_WEIGHT_BYTES_PER_PARAMETER = 2;

type OutParam = [number | bigint | null];
let driver: { init: (flags: number) => number; deviceGet: (out: OutParam, ordinal: number) => number; totalMem: (out: OutParam, dev: number) => number } | undefined;

function loadDriver(): NonNullable<typeof driver> {
  if (driver) return driver;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load("libcuda.so.1"); // the driver library: present wherever an NVIDIA driver is (and in containers run with --gpus)
  } catch (cause) {
    throw new LibraryLoadError(`cannot load the CUDA driver (libcuda.so.1): ${(cause as Error).message}`, { cause });
  }
  driver = {
    init: lib.func("int cuInit(unsigned int flags)") as (flags: number) => number,
    deviceGet: lib.func("int cuDeviceGet(_Out_ int *device, int ordinal)") as (out: OutParam, ordinal: number) => number,
    totalMem: lib.func("int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int device)") as (out: OutParam, dev: number) => number,
  };
  return driver;
}

/**
 * Total memory of GPU `deviceId` in bytes (the CUDA ordinal, after CUDA_VISIBLE_DEVICES, as the CUDA executor
 * sees it), from the CUDA driver (cuDeviceTotalMem; creates no context and allocates nothing on the device).
 * @throws LibraryLoadError without an NVIDIA driver; InvalidArgumentError for an ordinal the driver does not know.
 */
export function deviceTotalMemory(deviceId: number): number {
  const d = loadDriver();
  let rc = d.init(0);
  if (rc !== 0) throw new LibraryLoadError(`cuInit failed (CUresult ${rc}): no usable NVIDIA GPU`);
  if (!Number.isInteger(deviceId) || deviceId < 0) throw new InvalidArgumentError(`GPU ordinal must be an integer >= 0, got ${deviceId}`);
  const dev: OutParam = [null];
  rc = d.deviceGet(dev, deviceId);
  if (rc !== 0) throw new InvalidArgumentError(`GPU ${deviceId} not found (cuDeviceGet: CUresult ${rc})`);
  const bytes: OutParam = [null];
  rc = d.totalMem(bytes, Number(dev[0]));
  if (rc !== 0) throw new InvalidArgumentError(`cuDeviceTotalMem failed for GPU ${deviceId} (CUresult ${rc})`);
  return Number(bytes[0]);
}

/** Bytes the CUDA executor's weights take on the device for the model in modelDir (its parameters, 2 bytes each). */
export function cudaWeightBytes(modelDir: string): number {
  return parameterCount(readModelConfig(modelDir)) * CUDA_WEIGHT_BYTES_PER_PARAMETER;
}

export interface GpuMemoryBudget {
  /** The KV pool budget to pass as ExecutorOptions.kvMemoryBytes (with kvBlockCount 0). */
  kvMemoryBytes: number;
  totalBytes: number;
  weightBytes: number;
  fraction: number;
}

/**
 * KV budget = fraction × the GPU's total memory − the weights: the worker's weights plus KV pool stay within
 * `fraction` of the device. Activations, cuBLAS workspaces, CUDA graphs and the CUDA context (some hundreds of MiB
 * per process) come on top, so fractions of workers sharing a GPU should add up to less than 1.
 * @throws InvalidArgumentError when the fraction is outside (0, 1] or leaves nothing for KV after the weights.
 */
export function kvBudgetFromFraction(o: { fraction: number; totalBytes: number; weightBytes: number }): GpuMemoryBudget {
  if (!(o.fraction > 0 && o.fraction <= 1)) throw new InvalidArgumentError(`GPU memory fraction must be in (0, 1], got ${o.fraction}`);
  const share = Math.floor(o.fraction * o.totalBytes);
  const kvMemoryBytes = share - o.weightBytes;
  if (kvMemoryBytes <= 0) {
    throw new InvalidArgumentError(
      `GPU memory fraction ${o.fraction} of ${gib(o.totalBytes)} is ${gib(share)}, not more than the weights' ${gib(o.weightBytes)}: no room for KV`,
    );
  }
  return { kvMemoryBytes, totalBytes: o.totalBytes, weightBytes: o.weightBytes, fraction: o.fraction };
}

/** The KV budget of a CUDA executor on `deviceId` whose weights + KV may take `fraction` of the GPU. */
export function cudaKvBudget(modelDir: string, o: { deviceId: number; fraction: number }): GpuMemoryBudget {
  return kvBudgetFromFraction({ fraction: o.fraction, totalBytes: deviceTotalMemory(o.deviceId), weightBytes: cudaWeightBytes(modelDir) });
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
