// convert: validate a Hugging Face Llama checkpoint directory completely, then hard-link (or copy) its files
// into the executor's model directory. The HF layout is the executor's format, so nothing is rewritten, unless a
// precision is asked for: then the weights are written anew in bf16, fp16, or FP8 (compressed-tensors layout).
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  expectedTensorShapes,
  fp8QuantizationConfig,
  INDEX_FILE,
  isQuantizedLinear,
  MissingFileError,
  ModelWeights,
  numel,
  quantizeFp8,
  SINGLE_FILE,
  validateModelDir,
  writeSafetensors,
  type ModelConfig,
  type ModelDirReport,
  type TensorInput,
} from "@trtd/model";
import { checkTokenizerLoads } from "./tokenizer-check.js";

/**
 * What `--precision` writes: `bf16` / `fp16`, every tensor in that type; `fp8`, the decoder's linear layers as
 * F8_E4M3 with an F32 scale per output channel (absmax / 448; weight-only) in the compressed-tensors
 * "float-quantized" layout, the embedding, norms and lm_head in bf16.
 */
export const PRECISIONS = ["bf16", "fp16", "fp8"] as const;
export type Precision = (typeof PRECISIONS)[number];
export function isPrecision(v: unknown): v is Precision {
  return (PRECISIONS as readonly unknown[]).includes(v);
}

/** Default size past which --precision starts a new shard. Peak memory is about 4 bytes per weight of one shard. */
export const DEFAULT_MAX_SHARD_BYTES = 2 * 1024 ** 3;

export const ConvertErrorCode = {
  OutputExists: "OUTPUT_EXISTS",
  SameDirectory: "SAME_DIRECTORY",
} as const;
export type ConvertErrorCode = (typeof ConvertErrorCode)[keyof typeof ConvertErrorCode];

export class ConvertError extends Error {
  readonly code: ConvertErrorCode;
  constructor(code: ConvertErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConvertError";
    this.code = code;
  }
}

export interface ConvertOptions {
  /** Copy instead of hard-linking (links fall back to copies across file systems anyway). */
  copy?: boolean;
  /**
   * Write the weights anew in this precision (from the source's weights as the model computes with them: an FP8
   * source is dequantized first) and set config.json's dtype and quantization_config to match. Default: the weight
   * files are linked or copied as they are.
   */
  precision?: Precision;
  /** With `precision`: start a new shard (model-0000N-of-0000M.safetensors + index) past this many bytes. */
  maxShardBytes?: number;
  onProgress?: (doneBytes: number, totalBytes: number, file: string) => void;
  log?: (message: string) => void;
}

const ORIGINAL_TOKENIZER = "original/tokenizer.model";

/** Optional files carried over when present. */
// tokenizer.json is not a tokenizer we load, but @trtd/tokenizer reads its post_processor to learn whether BOS is added.
const OPTIONAL_FILES = ["generation_config.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.json", "special_tokens_map.json"];

function linkOrCopy(src: string, dst: string, copy: boolean): "linked" | "copied" {
  if (!copy) {
    try {
      linkSync(src, dst);
      return "linked";
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EMLINK") throw e;
    }
  }
  copyFileSync(src, dst);
  return "copied";
}

/**
 * Validates `src` (config, every tensor's shape, tokenizer, and that the tokenizer loads), then links or copies
 * its files into `out` (or, with `precision`, writes its weights anew), config.json last. `out` must not exist or be
 * empty; on failure nothing is left behind. Returns the validation report of `out`.
 */
export async function convertCheckpoint(src: string, out: string, options: ConvertOptions = {}): Promise<ModelDirReport> {
  const log = options.log ?? (() => {});
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new MissingFileError(src, `checkpoint directory ${src} does not exist`);
  if (existsSync(out) && statSync(out).ino === statSync(src).ino && statSync(out).dev === statSync(src).dev) {
    throw new ConvertError(ConvertErrorCode.SameDirectory, `--out ${out} is the checkpoint directory itself`);
  }
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new ConvertError(ConvertErrorCode.OutputExists, `output directory ${out} exists and is not empty`);
  }
  log(`validating ${src}`);
  // Hugging Face Llama 3 repos keep the tiktoken ranks file as original/tokenizer.model (beside tokenizer.json).
  const original = join(src, ORIGINAL_TOKENIZER);
  const useOriginal = !existsSync(join(src, "tokenizer.model")) && existsSync(original);
  if (useOriginal) log(`using ${ORIGINAL_TOKENIZER} as tokenizer.model`);
  const report = validateModelDir(src, useOriginal ? { tokenizerModelPath: original } : {});
  await checkTokenizerLoads(src, report);

  const precision = options.precision;
  // [source path relative to src, destination name]
  const files: [string, string][] = [
    ...(precision ? [] : [...report.weightFiles, ...(report.indexFile ? [report.indexFile] : [])]),
    ...OPTIONAL_FILES.filter((f) => existsSync(join(src, f))),
  ].map((f) => [f, f]);
  if (useOriginal) files.push([ORIGINAL_TOKENIZER, "tokenizer.model"]);
  if (!precision) files.push(["config.json", "config.json"]); // last: its presence marks a complete directory
  const plan = precision ? planWeights(report.config, precision, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES) : [];
  const weightBytes = plan.reduce((s, shard) => s + shard.bytes, 0);
  const total = files.reduce((s, [f]) => s + statSync(join(src, f)).size, 0) + weightBytes;
  const createdOut = !existsSync(out);
  mkdirSync(out, { recursive: true });
  let done = 0;
  const how = new Set<string>();
  const written: string[] = [];
  try {
    if (precision) {
      log(`writing the weights in ${precision}`);
      writeWeights(src, out, report.config, precision, plan, written, (bytes, file) => options.onProgress?.(Math.min(done + bytes, total), total, file));
      done += weightBytes;
    }
    for (const [f, to] of files) {
      written.push(to);
      how.add(linkOrCopy(join(src, f), join(out, to), options.copy ?? false));
      done += statSync(join(src, f)).size;
      options.onProgress?.(done, total, to);
    }
    if (precision) {
      written.push("config.json");
      writeFileSync(join(out, "config.json"), JSON.stringify(configFor(report.config, precision), null, 2) + "\n");
    }
  } catch (e) {
    // Leave nothing half-made behind.
    for (const to of written) rmSync(join(out, to), { force: true });
    if (createdOut) rmSync(out, { recursive: true, force: true });
    throw e;
  }
  log(`${precision ? `wrote ${plan.length} weight file(s) in ${precision}, ` : ""}${how.size ? `${[...how].join(" and ")} ${files.length} files` : ""}`);
  return validateModelDir(out);
}

/** config.json for the rewritten weights: the dtype of the unquantized tensors, and FP8's quantization_config. */
function configFor(config: ModelConfig, precision: Precision): Record<string, unknown> {
  const { quantization_config: _dropped, ...cfg } = config.raw;
  const dtype = precision === "fp16" ? "float16" : "bfloat16";
  // transformers 5 writes "dtype", older ones "torch_dtype": set what the file has (torch_dtype when neither).
  if ("dtype" in cfg) cfg.dtype = dtype;
  if ("torch_dtype" in cfg || !("dtype" in cfg)) cfg.torch_dtype = dtype;
  if (precision === "fp8") cfg.quantization_config = fp8QuantizationConfig({ perChannel: true });
  return cfg;
}

interface ShardPlan {
  file: string;
  /** Source weight names written into this shard (an FP8 layer brings its weight_scale along). */
  names: string[];
  bytes: number;
}

/** The weights the model needs, in name order, split greedily into shards of at most maxShardBytes (at least one each). */
function planWeights(config: ModelConfig, precision: Precision, maxShardBytes: number): ShardPlan[] {
  const shapes = expectedTensorShapes({ ...config, fp8: null }); // the layers themselves; scales are made here
  const shards: ShardPlan[] = [];
  for (const name of [...shapes.keys()].sort()) {
    const shape = shapes.get(name)!;
    const bytes = precision === "fp8" && isQuantizedLinear(name) ? numel(shape) + 4 * shape[0] : 2 * numel(shape);
    const last = shards.at(-1);
    if (!last || (last.bytes > 0 && last.bytes + bytes > maxShardBytes)) shards.push({ file: "", names: [name], bytes });
    else {
      last.names.push(name);
      last.bytes += bytes;
    }
  }
  const pad = (n: number) => String(n).padStart(5, "0");
  shards.forEach((s, i) => (s.file = shards.length === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`));
  return shards;
}

/** One source weight in the output precision: the tensor, or an FP8 layer's E4M3 weight and its F32 scales. */
function convertWeight(weights: ModelWeights, config: ModelConfig, name: string, precision: Precision): [string, TensorInput][] {
  const shape = weights.info(name)!.shape;
  const data = weights.readWeight(name, config);
  if (precision === "fp8" && isQuantizedLinear(name)) {
    const { values, scales } = quantizeFp8(data, shape[0], shape[1], true);
    return [
      [name, { shape, data: values, dtype: "F8_E4M3" }],
      [`${name.slice(0, -".weight".length)}.weight_scale`, { shape: [shape[0], 1], data: scales, dtype: "F32" }],
    ];
  }
  return [[name, { shape, data, dtype: precision === "fp16" ? "F16" : "BF16" }]];
}

/**
 * Writes the planned shards (and the index when there are several), one shard in memory at a time, from the
 * source's weights as the model computes with them (ModelWeights.readWeight: an FP8 source dequantized). Each file
 * is pushed to `written` before it is written, so a failure can remove it.
 */
function writeWeights(
  src: string,
  out: string,
  config: ModelConfig,
  precision: Precision,
  plan: ShardPlan[],
  written: string[],
  progress: (bytes: number, file: string) => void,
): void {
  const weights = ModelWeights.open(src);
  try {
    let before = 0;
    const weightMap: Record<string, string> = {};
    for (const shard of plan) {
      const tensors = new Map<string, TensorInput>();
      for (const name of shard.names) for (const [n, t] of convertWeight(weights, config, name, precision)) tensors.set(n, t);
      written.push(shard.file);
      let last = 0;
      writeSafetensors(join(out, shard.file), tensors, {
        metadata: { format: "pt" },
        onProgress: (done) => {
          last = done;
          progress(before + done, shard.file);
        },
      });
      before += last;
      for (const n of tensors.keys()) weightMap[n] = shard.file;
    }
    if (plan.length > 1) {
      written.push(INDEX_FILE);
      writeFileSync(join(out, INDEX_FILE), JSON.stringify({ metadata: { total_size: before }, weight_map: weightMap }, null, 2) + "\n");
    }
  } finally {
    weights.close();
  }
}
