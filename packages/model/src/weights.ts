// The weights of a model directory: model.safetensors, or shards listed in model.safetensors.index.json.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { MalformedSafetensorsError, MissingFileError, MissingTensorError, ShapeMismatchError, UnexpectedTensorError, UnsupportedDtypeError } from "./errors.js";
import { expectedTensorShapes, type ModelConfig } from "./config.js";
import { dequantizeFp8, isQuantizedLinear } from "./fp8.js";
import { numel, SafetensorsFile, writeSafetensors, type Tensor, type TensorInfo, type TensorInput } from "./safetensors.js";
import { DTYPE_BYTES, type SafetensorsDtype } from "./dtype.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** Tensors that HF checkpoints may carry and that carry no weights we need. */
const IGNORED_TENSOR = /\.rotary_emb\.inv_freq$/;

/** The weight files of a directory, with every tensor's location; read tensors with read(); close() when done. */
export class ModelWeights {
  readonly dir: string;
  /** File names relative to dir, in a stable order. */
  readonly files: string[];
  readonly indexFile: string | null;
  #open: Map<string, SafetensorsFile>;
  #where: Map<string, SafetensorsFile>;

  private constructor(dir: string, indexFile: string | null, open: Map<string, SafetensorsFile>, where: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.indexFile = indexFile;
    this.files = [...open.keys()];
    this.#open = open;
    this.#where = where;
  }

  /** Opens `model.safetensors.index.json` and its shards if present, else `model.safetensors`. Reads headers only. */
  static open(dir: string): ModelWeights {
    const indexPath = join(dir, INDEX_FILE);
    const open = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      if (existsSync(indexPath)) {
        const map = readIndex(indexPath);
        const shardNames = [...new Set(map.values())].sort();
        for (const shard of shardNames) {
          const p = join(dir, shard);
          if (!existsSync(p)) throw new MissingFileError(p, `${INDEX_FILE} lists shard ${shard}, which is not in ${dir}`);
          open.set(shard, SafetensorsFile.open(p));
        }
        for (const [tensor, shard] of map) {
          const f = open.get(shard)!;
          if (!f.info(tensor)) throw new MalformedSafetensorsError(`${INDEX_FILE} puts tensor ${tensor} in ${shard}, which does not hold it`, { path: indexPath });
          where.set(tensor, f);
        }
        for (const [shard, f] of open) {
          for (const t of f.tensorNames) {
            if (!map.has(t)) throw new MalformedSafetensorsError(`shard ${shard} holds tensor ${t}, which ${INDEX_FILE} does not list`, { path: indexPath });
          }
        }
        return new ModelWeights(dir, INDEX_FILE, open, where);
      }
      const single = join(dir, SINGLE_FILE);
      if (!existsSync(single)) throw new MissingFileError(single, `model directory ${dir} has neither ${SINGLE_FILE} nor ${INDEX_FILE}`);
      const f = SafetensorsFile.open(single);
      open.set(SINGLE_FILE, f);
      for (const t of f.tensorNames) where.set(t, f);
      return new ModelWeights(dir, null, open, where);
    } catch (e) {
      for (const f of open.values()) f.close();
      throw e;
    }
  }

  get tensorNames(): string[] {
    return [...this.#where.keys()];
  }

  info(name: string): (TensorInfo & { file: string }) | undefined {
    const f = this.#where.get(name);
    const i = f?.info(name);
    return i && f ? { ...i, file: basename(f.path) } : undefined;
  }

  read(name: string): Tensor {
    const f = this.#where.get(name);
    if (!f) throw new MissingTensorError(name, `tensor ${name} is not in the weights of ${this.dir}`);
    return f.read(name);
  }

  /**
   * A weight as the model computes with it, in float32: for an FP8 checkpoint's quantized layers, e4m3(byte) ×
   * scale[row] from `<prefix>.weight_scale` (rounded to float32, as the executors compute it; the scales must be
   * positive and finite), otherwise the decoded tensor. Call checkAgainst(config) first.
   */
  readWeight(name: string, config: ModelConfig): Float32Array {
    if (!config.fp8 || !isQuantizedLinear(name)) return this.read(name).data;
    const scaleName = `${name.slice(0, -".weight".length)}.weight_scale`;
    const scales = this.read(scaleName).data;
    for (const s of scales) {
      if (!(s > 0) || !Number.isFinite(s)) {
        throw new MalformedSafetensorsError(`tensor ${scaleName}: scales must be positive and finite`, { path: join(this.dir, this.info(scaleName)!.file) });
      }
    }
    const shape = this.info(name)!.shape;
    return dequantizeFp8(this.readBytes(name), scales, shape[0], shape[1]);
  }

  /** The tensor's raw little-endian bytes. */
  readBytes(name: string): Uint8Array {
    const f = this.#where.get(name);
    if (!f) throw new MissingTensorError(name, `tensor ${name} is not in the weights of ${this.dir}`);
    return f.readBytes(name);
  }

  /** Distinct tensor dtypes across all files. */
  dtypes(): SafetensorsDtype[] {
    const s = new Set<SafetensorsDtype>();
    for (const f of this.#open.values()) for (const i of f.header.tensors.values()) s.add(i.dtype);
    return [...s].sort();
  }

  /**
   * Checks that every tensor the config needs is present with the right shape, and that nothing unknown is there.
   * Throws MissingTensorError / ShapeMismatchError / UnexpectedTensorError naming the tensor.
   */
  checkAgainst(config: ModelConfig): void {
    const expected = expectedTensorShapes(config);
    for (const [name, shape] of expected) {
      const info = this.info(name);
      if (!info) throw new MissingTensorError(name, `tensor ${name} (shape [${shape.join(", ")}]) is missing from the weights of ${this.dir}`);
      const scalarScale = name.endsWith(".weight_scale") && !config.fp8?.perChannel && info.shape.length === 0; // per tensor: [] as well as [1]
      if (!scalarScale && (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))) {
        throw new ShapeMismatchError(name, shape, info.shape);
      }
      // FP8: F8_E4M3 exactly for the quantized linear layers, float scales; F8_E4M3 nowhere else.
      const quantized = config.fp8 !== null && isQuantizedLinear(name);
      if (quantized !== (info.dtype === "F8_E4M3")) {
        throw new UnsupportedDtypeError(
          info.dtype,
          quantized
            ? `tensor ${name} must be F8_E4M3 (config.json's quantization_config quantizes it), not ${info.dtype}`
            : `tensor ${name}: F8_E4M3 needs an FP8 quantization_config in config.json and a linear layer`,
        );
      }
    }
    for (const name of this.#where.keys()) {
      if (expected.has(name) || IGNORED_TENSOR.test(name)) continue;
      // A static activation scale beside a quantized layer: read by nobody (the executors quantize activations per
      // token at run time, the reference computes the dequantized pass), so only its shape is checked.
      if (config.fp8 && name.endsWith(".input_scale") && expected.has(`${name.slice(0, -".input_scale".length)}.weight_scale`)) {
        const info = this.info(name)!;
        if (info.shape.length > 1 || numel(info.shape) !== 1) throw new ShapeMismatchError(name, [1], info.shape);
        continue;
      }
      if (name === "lm_head.weight" && config.tieWordEmbeddings) {
        const info = this.info(name)!;
        const want = [config.vocabSize, config.hiddenSize];
        if (info.shape.length !== 2 || info.shape[0] !== want[0] || info.shape[1] !== want[1]) throw new ShapeMismatchError(name, want, info.shape);
        continue; // tied: present but unused, as in HF
      }
      throw new UnexpectedTensorError(name, `tensor ${name} in ${this.info(name)!.file} is not part of the Llama layout for this config`);
    }
  }

  close(): void {
    for (const f of this.#open.values()) f.close();
  }
}

function readIndex(path: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new MalformedSafetensorsError(`not valid JSON: ${(e as Error).message}`, { path, cause: e });
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== "object" || Array.isArray(wm)) throw new MalformedSafetensorsError("weight_map is missing or not an object", { path });
  const map = new Map<string, string>();
  for (const [tensor, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\") || !file.endsWith(".safetensors")) {
      throw new MalformedSafetensorsError(`weight_map entry ${tensor} → ${JSON.stringify(file)} is not a .safetensors file name`, { path });
    }
    map.set(tensor, file);
  }
  return map;
}

export interface WriteShardedOptions {
  dtype?: SafetensorsDtype;
  /** Start a new shard once a shard holds this many data bytes (each shard holds at least one tensor). */
  maxShardBytes: number;
  metadata?: Record<string, string>;
  onProgress?: (done: number, total: number, tensor: string) => void;
}

/**
 * Writes tensors as HF-style shards `model-0000N-of-0000M.safetensors` plus `model.safetensors.index.json`
 * (tensors in name order, split greedily by size). Returns the shard file names.
 */
export function writeShardedSafetensors(dir: string, tensors: Map<string, TensorInput>, options: WriteShardedOptions): string[] {
  const dtype = options.dtype ?? "F32";
  const names = [...tensors.keys()].sort();
  const groups: string[][] = [];
  let size = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const bytes = t.data.length * DTYPE_BYTES[t.dtype ?? dtype];
    if (groups.length === 0 || (size > 0 && size + bytes > options.maxShardBytes)) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(name);
    size += bytes;
  }
  const pad = (n: number) => String(n).padStart(5, "0");
  const files = groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (const name of names) total += tensors.get(name)!.data.length * DTYPE_BYTES[tensors.get(name)!.dtype ?? dtype];
  let before = 0;
  groups.forEach((group, i) => {
    const part = new Map(group.map((n) => [n, tensors.get(n)!]));
    for (const n of group) weightMap[n] = files[i];
    let last = 0;
    writeSafetensors(join(dir, files[i]), part, {
      dtype,
      metadata: options.metadata,
      onProgress: (done, _t, name) => {
        last = done;
        options.onProgress?.(before + done, total, name);
      },
    });
    before += last;
  });
  writeFileSync(join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n");
  return files;
}
