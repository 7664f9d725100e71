// config.json of a Hugging Face Llama checkpoint: parsing, validation and the tensor shapes it implies.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidConfigError, MissingFileError, UnsupportedArchitectureError, UnsupportedDtypeError } from "./errors.js";
import { isTorchDtype, type TorchDtype } from "./dtype.js";
import { isQuantizedLinear, parseQuantizationConfig, type Fp8Config } from "./fp8.js";

export interface Llama3RopeScaling {
  ropeType: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** Position interpolation: every frequency divided by `factor`. */
export interface LinearRopeScaling {
  ropeType: "linear";
  factor: number;
}

/**
 * Dynamic NTK: transformers raises the base only once a sequence grows past max_position_embeddings; the context is
 * capped there (by the executors and by the reference), where it equals plain RoPE.
 */
export interface DynamicRopeScaling {
  ropeType: "dynamic";
  factor: number;
}

/** YaRN, resolved as transformers' `_compute_yarn_parameters` does (cos and sin scaled by `attentionFactor`). */
export interface YarnRopeScaling {
  ropeType: "yarn";
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  truncate: boolean;
  attentionFactor: number;
}

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling | DynamicRopeScaling | YarnRopeScaling;

/** A validated Llama config with defaults filled in (camelCase; `raw` keeps the original JSON). */
export interface ModelConfig {
  architecture: "LlamaForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM" | "MistralForCausalLM";
  /** Mistral: each query attends to the last `slidingWindow` positions (itself included); null: all before it. */
  slidingWindow: number | null;
  /** Biases on the q, k and v projections (Qwen2); Llama has none. */
  qkvBias: boolean;
  /** Each q and k head RMS-normalized over head_dim (q_norm, k_norm) before RoPE (Qwen3). */
  qkNorm: boolean;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** null: plain RoPE. Read from `rope_scaling` (older layout) or `rope_parameters` (transformers 5, preferred). */
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  torchDtype: TorchDtype;
  /**
   * FP8 checkpoint (compressed-tensors "float-quantized" quantization_config): the decoder's linear layers are
   * F8_E4M3 with `<prefix>.weight_scale`; null: no quantization_config.
   */
  fp8: Fp8Config | null;
  raw: Record<string, unknown>;
}

const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"];
const MODEL_TYPES: Record<string, string> = {
  LlamaForCausalLM: "llama",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
  MistralForCausalLM: "mistral",
};

/** Reads and validates `<dir>/config.json`. */
export function readModelConfig(dir: string): ModelConfig {
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new MissingFileError(path, `model directory ${dir} has no config.json`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new InvalidConfigError(`${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseModelConfig(json, path);
}

/** Validates a parsed config.json object. `source` names it in error messages. */
export function parseModelConfig(json: unknown, source = "config.json"): ModelConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new InvalidConfigError(`${source}: not a JSON object`);
  const raw = json as Record<string, unknown>;

  const archs = raw.architectures;
  if (archs !== undefined) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== "string") {
      throw new InvalidConfigError(`${source}: architectures must be a list of one name, got ${JSON.stringify(archs)}`, { field: "architectures" });
    }
    if (!SUPPORTED_ARCHITECTURES.includes(archs[0])) {
      throw new UnsupportedArchitectureError(`${source}: architecture ${archs[0]} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`);
    }
  }
  if (!Object.values(MODEL_TYPES).includes(raw.model_type as string)) {
    throw new UnsupportedArchitectureError(`${source}: model_type ${JSON.stringify(raw.model_type)} is not supported (supported: ${Object.values(MODEL_TYPES).map((t) => JSON.stringify(t)).join(", ")})`);
  }
  if (archs === undefined) throw new InvalidConfigError(`${source}: architectures is missing`, { field: "architectures" });
  const architecture = archs[0] as ModelConfig["architecture"];
  if (MODEL_TYPES[architecture] !== raw.model_type) {
    throw new InvalidConfigError(`${source}: architecture ${architecture} does not go with model_type ${JSON.stringify(raw.model_type)}`, { field: "model_type" });
  }
  const qkvBias = raw.model_type === "qwen2";
  const qkNorm = raw.model_type === "qwen3";
  // Mistral: sliding_window on every layer; absent means transformers' default, 4096; null means none.
  let slidingWindow: number | null = null;
  if (raw.model_type === "mistral") {
    const w = raw.sliding_window === undefined ? 4096 : raw.sliding_window;
    if (w !== null && (!Number.isSafeInteger(w) || (w as number) < 1)) {
      throw new InvalidConfigError(`${source}: sliding_window must be a positive integer or null, got ${JSON.stringify(w)}`, { field: "sliding_window" });
    }
    if (Array.isArray(raw.layer_types)) throw new UnsupportedArchitectureError(`${source}: layer_types (alternating attention) is not supported for mistral`);
    slidingWindow = w as number | null;
  }
  if (qkvBias || qkNorm) {
    // Qwen2's sliding window changes which keys a query sees: refused, never ignored.
    if (raw.use_sliding_window === true) throw new UnsupportedArchitectureError(`${source}: use_sliding_window: true is not supported`);
    const lt = raw.layer_types;
    if (Array.isArray(lt) && lt.some((t) => t !== "full_attention")) {
      throw new UnsupportedArchitectureError(`${source}: layer_types other than "full_attention" are not supported`);
    }
  }
  if (raw.hidden_act !== undefined && raw.hidden_act !== "silu") {
    throw new UnsupportedArchitectureError(`${source}: hidden_act ${JSON.stringify(raw.hidden_act)} is not supported (only "silu")`);
  }
  for (const f of ["attention_bias", "mlp_bias"]) {
    if (raw[f] === true) throw new UnsupportedArchitectureError(`${source}: ${f}: true is not supported (Llama without biases only)`);
  }

  const int = (field: string, opts: { optional?: boolean; min?: number } = {}): number | undefined => {
    const v = raw[field];
    if (v === undefined || v === null) {
      if (opts.optional) return undefined;
      throw new InvalidConfigError(`${source}: ${field} is missing`, { field });
    }
    if (!Number.isSafeInteger(v) || (v as number) < (opts.min ?? 1)) {
      throw new InvalidConfigError(`${source}: ${field} must be an integer ≥ ${opts.min ?? 1}, got ${JSON.stringify(v)}`, { field });
    }
    return v as number;
  };
  const pos = (field: string, fallback?: number): number => {
    const v = raw[field] ?? fallback;
    if (v === undefined) throw new InvalidConfigError(`${source}: ${field} is missing`, { field });
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new InvalidConfigError(`${source}: ${field} must be a positive number, got ${JSON.stringify(v)}`, { field });
    }
    return v;
  };

  const hiddenSize = int("hidden_size")!;
  const intermediateSize = int("intermediate_size")!;
  const numLayers = int("num_hidden_layers")!;
  const numHeads = int("num_attention_heads")!;
  const numKvHeads = int("num_key_value_heads", { optional: true }) ?? numHeads;
  const vocabSize = int("vocab_size")!;
  const maxPositionEmbeddings = int("max_position_embeddings")!;
  if (numHeads % numKvHeads !== 0) {
    throw new InvalidConfigError(`${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, { field: "num_key_value_heads" });
  }
  let headDim = int("head_dim", { optional: true });
  if (headDim === undefined) {
    if (hiddenSize % numHeads !== 0) {
      throw new InvalidConfigError(`${source}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and head_dim is not given`, { field: "head_dim" });
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new InvalidConfigError(`${source}: head_dim ${headDim} must be even for RoPE`, { field: "head_dim" });
  const rmsNormEps = pos("rms_norm_eps", 1e-6);
  const { ropeTheta, ropeScaling } = parseRope(raw, source, maxPositionEmbeddings, pos("rope_theta", 10000));
  const fp8 = parseQuantizationConfig(raw, source);

  const tie = raw.tie_word_embeddings ?? false; // HF LlamaConfig default
  if (typeof tie !== "boolean") throw new InvalidConfigError(`${source}: tie_word_embeddings must be a boolean`, { field: "tie_word_embeddings" });

  const tokenId = (v: unknown, field: string): number => {
    if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) >= vocabSize) {
      throw new InvalidConfigError(`${source}: ${field} ${JSON.stringify(v)} is not a token id below vocab_size ${vocabSize}`, { field });
    }
    return v as number;
  };
  const bosTokenId = raw.bos_token_id === undefined || raw.bos_token_id === null ? null : tokenId(raw.bos_token_id, "bos_token_id");
  const eosRaw = raw.eos_token_id;
  const eosTokenIds =
    eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw.map((v) => tokenId(v, "eos_token_id")) : [tokenId(eosRaw, "eos_token_id")];

  const dt = raw.torch_dtype ?? raw.dtype ?? "float32";
  if (!isTorchDtype(dt)) throw new UnsupportedDtypeError(String(dt), `${source}: torch_dtype ${JSON.stringify(dt)} is not supported (float32, float16, bfloat16)`);

  return {
    architecture,
    qkvBias,
    qkNorm,
    slidingWindow,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: tie,
    bosTokenId,
    eosTokenIds,
    torchDtype: dt,
    fp8,
    raw,
  };
}

/**
 * Every tensor the config requires, in HF names, with its shape ([out, in] for projections). `lm_head.weight`
 * is listed only when embeddings are not tied. FP8 checkpoints add each quantized linear layer's
 * `<prefix>.weight_scale`: [out, 1] per channel, [1] per tensor (where a scalar [] is accepted too).
 */
export function expectedTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim, vocabSize } = config;
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [vocabSize, h]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [h]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [numHeads * headDim, h]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [numKvHeads * headDim, h]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [numKvHeads * headDim, h]);
    if (config.qkvBias) {
      shapes.set(`${p}.self_attn.q_proj.bias`, [numHeads * headDim]);
      shapes.set(`${p}.self_attn.k_proj.bias`, [numKvHeads * headDim]);
      shapes.set(`${p}.self_attn.v_proj.bias`, [numKvHeads * headDim]);
    }
    if (config.qkNorm) {
      shapes.set(`${p}.self_attn.q_norm.weight`, [headDim]);
      shapes.set(`${p}.self_attn.k_norm.weight`, [headDim]);
    }
    shapes.set(`${p}.self_attn.o_proj.weight`, [h, numHeads * headDim]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [h]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [m, h]);
    shapes.set(`${p}.mlp.up_proj.weight`, [m, h]);
    shapes.set(`${p}.mlp.down_proj.weight`, [h, m]);
  }
  shapes.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [vocabSize, h]);
  if (config.fp8) {
    for (const [name, shape] of [...shapes]) {
      if (isQuantizedLinear(name)) shapes.set(`${name.slice(0, -".weight".length)}.weight_scale`, config.fp8.perChannel ? [shape[0], 1] : [1]);
    }
  }
  return shapes;
}

/** Number of parameters the config implies (tied lm_head counted once; FP8 weight scales included). */
export function parameterCount(config: ModelConfig): number {
  let n = 0;
  for (const s of expectedTensorShapes(config).values()) n += s.reduce((a, b) => a * b, 1);
  return n;
}

const ROPE_KEYS = new Set([
  "rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
  "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate", "partial_rotary_factor",
]);

/**
 * RoPE settings as transformers resolves them (modeling_rope_utils): `rope_parameters` (transformers 5) over
 * `rope_scaling` (older layout), `rope_theta` inside the former or at the top level; original_max_position_embeddings
 * from the config's top level, else the dict, else max_position_embeddings. Types default, linear, dynamic, llama3
 * and yarn; any other type, unknown key or partial rotation is refused by name (never ignored). The executors'
 * reader (packages/trtllm/native/src/model_config.cpp) applies the same rules; both are checked against
 * transformers' own values in test/fixtures/rope-hf.json.
 */
function parseRope(
  raw: Record<string, unknown>,
  source: string,
  maxPositionEmbeddings: number,
  topTheta: number,
): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  const fieldOf = (v: unknown) => (v !== undefined && v !== null ? v : undefined);
  if (fieldOf(raw.partial_rotary_factor) !== undefined && raw.partial_rotary_factor !== 1) {
    throw new UnsupportedArchitectureError(`${source}: partial_rotary_factor ${JSON.stringify(raw.partial_rotary_factor)} is not supported`);
  }
  const params = fieldOf(raw.rope_parameters) ?? fieldOf(raw.rope_scaling);
  const where = fieldOf(raw.rope_parameters) !== undefined ? "rope_parameters" : "rope_scaling";
  if (params === undefined) return { ropeTheta: topTheta, ropeScaling: null };
  if (typeof params !== "object" || Array.isArray(params)) throw new InvalidConfigError(`${source}: ${where} must be an object or null`, { field: where });
  const r = params as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!ROPE_KEYS.has(k)) throw new UnsupportedArchitectureError(`${source}: ${where}.${k} is not supported (it would change the RoPE math)`);
  }
  if (fieldOf(r.partial_rotary_factor) !== undefined && r.partial_rotary_factor !== 1) {
    throw new UnsupportedArchitectureError(`${source}: ${where}.partial_rotary_factor is not supported`);
  }
  const type = (r.rope_type ?? r.type ?? "default") as string;
  const num = (k: string, fallback?: number): number => {
    const v = fieldOf(r[k]);
    if (v === undefined) {
      if (fallback === undefined) throw new InvalidConfigError(`${source}: ${where} of rope_type ${JSON.stringify(type)} needs "${k}"`, { field: `${where}.${k}` });
      return fallback;
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new InvalidConfigError(`${source}: ${where}.${k} must be a positive number, got ${JSON.stringify(v)}`, { field: `${where}.${k}` });
    }
    return v;
  };
  const ropeTheta = where === "rope_parameters" ? num("rope_theta", topTheta) : topTheta;
  if (!(ropeTheta > 1)) throw new InvalidConfigError(`${source}: rope_theta must be above 1`, { field: "rope_theta" });
  const topOriginal = fieldOf(raw.original_max_position_embeddings);
  const original = (): number => (typeof topOriginal === "number" && topOriginal > 0 ? topOriginal : num("original_max_position_embeddings", maxPositionEmbeddings));
  switch (type) {
    case "default":
      return { ropeTheta, ropeScaling: null };
    case "linear":
    case "dynamic":
      return { ropeTheta, ropeScaling: { ropeType: type, factor: num("factor") } };
    case "llama3": {
      const s: Llama3RopeScaling = {
        ropeType: "llama3",
        factor: num("factor"),
        lowFreqFactor: num("low_freq_factor"),
        highFreqFactor: num("high_freq_factor"),
        originalMaxPositionEmbeddings: original(),
      };
      if (s.highFreqFactor <= s.lowFreqFactor) {
        throw new InvalidConfigError(`${source}: ${where}.high_freq_factor must be larger than low_freq_factor`, { field: `${where}.high_freq_factor` });
      }
      return { ropeTheta, ropeScaling: s };
    }
    case "yarn": {
      const orig = original();
      const factor = num("factor", maxPositionEmbeddings / orig); // transformers: null -> max_position_embeddings / original
      const mscale = (scale: number, m: number) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const ms = fieldOf(r.mscale);
      const msAll = fieldOf(r.mscale_all_dim);
      const attentionFactor =
        fieldOf(r.attention_factor) !== undefined
          ? num("attention_factor")
          : typeof ms === "number" && ms !== 0 && typeof msAll === "number" && msAll !== 0
            ? mscale(factor, ms) / mscale(factor, msAll)
            : mscale(factor, 1);
      // transformers reads beta_fast / beta_slow with `or`: absent, null and 0 all mean the default.
      const beta = (k: string, d: number) => (typeof r[k] === "number" && r[k] !== 0 ? num(k) : d);
      if (r.truncate !== undefined && typeof r.truncate !== "boolean") {
        throw new InvalidConfigError(`${source}: ${where}.truncate must be a boolean`, { field: `${where}.truncate` });
      }
      return {
        ropeTheta,
        ropeScaling: {
          ropeType: "yarn",
          factor,
          originalMaxPositionEmbeddings: orig,
          betaFast: beta("beta_fast", 32),
          betaSlow: beta("beta_slow", 1),
          truncate: r.truncate !== false,
          attentionFactor,
        },
      };
    }
    default:
      throw new UnsupportedArchitectureError(`${source}: ${where} rope_type ${JSON.stringify(type)} is not supported (default, linear, dynamic, llama3 and yarn are)`);
  }
}
