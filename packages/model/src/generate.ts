// Deterministic generated Llama models ("tiny", "small") with the cl100k_base tokenizer and ChatML specials.
import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CHATML_TEMPLATE } from "./chat-template.js";
import { expectedTensorShapes, parseModelConfig, type Llama3RopeScaling, type ModelConfig } from "./config.js";
import { torchToSafetensorsDtype, type TorchDtype } from "./dtype.js";
import { hashString, Rng } from "./prng.js";
import { numel, writeSafetensors, type TensorInput } from "./safetensors.js";
import { INDEX_FILE, SINGLE_FILE, writeShardedSafetensors } from "./weights.js";

/** ChatML special tokens of the generated models (ids in cl100k_base's special range). */
export const CHATML_SPECIAL_TOKENS = {
  "<|endoftext|>": 100257,
  "<|im_start|>": 100264,
  "<|im_end|>": 100265,
} as const;
/** Ids 0..100255 are cl100k_base's ordinary byte-pair tokens. */
export const CL100K_REGULAR_TOKENS = 100256;
/** cl100k_base's 100277 ids padded to a multiple of 128. */
export const GENERATED_VOCAB_SIZE = 100352;

/** The shape of a generated model: the config fields that decide its tensors and math (ropeScaling null: plain RoPE). */
export type ModelDims = Pick<
  ModelConfig,
  | "hiddenSize"
  | "intermediateSize"
  | "numLayers"
  | "numHeads"
  | "numKvHeads"
  | "headDim"
  | "vocabSize"
  | "maxPositionEmbeddings"
  | "ropeTheta"
  | "rmsNormEps"
  | "tieWordEmbeddings"
> & { ropeScaling: Omit<Llama3RopeScaling, "ropeType"> | null };

const LLAMA3_SCALING = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 };

export const MODEL_PRESETS: Readonly<Record<"tiny" | "small", ModelDims>> = {
  tiny: {
    hiddenSize: 64,
    intermediateSize: 192,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    vocabSize: GENERATED_VOCAB_SIZE,
    maxPositionEmbeddings: 2048,
    ropeTheta: 500000,
    ropeScaling: LLAMA3_SCALING,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
  },
  small: {
    hiddenSize: 512,
    intermediateSize: 1536,
    numLayers: 12,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 64,
    vocabSize: GENERATED_VOCAB_SIZE,
    maxPositionEmbeddings: 4096,
    ropeTheta: 500000,
    ropeScaling: LLAMA3_SCALING,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
  },
};

export interface GenerateModelOptions {
  /** Base dimensions (default "tiny"). */
  preset?: "tiny" | "small";
  /** Overrides of the preset's dimensions (tests use small vocabularies; such models do not fit cl100k_base). */
  dims?: Partial<ModelDims>;
  /** PRNG seed (default 0). */
  seed?: number;
  /** Progress over parameters generated (generateModel only). */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface GeneratedModel {
  /** config.json contents (torch_dtype float32; writeModelDir sets it to the written dtype). */
  config: Record<string, unknown>;
  /** The validated view of `config`. */
  modelConfig: ModelConfig;
  tokenizerConfig: Record<string, unknown>;
  /**
   * tokenizer.model text for models whose vocabulary is too small for cl100k_base (test models made with `dims`):
   * single-byte ranks for the first min(vocab, 256) byte values. null for the cl100k_base presets.
   */
  tokenizerModel: string | null;
  generationConfig: Record<string, unknown>;
  /** float32 weights by HF tensor name. */
  tensors: Map<string, TensorInput>;
  seed: number;
}

/**
 * Initialisation. Projections use std 1/sqrt(fan_in), so each keeps activations at unit scale and the layers,
 * not the (smaller) token embedding, dominate the residual stream: with tied embeddings a model whose residual
 * is mostly the input embedding would just predict its input token again. Embeddings use std 2/sqrt(hidden)
 * (0.25 for tiny), so logits (normalised hidden · embedding row) have a spread of about 2 at any width; norm
 * weights are 1 ± 0.05.
 */
function tensorStd(name: string, shape: number[]): number {
  if (name === "model.embed_tokens.weight" || name === "lm_head.weight") return 2 / Math.sqrt(shape[1]);
  // Output projections (o_proj, down_proj) are 4x larger still: measured on tiny, this keeps greedy decoding
  // from settling on one repeated token (at 1x most prompts did within a dozen tokens).
  return (/\.(o_proj|down_proj)\.weight$/.test(name) ? 4 : 1) / Math.sqrt(shape[1]);
}

function fillTensor(name: string, shape: number[], seed: number, dims: ModelDims): Float32Array {
  const rng = new Rng(seed, hashString(name));
  const data = new Float32Array(numel(shape));
  if (shape.length === 1) {
    for (let i = 0; i < data.length; i++) data[i] = 1 + 0.05 * rng.nextNormal();
    return data;
  }
  const std = tensorStd(name, shape);
  for (let i = 0; i < data.length; i++) data[i] = std * rng.nextNormal();
  if (name === "model.embed_tokens.weight" && dims.vocabSize === GENERATED_VOCAB_SIZE) {
    // Rows of ids that are not tokens of our tokenizer (padding, unused cl100k specials) are zero, so their logit
    // is exactly 0 and they are practically never the argmax.
    const keep = new Set<number>(Object.values(CHATML_SPECIAL_TOKENS));
    for (let id = CL100K_REGULAR_TOKENS; id < dims.vocabSize; id++) {
      if (!keep.has(id)) data.fill(0, id * shape[1], (id + 1) * shape[1]);
    }
  }
  return data;
}

/** The JSON files of a generated model, without weights (cheap; e.g. to inspect `small` without making it). */
export function generatedModelFiles(options: GenerateModelOptions = {}): Omit<GeneratedModel, "tensors"> {
  const seed = options.seed ?? 0;
  const preset = options.preset ?? "tiny";
  const dims: ModelDims = { ...MODEL_PRESETS[preset], ...options.dims };
  const eos = [CHATML_SPECIAL_TOKENS["<|im_end|>"], CHATML_SPECIAL_TOKENS["<|endoftext|>"]].filter((id) => id < dims.vocabSize);
  const config: Record<string, unknown> = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: dims.hiddenSize,
    intermediate_size: dims.intermediateSize,
    num_hidden_layers: dims.numLayers,
    num_attention_heads: dims.numHeads,
    num_key_value_heads: dims.numKvHeads,
    head_dim: dims.headDim,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    vocab_size: dims.vocabSize,
    max_position_embeddings: dims.maxPositionEmbeddings,
    rms_norm_eps: dims.rmsNormEps,
    rope_theta: dims.ropeTheta,
    rope_scaling: dims.ropeScaling && {
      rope_type: "llama3",
      factor: dims.ropeScaling.factor,
      low_freq_factor: dims.ropeScaling.lowFreqFactor,
      high_freq_factor: dims.ropeScaling.highFreqFactor,
      original_max_position_embeddings: dims.ropeScaling.originalMaxPositionEmbeddings,
    },
    tie_word_embeddings: dims.tieWordEmbeddings,
    bos_token_id: null, // no BOS (tokenizer_config: add_bos_token false, bos_token null)
    eos_token_id: eos,
    torch_dtype: "float32",
    trtd_generator: { preset, seed },
  };
  const modelConfig = parseModelConfig(config, `generated ${preset} config`);
  const cl100k = dims.vocabSize >= GENERATED_VOCAB_SIZE;
  const added: Record<string, unknown> = {};
  for (const [content, id] of Object.entries(CHATML_SPECIAL_TOKENS)) {
    if (id >= dims.vocabSize) continue;
    added[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  const tokenizerConfig: Record<string, unknown> = {
    ...(cl100k ? { tiktoken_encoding: "cl100k_base" } : {}),
    add_bos_token: false,
    add_eos_token: false,
    bos_token: null,
    eos_token: cl100k ? "<|im_end|>" : null,
    pad_token: cl100k ? "<|endoftext|>" : null,
    added_tokens_decoder: added,
    chat_template: CHATML_TEMPLATE,
    model_max_length: dims.maxPositionEmbeddings,
    clean_up_tokenization_spaces: false,
  };
  const generationConfig: Record<string, unknown> = {
    bos_token_id: config.bos_token_id,
    eos_token_id: eos,
    pad_token_id: cl100k ? CHATML_SPECIAL_TOKENS["<|endoftext|>"] : null,
    do_sample: false,
  };
  let tokenizerModel: string | null = null;
  if (!cl100k) {
    const lines: string[] = [];
    for (let b = 0; b < Math.min(256, dims.vocabSize); b++) lines.push(`${Buffer.from([b]).toString("base64")} ${b}`);
    tokenizerModel = lines.join("\n") + "\n";
  }
  return { config, modelConfig, tokenizerConfig, tokenizerModel, generationConfig, seed };
}

/** Builds a deterministic model in memory: same options → identical weights and JSON. */
export function generateModel(options: GenerateModelOptions = {}): GeneratedModel {
  const files = generatedModelFiles(options);
  const dims: ModelDims = { ...MODEL_PRESETS[options.preset ?? "tiny"], ...options.dims };
  const shapes = expectedTensorShapes(files.modelConfig);
  let total = 0;
  for (const s of shapes.values()) total += numel(s);
  let done = 0;
  const tensors = new Map<string, TensorInput>();
  for (const [name, shape] of shapes) {
    tensors.set(name, { shape, data: fillTensor(name, shape, files.seed, dims) });
    done += numel(shape);
    options.onProgress?.(done, total, name);
  }
  return { ...files, tensors };
}

export interface WriteModelDirOptions {
  /** Stored weight type (default float32); config.json's torch_dtype follows it. */
  dtype?: TorchDtype;
  /** Write HF-style shards of at most about this many bytes (plus the index) instead of one model.safetensors. */
  maxShardBytes?: number;
  /** Progress over the weight bytes. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n");
  renameSync(tmp, path);
}

/**
 * Writes a model directory (creating it). config.json is written last, so a directory with a config.json is
 * complete even if an earlier run was interrupted.
 */
export function writeModelDir(dir: string, model: GeneratedModel, options: WriteModelDirOptions = {}): { bytes: number; files: string[] } {
  const dtype = options.dtype ?? "float32";
  mkdirSync(dir, { recursive: true });
  const metadata = { format: "pt", generator: "@trtd/model", preset: String((model.config.trtd_generator as { preset?: string })?.preset ?? ""), seed: String(model.seed) };
  const st = torchToSafetensorsDtype(dtype);
  let bytes: number;
  let weightFiles: string[];
  // A stale single file or index from an earlier run would make the directory ambiguous.
  rmSync(join(dir, SINGLE_FILE), { force: true });
  rmSync(join(dir, INDEX_FILE), { force: true });
  if (options.maxShardBytes !== undefined) {
    weightFiles = writeShardedSafetensors(dir, model.tensors, { dtype: st, maxShardBytes: options.maxShardBytes, metadata, onProgress: options.onProgress });
    weightFiles.push(INDEX_FILE);
    bytes = weightFiles.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  } else {
    const weightsPath = join(dir, SINGLE_FILE);
    const tmp = `${weightsPath}.tmp-${process.pid}`;
    bytes = writeSafetensors(tmp, model.tensors, { dtype: st, metadata, onProgress: options.onProgress });
    renameSync(tmp, weightsPath);
    weightFiles = [SINGLE_FILE];
  }
  rmSync(join(dir, "tokenizer.model"), { force: true });
  if (model.tokenizerModel !== null) writeFileSync(join(dir, "tokenizer.model"), model.tokenizerModel);
  writeJsonAtomic(join(dir, "tokenizer_config.json"), model.tokenizerConfig);
  writeJsonAtomic(join(dir, "generation_config.json"), model.generationConfig);
  writeJsonAtomic(join(dir, "config.json"), { ...model.config, torch_dtype: dtype });
  const tok = model.tokenizerModel !== null ? ["tokenizer.model"] : [];
  return { bytes, files: ["config.json", "generation_config.json", "tokenizer_config.json", ...tok, ...weightFiles] };
}
