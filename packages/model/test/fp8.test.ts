// FP8 checkpoints (compressed-tensors "float-quantized"): the E4M3 format, the quantization_config rules (the same
// acceptance, refusals and messages as the executors' reader, packages/trtllm/native/src/model_config.cpp), the
// weights check, and the dequantized forward pass against transformers' logits on fixtures/llama-fp8-*-tiny
// (written by tools/reference/hf_model_fixture.py: torch quantized the weights, LlamaForCausalLM computed the logits
// on the dequantized ones).
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  dequantizeFp8,
  e4m3BitsToFloat32,
  expectedTensorShapes,
  float32ToE4m3Bits,
  fp8QuantizationConfig,
  InvalidConfigError,
  isQuantizedLinear,
  loadModel,
  MalformedSafetensorsError,
  MissingTensorError,
  parseModelConfig,
  quantizeFp8,
  readModelConfig,
  readSafetensors,
  readSafetensorsHeader,
  referenceForward,
  ShapeMismatchError,
  UnexpectedTensorError,
  UnsupportedArchitectureError,
  UnsupportedDtypeError,
  writeSafetensors,
  type ModelError,
  type TensorInput,
} from "@trtd/model";
import { tempDirs } from "./helpers.js";

const tmp = tempDirs("trtd-fp8-");
const fixture = (variant: "channel" | "tensor") => join(import.meta.dirname, "fixtures", `llama-fp8-${variant}-tiny`);
const configOf = (dir: string) => JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;

describe("F8_E4M3", () => {
  it("decodes bytes exactly: normals, subnormals, the largest value, NaN, no infinities", () => {
    const cases: [number, number][] = [
      [0x00, 0], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6], [0x0f, 1.875 * 2 ** -6], [0x38, 1], [0x39, 1.125],
      [0x3f, 1.875], [0x40, 2], [0x77, 240], [0x78, 256], [0x7e, 448], [0xb8, -1], [0xfe, -448], [0x81, -(2 ** -9)],
    ];
    for (const [b, v] of cases) expect(e4m3BitsToFloat32(b), `0x${b.toString(16)}`).toBe(v);
    expect(Object.is(e4m3BitsToFloat32(0x80), -0)).toBe(true);
    expect(e4m3BitsToFloat32(0x7f)).toBeNaN();
    expect(e4m3BitsToFloat32(0xff)).toBeNaN();
    expect(e4m3BitsToFloat32(0x78 | 0x07)).toBeNaN(); // S.1111.111 only: 0x7e is finite, 0x7f is not
  });

  it("encodes every finite value back to its byte; rounds to nearest even; saturates at 448", () => {
    for (let b = 0; b < 256; b++) {
      if ((b & 0x7f) === 0x7f) continue;
      expect(float32ToE4m3Bits(e4m3BitsToFloat32(b)), `0x${b.toString(16)}`).toBe(b);
    }
    // halfway between neighbours: to the even code
    for (let b = 0; b < 0x7e; b++) {
      const mid = (e4m3BitsToFloat32(b) + e4m3BitsToFloat32(b + 1)) / 2;
      expect(float32ToE4m3Bits(mid), `mid 0x${b.toString(16)}`).toBe(b % 2 === 0 ? b : b + 1);
      expect(float32ToE4m3Bits(mid * (1 - 1e-6) + e4m3BitsToFloat32(b) * 1e-6), `below mid 0x${b.toString(16)}`).toBe(b);
    }
    expect(float32ToE4m3Bits(500)).toBe(0x7e);
    expect(float32ToE4m3Bits(-1e9)).toBe(0xfe);
    expect(float32ToE4m3Bits(Infinity)).toBe(0x7e);
    expect(float32ToE4m3Bits(NaN)).toBe(0x7f);
    expect(float32ToE4m3Bits(2 ** -11)).toBe(0); // a quarter of the smallest subnormal
  });

  it("dequantizes byte * scale per row (or one scale), rounded to float32", () => {
    const bytes = Uint8Array.of(0x38, 0x01, 0xb8, 0x7e, 0x40, 0x00);
    expect(Array.from(dequantizeFp8(bytes, Float32Array.of(0.5, 3), 2, 3))).toEqual([0.5, 2 ** -10, -0.5, 3 * 448, 6, 0]);
    expect(Array.from(dequantizeFp8(bytes, Float32Array.of(0.1), 2, 3))).toEqual([0.1, 0.1 * 2 ** -9, -0.1, 44.8, 0.2, 0].map(Math.fround));
    expect(() => dequantizeFp8(bytes, Float32Array.of(1, 2, 3), 2, 3)).toThrow(RangeError);
  });

  it("quantizeFp8: scale absmax / 448 per row (1 for a zero row), values weight / scale", () => {
    const w = Float32Array.of(0.3, -0.9, 0.1, 0, 0, 0, 2, 1, -4);
    const { values, scales } = quantizeFp8(w, 3, 3);
    expect(Array.from(scales)).toEqual([Math.fround(0.9) / 448, 1, 4 / 448].map(Math.fround));
    expect(Array.from(values)).toEqual(Array.from(w, (x, i) => Math.fround(x / scales[Math.floor(i / 3)])));
    expect(float32ToE4m3Bits(values[1])).toBe(0xfe); // the row's absmax lands on -448
    const t = quantizeFp8(w, 3, 3, false);
    expect(Array.from(t.scales)).toEqual([Math.fround(4 / 448)]);
  });
});

describe("quantization_config", () => {
  const base = configOf(fixture("channel"));
  const q = base.quantization_config as Record<string, unknown>;
  const group = (q.config_groups as Record<string, Record<string, unknown>>).group_0;
  const withQ = (edit: Record<string, unknown>) => ({ ...base, quantization_config: { ...q, ...edit } });
  const withGroup = (edit: Record<string, unknown>) => withQ({ config_groups: { group_0: { ...group, ...edit } } });
  const withWeights = (edit: Record<string, unknown>) => withGroup({ weights: { ...(group.weights as object), ...edit } });
  const act = fp8QuantizationConfig({ activations: "tensor" }).config_groups as Record<string, Record<string, unknown>>;
  const withActs = (edit: Record<string, unknown>) => withGroup({ input_activations: { ...act.group_0.input_activations as object, ...edit } });

  it("reads both fixtures' configs, activations token, and re:.*lm_head; no quantization_config is no FP8", () => {
    expect(readModelConfig(fixture("channel")).fp8).toEqual({ perChannel: true, activations: "" });
    expect(readModelConfig(fixture("tensor")).fp8).toEqual({ perChannel: false, activations: "tensor" });
    expect(parseModelConfig(withActs({ strategy: "token", dynamic: true })).fp8).toEqual({ perChannel: true, activations: "token" });
    expect(parseModelConfig(withQ({ ignore: ["re:.*lm_head"] })).fp8).toEqual({ perChannel: true, activations: "" });
    expect(parseModelConfig({ ...base, quantization_config: null }).fp8).toBeNull();
    const { quantization_config: _drop, ...plain } = base;
    expect(parseModelConfig(plain).fp8).toBeNull();
    // what prepare-model convert --precision fp8 writes is accepted as it is
    expect(parseModelConfig({ ...base, quantization_config: fp8QuantizationConfig() }).fp8).toEqual({ perChannel: true, activations: "" });
  });

  it("refuses everything else by name, with the executors' messages", () => {
    const g = "config.json: quantization_config.config_groups.group_0";
    const cases: [Record<string, unknown>, new (...a: never[]) => ModelError, string, string][] = [
      [{ ...base, quantization_config: "fp8" }, InvalidConfigError, "quantization_config", "config.json: quantization_config must be an object"],
      [withQ({ quant_method: "fp8" }), UnsupportedArchitectureError, "quantization_config.quant_method", 'config.json: quantization_config.quant_method "fp8" is not supported (FP8 weights in the compressed-tensors float-quantized format are)'],
      [withQ({ quant_method: "gptq" }), UnsupportedArchitectureError, "quantization_config.quant_method", 'quant_method "gptq" is not supported'],
      [withQ({ format: "pack-quantized" }), UnsupportedArchitectureError, "quantization_config.format", 'config.json: quantization_config.format "pack-quantized" is not supported ("float-quantized" is)'],
      [withQ({ kv_cache_scheme: { num_bits: 8, type: "float" } }), UnsupportedArchitectureError, "quantization_config.kv_cache_scheme", "config.json: quantization_config.kv_cache_scheme (a quantized KV cache) is not supported"],
      [withQ({ config_groups: { group_0: group, group_1: group } }), UnsupportedArchitectureError, "quantization_config.config_groups", "config.json: quantization_config.config_groups must hold exactly one group"],
      [withGroup({ targets: ["Linear", "Embedding"] }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.targets", `${g}.targets must be ["Linear"]`],
      [withGroup({ output_activations: { num_bits: 8, type: "float" } }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.output_activations", `${g}.output_activations is not supported`],
      [withGroup({ weights: null }), InvalidConfigError, "quantization_config.config_groups.group_0.weights", `${g}.weights is missing`],
      [withWeights({ num_bits: 4, type: "int" }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights", `${g}.weights: only 8-bit float (FP8 E4M3) is supported`],
      [withWeights({ symmetric: false }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.symmetric", `${g}.weights.symmetric false is not supported`],
      [withWeights({ group_size: 128 }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.group_size", `${g}.weights.group_size is not supported`],
      [withWeights({ block_structure: [128, 128] }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.block_structure", `${g}.weights.block_structure is not supported`],
      [withWeights({ actorder: "group" }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.actorder", `${g}.weights.actorder is not supported`],
      [withWeights({ dynamic: true }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.dynamic", `${g}.weights.dynamic true is not supported`],
      [withWeights({ strategy: "block" }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.weights.strategy", `${g}.weights.strategy "block" is not supported ("tensor" and "channel" are)`],
      [withGroup({ input_activations: "static" }), InvalidConfigError, "quantization_config.config_groups.group_0.input_activations", `${g}.input_activations must be an object or null`],
      [withActs({ num_bits: 8, type: "int" }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.input_activations", `${g}.input_activations: only 8-bit float (FP8 E4M3) is supported`],
      [withActs({ strategy: "group", group_size: null }), UnsupportedArchitectureError, "quantization_config.config_groups.group_0.input_activations.strategy", `${g}.input_activations.strategy "group" is not supported ("tensor" and "token" are)`],
      [withQ({ ignore: ["lm_head", "model.layers.0.mlp.down_proj"] }), UnsupportedArchitectureError, "quantization_config.ignore", 'config.json: quantization_config.ignore entry "model.layers.0.mlp.down_proj" is not supported (only lm_head may stay unquantized)'],
      [withQ({ ignore: [] }), UnsupportedArchitectureError, "quantization_config.ignore", "config.json: quantization_config: a quantized lm_head is not supported (list it in ignore)"],
      [withQ({ ignore: undefined }), UnsupportedArchitectureError, "quantization_config.ignore", "a quantized lm_head is not supported"],
    ];
    for (const [json, type, field, message] of cases) {
      let error: unknown;
      try {
        parseModelConfig(json);
      } catch (e) {
        error = e;
      }
      expect(error, message).toBeInstanceOf(type);
      expect((error as Error).message, message).toContain(message);
      expect((error as { field?: string }).field, message).toBe(field);
    }
  });

  it("expectedTensorShapes lists each quantized layer's weight_scale: [out, 1] per channel, [1] per tensor", () => {
    const channel = expectedTensorShapes(readModelConfig(fixture("channel")));
    expect(channel.get("model.layers.1.self_attn.k_proj.weight_scale")).toEqual([32, 1]);
    expect(channel.get("model.layers.0.mlp.down_proj.weight_scale")).toEqual([64, 1]);
    expect([...channel.keys()].filter((n) => n.endsWith(".weight_scale"))).toHaveLength(14);
    expect(channel.has("lm_head.weight_scale")).toBe(false);
    const tensor = expectedTensorShapes(readModelConfig(fixture("tensor")));
    expect(tensor.get("model.layers.0.mlp.gate_proj.weight_scale")).toEqual([1]);
    expect([...tensor.keys()].filter(isQuantizedLinear)).toHaveLength(14);
  });
});

describe("FP8 weights", () => {
  /** A copy of a fixture with its tensors edited (data decoded to float32 and written back in each tensor's dtype). */
  function edited(variant: "channel" | "tensor", edit: (t: Map<string, TensorInput>) => void): string {
    const dir = tmp();
    cpSync(fixture(variant), dir, { recursive: true });
    const tensors = new Map<string, TensorInput>([...readSafetensors(join(dir, "model.safetensors"))].map(([n, t]) => [n, { shape: t.shape, data: t.data, dtype: t.dtype }]));
    edit(tensors);
    writeSafetensors(join(dir, "model.safetensors"), tensors);
    return dir;
  }

  it("rewriting a fixture through the reader and writer keeps its bytes' meaning (E4M3 round trip)", () => {
    const dir = edited("tensor", () => {});
    const a = loadModel(dir);
    const b = loadModel(fixture("tensor"));
    for (const [name, t] of b.tensors) expect(Buffer.from(a.tensors.get(name)!.buffer).equals(Buffer.from(t.buffer)), name).toBe(true);
    expect(readSafetensorsHeader(join(dir, "model.safetensors")).tensors.get("model.layers.0.mlp.up_proj.weight_scale")).toMatchObject({ dtype: "BF16", shape: [] });
  });

  it("loadModel dequantizes: fp8 byte * scale of its row, exactly", () => {
    const dir = fixture("channel");
    const m = loadModel(dir);
    const raw = readSafetensors(join(dir, "model.safetensors"));
    const w = raw.get("model.layers.1.mlp.down_proj.weight")!; // [64, 160]
    const s = raw.get("model.layers.1.mlp.down_proj.weight_scale")!; // [64, 1]
    expect(w.dtype).toBe("F8_E4M3");
    const got = m.tensors.get("model.layers.1.mlp.down_proj.weight")!;
    for (const i of [0, 1, 159, 160, 5000, 64 * 160 - 1]) expect(got[i]).toBe(Math.fround(w.data[i] * s.data[Math.floor(i / 160)]));
    expect(m.tensors.has("model.layers.1.mlp.down_proj.weight_scale")).toBe(false);
  });

  it("refuses a wrong dtype, a missing or misshapen scale, a stray tensor and a non-positive scale", () => {
    const cases: [string, "channel" | "tensor", (t: Map<string, TensorInput>) => void, new (...a: never[]) => ModelError, RegExp][] = [
      ["bf16 linear", "channel", (t) => (t.get("model.layers.0.self_attn.q_proj.weight")!.dtype = "BF16"), UnsupportedDtypeError,
        /tensor model.layers.0.self_attn.q_proj.weight must be F8_E4M3 \(config.json's quantization_config quantizes it\), not BF16/],
      ["fp8 norm", "channel", (t) => (t.get("model.layers.0.input_layernorm.weight")!.dtype = "F8_E4M3"), UnsupportedDtypeError,
        /tensor model.layers.0.input_layernorm.weight: F8_E4M3 needs an FP8 quantization_config in config.json and a linear layer/],
      ["fp8 lm_head", "channel", (t) => (t.get("lm_head.weight")!.dtype = "F8_E4M3"), UnsupportedDtypeError, /tensor lm_head.weight: F8_E4M3 needs/],
      ["fp8 scale", "channel", (t) => (t.get("model.layers.0.mlp.up_proj.weight_scale")!.dtype = "F8_E4M3"), UnsupportedDtypeError, /up_proj.weight_scale: F8_E4M3 needs/],
      ["missing scale", "channel", (t) => t.delete("model.layers.1.self_attn.v_proj.weight_scale"), MissingTensorError, /tensor model.layers.1.self_attn.v_proj.weight_scale \(shape \[32, 1\]\) is missing/],
      ["per-tensor scale in a per-channel checkpoint", "channel", (t) => t.set("model.layers.0.mlp.up_proj.weight_scale", { shape: [1], data: Float32Array.of(0.01) }), ShapeMismatchError,
        /tensor model.layers.0.mlp.up_proj.weight_scale has shape \[1\], expected \[160, 1\]/],
      ["per-channel scale in a per-tensor checkpoint", "tensor", (t) => t.set("model.layers.0.mlp.up_proj.weight_scale", { shape: [160, 1], data: new Float32Array(160).fill(0.01) }), ShapeMismatchError,
        /weight_scale has shape \[160, 1\], expected \[1\]/],
      ["input_scale of two values", "tensor", (t) => t.set("model.layers.0.mlp.up_proj.input_scale", { shape: [2], data: Float32Array.of(1, 2) }), ShapeMismatchError, /input_scale has shape \[2\], expected \[1\]/],
      ["input_scale without a layer", "tensor", (t) => t.set("model.norm.input_scale", { shape: [1], data: Float32Array.of(1) }), UnexpectedTensorError, /tensor model.norm.input_scale/],
      ["zero scale", "tensor", (t) => (t.get("model.layers.1.mlp.gate_proj.weight_scale")!.data = Float32Array.of(0)), MalformedSafetensorsError,
        /tensor model.layers.1.mlp.gate_proj.weight_scale: scales must be positive and finite/],
    ];
    for (const [label, variant, edit, type, message] of cases) {
      const dir = edited(variant, edit);
      expect(() => loadModel(dir), label).toThrow(type);
      expect(() => loadModel(dir), label).toThrow(message);
    }
  });

  it("a per-tensor scale may be [1] as well as []", () => {
    const dir = edited("tensor", (t) => {
      for (const [name, x] of t) if (name.endsWith(".weight_scale")) t.set(name, { ...x, shape: [1] });
    });
    const a = referenceForward(loadModel(dir), [3, 4, 5]).logits;
    expect(Array.from(a)).toEqual(Array.from(referenceForward(fixture("tensor"), [3, 4, 5]).logits));
  });

  it("F8_E4M3 without a quantization_config is refused", () => {
    const dir = tmp();
    cpSync(fixture("channel"), dir, { recursive: true });
    const { quantization_config: _drop, ...plain } = configOf(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify(plain));
    expect(() => loadModel(dir)).toThrow(/tensor model.layers.0.self_attn.q_proj.weight: F8_E4M3 needs an FP8 quantization_config in config.json and a linear layer/);
  });
});

describe.each(["channel", "tensor"] as const)("llama-fp8-%s-tiny against transformers", (variant) => {
  const dir = fixture(variant);
  const hf = JSON.parse(readFileSync(join(dir, "hf-logits.json"), "utf8")) as { prompt: number[]; logits: number[][] };
  const relError = (ours: Float64Array) => {
    let diff = 0;
    let scale = 0;
    hf.logits.flat().forEach((v, i) => {
      diff = Math.max(diff, Math.abs(ours[i] - v));
      scale = Math.max(scale, Math.abs(v));
    });
    return diff / scale;
  };

  it("the float64 reference of the dequantized model equals transformers' logits at every position", () => {
    const m = loadModel(dir);
    expect(m.config.fp8?.perChannel).toBe(variant === "channel");
    const { logits } = referenceForward(m, hf.prompt, { allPositions: true });
    expect(logits.length).toBe(hf.prompt.length * 384);
    expect(relError(logits)).toBeLessThan(1e-5);
    // the scales matter: the raw E4M3 values (scale 1) give other logits, so the check above can fail
    const raw = readSafetensors(join(dir, "model.safetensors"));
    const unscaled = new Map([...m.tensors].map(([n, t]) => [n, isQuantizedLinear(n) ? raw.get(n)!.data : t]));
    expect(relError(referenceForward({ ...m, tensors: unscaled }, hf.prompt, { allPositions: true }).logits)).toBeGreaterThan(1e-2);
  });
});
