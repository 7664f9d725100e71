// FP8 checkpoints in the compressed-tensors "float-quantized" format (as published for Llama-3.1-8B FP8): every
// linear layer of the decoder (q, k, v, o, gate, up, down) holds F8_E4M3 weights [out, in] with a float scale per
// tensor or per output channel, `<prefix>.weight_scale`; weight = fp8 * scale[row]. The embedding, the norms and
// lm_head keep the model dtype. The rules are the executors' (packages/trtllm/native/src/model_config.cpp,
// read_quantization and fp8_weight_scales), with the same messages: anything else in quantization_config that would
// change the math is refused by name.
import { InvalidConfigError, UnsupportedArchitectureError } from "./errors.js";
import { e4m3BitsToFloat32, FP8_E4M3_MAX } from "./dtype.js";

/** An FP8 checkpoint's quantization, as `ModelConfig.fp8` holds it. */
export interface Fp8Config {
  /** weight_scale is [out, 1] (weights.strategy "channel"); else one scale, [1] or [] ("tensor"). */
  perChannel: boolean;
  /**
   * The checkpoint's input_activations strategy ("" when weight-only). Recorded only: a static `input_scale` is not
   * used (executors that quantize activations do it per token at run time; the reference computes the dequantized
   * forward pass).
   */
  activations: "" | "tensor" | "token";
}

const QUANTIZED_LINEAR = /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/** Whether `name` is a weight an FP8 checkpoint quantizes (the decoder's linear layers). */
export function isQuantizedLinear(name: string): boolean {
  return QUANTIZED_LINEAR.test(name);
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === "object" && !Array.isArray(v);
const present = (v: unknown) => v !== undefined && v !== null;

/**
 * Reads config.json's `quantization_config` (null when absent or null). Accepted: `quant_method`
 * "compressed-tensors", `format` "float-quantized", exactly one config group with `targets: ["Linear"]`, 8-bit
 * float symmetric static weights of strategy "tensor" or "channel" (no group_size, block_structure, actorder),
 * `input_activations` null or 8-bit float of strategy "tensor" or "token", no `output_activations`, no
 * `kv_cache_scheme`, and `ignore` holding exactly lm_head ("lm_head" or "re:.*lm_head"). Refusals name the field:
 * UnsupportedArchitectureError for what is well formed but not supported, InvalidConfigError for what is malformed.
 */
export function parseQuantizationConfig(raw: Json, source: string): Fp8Config | null {
  const q = raw.quantization_config;
  if (!present(q)) return null;
  const where = `${source}: quantization_config`;
  const unsupported = (message: string, field: string): never => {
    throw new UnsupportedArchitectureError(message, { field });
  };
  const invalid = (message: string, field: string): never => {
    throw new InvalidConfigError(message, { field });
  };
  if (!isObject(q)) invalid(`${where} must be an object`, "quantization_config");
  const c = q as Json;
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  if (c.quant_method !== "compressed-tensors") {
    unsupported(`${where}.quant_method "${str(c.quant_method)}" is not supported (FP8 weights in the compressed-tensors float-quantized format are)`, "quantization_config.quant_method");
  }
  if (c.format !== "float-quantized") unsupported(`${where}.format "${str(c.format)}" is not supported ("float-quantized" is)`, "quantization_config.format");
  if (present(c.kv_cache_scheme)) unsupported(`${where}.kv_cache_scheme (a quantized KV cache) is not supported`, "quantization_config.kv_cache_scheme");
  const groups = c.config_groups;
  if (!isObject(groups) || Object.keys(groups).length !== 1) unsupported(`${where}.config_groups must hold exactly one group`, "quantization_config.config_groups");
  const [gname, group] = Object.entries(groups as Json)[0];
  const gfield = `quantization_config.config_groups.${gname}`;
  const gw = `${source}: ${gfield}`;
  const g = isObject(group) ? group : {};
  const targets = g.targets;
  if (!Array.isArray(targets) || targets.length !== 1 || targets[0] !== "Linear") unsupported(`${gw}.targets must be ["Linear"]`, `${gfield}.targets`);
  if (present(g.output_activations)) unsupported(`${gw}.output_activations is not supported`, `${gfield}.output_activations`);
  const checkFloat8 = (a: Json, w: string, field: string) => {
    if (a.num_bits !== 8 || a.type !== "float") unsupported(`${w}: only 8-bit float (FP8 E4M3) is supported`, field);
    if (a.symmetric === false) unsupported(`${w}.symmetric false is not supported`, `${field}.symmetric`);
    for (const key of ["group_size", "block_structure", "actorder"]) {
      if (present(a[key])) unsupported(`${w}.${key} is not supported`, `${field}.${key}`);
    }
  };
  const weights = g.weights;
  if (!isObject(weights)) invalid(`${gw}.weights is missing`, `${gfield}.weights`);
  const wts = weights as Json;
  checkFloat8(wts, `${gw}.weights`, `${gfield}.weights`);
  if (wts.dynamic === true) unsupported(`${gw}.weights.dynamic true is not supported`, `${gfield}.weights.dynamic`);
  const strategy = str(wts.strategy);
  if (strategy !== "tensor" && strategy !== "channel") {
    unsupported(`${gw}.weights.strategy "${strategy}" is not supported ("tensor" and "channel" are)`, `${gfield}.weights.strategy`);
  }
  let activations: Fp8Config["activations"] = "";
  const a = g.input_activations;
  if (present(a)) {
    if (!isObject(a)) invalid(`${gw}.input_activations must be an object or null`, `${gfield}.input_activations`);
    checkFloat8(a as Json, `${gw}.input_activations`, `${gfield}.input_activations`);
    const s = str((a as Json).strategy);
    if (s !== "tensor" && s !== "token") {
      unsupported(`${gw}.input_activations.strategy "${s}" is not supported ("tensor" and "token" are)`, `${gfield}.input_activations.strategy`);
    }
    activations = s as "tensor" | "token";
  }
  // Only lm_head may stay unquantized (the embedding and norms are not Linear layers).
  let lmHeadIgnored = false;
  if (Array.isArray(c.ignore)) {
    for (const e of c.ignore) {
      if (e === "lm_head" || e === "re:.*lm_head") lmHeadIgnored = true;
      else unsupported(`${where}.ignore entry ${typeof e === "string" ? `"${e}"` : "?"} is not supported (only lm_head may stay unquantized)`, "quantization_config.ignore");
    }
  }
  if (!lmHeadIgnored) unsupported(`${where}: a quantized lm_head is not supported (list it in ignore)`, "quantization_config.ignore");
  return { perChannel: strategy === "channel", activations };
}

/**
 * The `quantization_config` that `prepare-model convert --precision fp8` writes, in the layout llm-compressor
 * writes for Llama-3.1-8B-Instruct FP8: one group over Linear, 8-bit float symmetric static weights per channel
 * (or per tensor), weight-only unless `activations` is given, lm_head ignored.
 */
export function fp8QuantizationConfig(options: { perChannel?: boolean; activations?: Fp8Config["activations"] } = {}): Json {
  const args = (strategy: string, dynamic: boolean) => ({
    actorder: null,
    block_structure: null,
    dynamic,
    group_size: null,
    num_bits: 8,
    observer: "minmax",
    observer_kwargs: {},
    strategy,
    symmetric: true,
    type: "float",
  });
  const activations = options.activations ?? "";
  return {
    config_groups: {
      group_0: {
        input_activations: activations === "" ? null : args(activations, activations === "token"),
        output_activations: null,
        targets: ["Linear"],
        weights: args(options.perChannel === false ? "tensor" : "channel", false),
      },
    },
    format: "float-quantized",
    ignore: ["lm_head"],
    kv_cache_scheme: null,
    quant_method: "compressed-tensors",
    quantization_status: "compressed",
  };
}

/**
 * Quantizes a float32 [rows, cols] weight to E4M3 with one scale per row (or one for the whole tensor):
 * scale = absmax / 448 (1 for an all-zero row), values = weight / scale, which the writer rounds to E4M3 (nearest,
 * ties to even, saturating). Returns the values to store as F8_E4M3 and the float32 scales.
 */
export function quantizeFp8(weight: Float32Array, rows: number, cols: number, perChannel = true): { values: Float32Array; scales: Float32Array } {
  if (weight.length !== rows * cols) throw new RangeError(`weight of ${weight.length} values is not [${rows}, ${cols}]`);
  const absmax = (from: number, to: number) => {
    let m = 0;
    for (let i = from; i < to; i++) m = Math.max(m, Math.abs(weight[i]));
    return m;
  };
  const scaleOf = (m: number) => (m > 0 && Number.isFinite(m) ? Math.fround(m / FP8_E4M3_MAX) : 1);
  const scales = perChannel ? Float32Array.from({ length: rows }, (_, r) => scaleOf(absmax(r * cols, (r + 1) * cols))) : Float32Array.of(scaleOf(absmax(0, weight.length)));
  const values = new Float32Array(weight.length);
  for (let i = 0; i < weight.length; i++) values[i] = weight[i] / scales[perChannel ? Math.floor(i / cols) : 0];
  return { values, scales };
}

/**
 * The dequantized float32 weight: e4m3(byte) * scale[row], each product rounded to float32 (as the executors and
 * torch compute it). `scales` holds one value per row, or one for the whole tensor.
 */
export function dequantizeFp8(bytes: Uint8Array, scales: Float32Array, rows: number, cols: number): Float32Array {
  if (bytes.length !== rows * cols) throw new RangeError(`${bytes.length} bytes are not [${rows}, ${cols}]`);
  if (scales.length !== rows && scales.length !== 1) throw new RangeError(`${scales.length} scales for ${rows} rows`);
  const out = new Float32Array(bytes.length);
  const perRow = scales.length === rows;
  for (let i = 0; i < bytes.length; i++) out[i] = e4m3BitsToFloat32(bytes[i]) * scales[perRow ? Math.floor(i / cols) : 0];
  return out;
}
