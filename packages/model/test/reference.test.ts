import { describe, expect, it } from "vitest";
import { generateModel, loadedModelFromGenerated, parseModelConfig, referenceForward, ropeInverseFrequencies, type LoadedModel } from "@trtd/model";

/** A LoadedModel from literal weights; `dims` are config.json fields. */
function literalModel(dims: Record<string, unknown>, weights: Record<string, number[]>): LoadedModel {
  const config = parseModelConfig({ architectures: ["LlamaForCausalLM"], model_type: "llama", tie_word_embeddings: true, ...dims }, "test");
  const tensors = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(weights)) tensors.set(k, new Float32Array(v));
  return { config, tensors };
}

const silu = (x: number) => x / (1 + Math.exp(-x));
const rmsnorm = (x: number[], w: number[], eps: number) => {
  const r = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + eps);
  return x.map((v, i) => (v / r) * w[i]);
};

describe("referenceForward on hand-computable models", () => {
  it("one token through one layer (attention reduces to v; RoPE at position 0 is the identity)", () => {
    const eps = 1e-5;
    const E = [1, 0, 0, 2, 3, -1]; // vocab 3 × hidden 2
    const m = literalModel(
      { hidden_size: 2, intermediate_size: 1, num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1, head_dim: 2, vocab_size: 3, rms_norm_eps: eps, rope_theta: 10000, max_position_embeddings: 16 },
      {
        "model.embed_tokens.weight": E,
        "model.layers.0.input_layernorm.weight": [1, 0.5],
        "model.layers.0.self_attn.q_proj.weight": [0.3, -2, 1.7, 0.1], // irrelevant for one token
        "model.layers.0.self_attn.k_proj.weight": [-1, 0.4, 2, 2],
        "model.layers.0.self_attn.v_proj.weight": [1, 1, 0, 2],
        "model.layers.0.self_attn.o_proj.weight": [0.5, 0, 1, -1],
        "model.layers.0.post_attention_layernorm.weight": [2, 1],
        "model.layers.0.mlp.gate_proj.weight": [1, -1],
        "model.layers.0.mlp.up_proj.weight": [0.5, 0.5],
        "model.layers.0.mlp.down_proj.weight": [1, 2],
        "model.norm.weight": [1, 1.5],
      },
    );
    // By hand, token 2: x = (3, -1).
    const x = [3, -1];
    const xn = rmsnorm(x, [1, 0.5], eps);
    const v = [xn[0] + xn[1], 2 * xn[1]];
    const x1 = [x[0] + 0.5 * v[0], x[1] + v[0] - v[1]];
    const xn2 = rmsnorm(x1, [2, 1], eps);
    const a = silu(xn2[0] - xn2[1]) * (0.5 * xn2[0] + 0.5 * xn2[1]);
    const x2 = [x1[0] + a, x1[1] + 2 * a];
    const xf = rmsnorm(x2, [1, 1.5], eps);
    const expected = [xf[0], 2 * xf[1], 3 * xf[0] - xf[1]];
    const { logits, positions, vocabSize } = referenceForward(m, [2]);
    expect(positions).toBe(1);
    expect(vocabSize).toBe(3);
    for (let i = 0; i < 3; i++) expect(logits[i]).toBeCloseTo(expected[i], 12);
  });

  it("two tokens: RoPE pairs i with i + d/2 (rotate_half), causal softmax with 1/sqrt(d) scale", () => {
    const eps = 1e-6;
    const theta = 100; // frequencies 1 and 100^(-1/2) = 0.1 for head_dim 4
    const I4 = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    const E = [1, 2, -1, 0.5, -0.5, 1, 2, -1.5]; // vocab 2 × hidden 4
    const m = literalModel(
      { hidden_size: 4, intermediate_size: 1, num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1, head_dim: 4, vocab_size: 2, rms_norm_eps: eps, rope_theta: theta, max_position_embeddings: 16 },
      {
        "model.embed_tokens.weight": E,
        "model.layers.0.input_layernorm.weight": [1, 1, 1, 1],
        "model.layers.0.self_attn.q_proj.weight": I4,
        "model.layers.0.self_attn.k_proj.weight": I4,
        "model.layers.0.self_attn.v_proj.weight": I4,
        "model.layers.0.self_attn.o_proj.weight": I4,
        "model.layers.0.post_attention_layernorm.weight": [1, 1, 1, 1],
        "model.layers.0.mlp.gate_proj.weight": [1, 1, 1, 1],
        "model.layers.0.mlp.up_proj.weight": [1, 1, 1, 1],
        "model.layers.0.mlp.down_proj.weight": [0, 0, 0, 0], // MLP contributes nothing
        "model.norm.weight": [1, 1, 1, 1],
      },
    );
    // Independent formulation: element j and j + 2 form the complex number z_j = x_j + i x_{j+2}, rotated at
    // position p by angle p * f_j; the dot product of two vectors is sum_j Re(z_j conj(w_j)).
    const xn0 = rmsnorm(E.slice(0, 4), [1, 1, 1, 1], eps);
    const xn1 = rmsnorm(E.slice(4, 8), [1, 1, 1, 1], eps);
    const f = [1, 0.1];
    const rot = (x: number[], p: number) => {
      const out = [...x];
      for (let j = 0; j < 2; j++) {
        const c = Math.cos(p * f[j]);
        const s = Math.sin(p * f[j]);
        out[j] = x[j] * c - x[j + 2] * s;
        out[j + 2] = x[j] * s + x[j + 2] * c;
      }
      return out;
    };
    const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i], 0);
    const q1 = rot(xn1, 1);
    const s0 = dot(q1, rot(xn0, 0)) / 2;
    const s1 = dot(q1, rot(xn1, 1)) / 2;
    const p0 = Math.exp(s0) / (Math.exp(s0) + Math.exp(s1));
    const attn = xn0.map((v, i) => p0 * v + (1 - p0) * xn1[i]);
    const x1 = E.slice(4, 8).map((v, i) => v + attn[i]);
    const xf = rmsnorm(x1, [1, 1, 1, 1], eps);
    const expected = [dot(E.slice(0, 4), xf), dot(E.slice(4, 8), xf)];
    const { logits } = referenceForward(m, [0, 1]);
    expect(logits[0]).toBeCloseTo(expected[0], 12);
    expect(logits[1]).toBeCloseTo(expected[1], 12);
    // Position 0 sees only itself: attention output = v = xn0.
    const all = referenceForward(m, [0, 1], { allPositions: true });
    const x0 = E.slice(0, 4).map((v, i) => v + xn0[i]);
    const xf0 = rmsnorm(x0, [1, 1, 1, 1], eps);
    expect(all.logits[0]).toBeCloseTo(dot(E.slice(0, 4), xf0), 12);
    expect(all.logits[1]).toBeCloseTo(dot(E.slice(4, 8), xf0), 12);
    expect(all.logits[2]).toBe(logits[0]);
  });
});

describe("Llama 3 RoPE frequencies", () => {
  it("keeps high, divides low and interpolates medium frequencies (tiny's config hits all three)", () => {
    const cfg = { headDim: 16, ropeTheta: 500000, ropeScaling: { ropeType: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 } };
    const inv = ropeInverseFrequencies(cfg);
    const plain = ropeInverseFrequencies({ ...cfg, ropeScaling: null });
    expect(inv.length).toBe(8);
    for (let i = 0; i < 8; i++) expect(plain[i]).toBeCloseTo(500000 ** (-i / 8), 15);
    // wavelengths 2π/f: i=0: 6.3, i=1: 32.5 (< 256/4 = 64: kept); i=2: 167 (between 64 and 256: smoothed); i≥3: > 256 (÷8).
    expect(inv[0]).toBe(plain[0]);
    expect(inv[1]).toBe(plain[1]);
    const s = (256 / ((2 * Math.PI) / plain[2]) - 1) / (4 - 1);
    expect(s).toBeGreaterThan(0);
    expect(s).toBeLessThan(1);
    expect(inv[2]).toBeCloseTo((1 - s) * (plain[2] / 8) + s * plain[2], 15);
    for (let i = 3; i < 8; i++) expect(inv[i]).toBeCloseTo(plain[i] / 8, 15);
  });
});

describe("invariances", () => {
  const dims = { vocabSize: 61, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, maxPositionEmbeddings: 64 };
  const tokens = [3, 17, 42, 5, 60, 0, 9];

  it("GQA equals MHA with each kv head duplicated for its query group", () => {
    const gqa = loadedModelFromGenerated(generateModel({ dims, seed: 7 }));
    const mhaCfg = parseModelConfig({ ...gqa.config.raw, num_key_value_heads: 4 });
    const tensors = new Map(gqa.tensors);
    const d = 8;
    const h = 32;
    for (let l = 0; l < 2; l++) {
      for (const which of ["k_proj", "v_proj"]) {
        const name = `model.layers.${l}.self_attn.${which}.weight`;
        const src = gqa.tensors.get(name)!; // [2 * d, h]
        const dst = new Float32Array(4 * d * h);
        for (let head = 0; head < 4; head++) dst.set(src.subarray(Math.floor(head / 2) * d * h, (Math.floor(head / 2) + 1) * d * h), head * d * h);
        tensors.set(name, dst);
      }
    }
    const a = referenceForward(gqa, tokens, { allPositions: true }).logits;
    const b = referenceForward({ config: mhaCfg, tensors }, tokens, { allPositions: true }).logits;
    expect(b.length).toBe(a.length);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i], 10);
  });

  it("a single token's logits do not depend on RoPE settings (position 0 is the identity)", () => {
    const m = loadedModelFromGenerated(generateModel({ dims, seed: 3 }));
    const other = parseModelConfig({ ...m.config.raw, rope_theta: 10, rope_scaling: null });
    const a = referenceForward(m, [11]).logits;
    const b = referenceForward({ config: other, tensors: m.tensors }, [11]).logits;
    expect(Array.from(b)).toEqual(Array.from(a));
    // ...while with two tokens they do.
    const a2 = referenceForward(m, [11, 12]).logits;
    const b2 = referenceForward({ config: other, tensors: m.tensors }, [11, 12]).logits;
    expect(Math.max(...a2.map((v, i) => Math.abs(v - b2[i])))).toBeGreaterThan(1e-3);
  });

  it("is causal: row t of allPositions equals the forward pass over the first t+1 tokens", () => {
    const m = loadedModelFromGenerated(generateModel({ dims, seed: 1 }));
    const all = referenceForward(m, tokens, { allPositions: true });
    expect(all.positions).toBe(tokens.length);
    expect(all.logits.length).toBe(tokens.length * 61);
    for (let t = 0; t < tokens.length; t++) {
      const prefix = referenceForward(m, tokens.slice(0, t + 1)).logits;
      expect(Array.from(all.logits.subarray(t * 61, (t + 1) * 61))).toEqual(Array.from(prefix));
    }
  });

  it("an untied lm_head equal to the embedding gives the tied result; a different one changes it", () => {
    const m = loadedModelFromGenerated(generateModel({ dims, seed: 2 }));
    const untied = parseModelConfig({ ...m.config.raw, tie_word_embeddings: false });
    const tensors = new Map(m.tensors);
    tensors.set("lm_head.weight", m.tensors.get("model.embed_tokens.weight")!);
    const a = referenceForward(m, tokens).logits;
    expect(Array.from(referenceForward({ config: untied, tensors }, tokens).logits)).toEqual(Array.from(a));
    tensors.set("lm_head.weight", m.tensors.get("model.embed_tokens.weight")!.map((v) => -v));
    const negated = referenceForward({ config: untied, tensors }, tokens).logits;
    for (let i = 0; i < a.length; i++) expect(negated[i] + a[i]).toBeCloseTo(0, 12);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.1);
  });

  it("rejects empty input and out-of-vocabulary ids", () => {
    const m = loadedModelFromGenerated(generateModel({ dims, seed: 2 }));
    expect(() => referenceForward(m, [])).toThrow(RangeError);
    expect(() => referenceForward(m, [61])).toThrow(/outside the vocabulary \[0, 61\)/);
  });
});
