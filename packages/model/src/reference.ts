// An independent, deliberately plain float64 implementation of the Llama forward pass (HF LlamaForCausalLM
// semantics), used as the numerical reference for the executors. Clarity over speed: no caching, no batching.
import type { ModelConfig } from "./config.js";
import { loadModel, type LoadedModel } from "./load.js";
import { MissingTensorError } from "./errors.js";

export interface ReferenceForwardOptions {
  /** Return logits for every position (row-major [tokens, vocab]) instead of only the last one. */
  allPositions?: boolean;
}

export interface ReferenceForwardResult {
  /** float64 logits: [vocab] for the last position, or [tokens * vocab] with allPositions. */
  logits: Float64Array;
  vocabSize: number;
  /** Number of positions whose logits are returned (1 or tokens.length). */
  positions: number;
}

/**
 * RoPE inverse frequencies, one per rotated pair (head_dim / 2 of them): theta^(-2i/d), then the config's scaling, as
 * transformers computes it (modeling_rope_utils):
 * - linear: every frequency divided by `factor`;
 * - llama3: wavelengths longer than original_max_position_embeddings / low_freq_factor are divided by `factor`,
 *   shorter than original / high_freq_factor kept, and those between interpolate with
 *   s = (original / wavelen - low) / (high - low): f = (1 - s) * f / factor + s * f;
 * - yarn: dimensions below the correction range (fast rotations, beta_fast) kept, above it (beta_slow) divided by
 *   `factor`, a linear ramp between; cos and sin are then scaled by `ropeAttentionFactor`;
 * - dynamic: plain RoPE (it differs only past max_position_embeddings, where contexts are capped).
 */
export function ropeInverseFrequencies(config: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float64Array {
  const d = config.headDim;
  const half = d / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / d);
  const rs = config.ropeScaling;
  if (!rs || rs.ropeType === "dynamic") return inv;
  if (rs.ropeType === "linear") {
    for (let i = 0; i < half; i++) inv[i] /= rs.factor;
    return inv;
  }
  if (rs.ropeType === "yarn") {
    const correctionDim = (rotations: number) =>
      (d * Math.log(rs.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(config.ropeTheta));
    let low = correctionDim(rs.betaFast);
    let high = correctionDim(rs.betaSlow);
    if (rs.truncate) {
      low = Math.floor(low);
      high = Math.ceil(high);
    }
    low = Math.max(low, 0);
    high = Math.min(high, d - 1);
    if (low === high) high += 0.001;
    for (let i = 0; i < half; i++) {
      const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
      const extrapolation = 1 - ramp;
      inv[i] = (inv[i] / rs.factor) * (1 - extrapolation) + inv[i] * extrapolation;
    }
    return inv;
  }
  const lowFreqWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highFreqWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen < highFreqWavelen) continue; // high frequency: unchanged
    if (wavelen > lowFreqWavelen) {
      inv[i] = inv[i] / rs.factor; // low frequency: scaled down
      continue;
    }
    const s = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
    inv[i] = (1 - s) * (inv[i] / rs.factor) + s * inv[i];
  }
  return inv;
}

/** The factor on cos and sin (yarn's attention scaling; 1 for the other types). */
export function ropeAttentionFactor(config: Pick<ModelConfig, "ropeScaling">): number {
  return config.ropeScaling?.ropeType === "yarn" ? config.ropeScaling.attentionFactor : 1;
}

/** y = x / sqrt(mean(x²) + eps) * w, over each row of length n. */
function rmsNorm(x: Float64Array, w: Float32Array, rows: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i] * x[r * n + i];
    const scale = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * scale * w[i];
  }
  return y;
}

/** y[r, o] = sum_i x[r, i] * W[o, i], W row-major [out, in] (HF nn.Linear layout). */
function linear(x: Float64Array, w: Float32Array, rows: number, inDim: number, outDim: number): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const xo = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * w[wo + i];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

/** x[r, o] += b[o] for each of the rows (a projection's bias, Qwen2's q, k and v). */
function addBias(x: Float64Array, b: Float32Array, rows: number): void {
  const n = b.length;
  for (let r = 0; r < rows; r++) for (let o = 0; o < n; o++) x[r * n + o] += b[o];
}

/** Rotates each head in place (HF rotate_half: element i pairs with i + d/2). x is [rows, heads * d]. */
function applyRope(x: Float64Array, rows: number, heads: number, d: number, invFreq: Float64Array, scale: number): void {
  const half = d / 2;
  for (let p = 0; p < rows; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i];
      const c = Math.cos(angle) * scale;
      const s = Math.sin(angle) * scale;
      for (let h = 0; h < heads; h++) {
        const base = p * heads * d + h * d;
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
}

function tensor(model: LoadedModel, name: string): Float32Array {
  const t = model.tensors.get(name);
  if (!t) throw new MissingTensorError(name, `reference forward: tensor ${name} is missing`);
  return t;
}

/**
 * Runs the model over `tokens` (positions 0..n-1, causal) in float64 and returns the logits of the last position
 * (or of all positions). Accepts a model directory or a LoadedModel (load once with loadModel for repeated calls).
 */
export function referenceForward(model: string | LoadedModel, tokens: readonly number[], options: ReferenceForwardOptions = {}): ReferenceForwardResult {
  const m = typeof model === "string" ? loadModel(model) : model;
  const cfg = m.config;
  const T = tokens.length;
  if (T === 0) throw new RangeError("referenceForward needs at least one token");
  if (cfg.ropeScaling?.ropeType === "dynamic" && T > cfg.maxPositionEmbeddings) {
    throw new RangeError(`dynamic RoPE is reproduced up to max_position_embeddings (${cfg.maxPositionEmbeddings} tokens), not ${T}`);
  }
  const { hiddenSize: h, intermediateSize: inter, numHeads: H, numKvHeads: KV, headDim: d, vocabSize: V } = cfg;
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new RangeError(`token id ${t} is outside the vocabulary [0, ${V})`);
  }
  const group = H / KV;
  const invFreq = ropeInverseFrequencies(cfg);
  const ropeScale = ropeAttentionFactor(cfg);
  const scale = 1 / Math.sqrt(d);

  const embed = tensor(m, "model.embed_tokens.weight");
  const x = new Float64Array(T * h);
  for (let t = 0; t < T; t++) for (let i = 0; i < h; i++) x[t * h + i] = embed[tokens[t] * h + i];

  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    // Attention block.
    const xn = rmsNorm(x, tensor(m, `${p}.input_layernorm.weight`), T, h, cfg.rmsNormEps);
    const q = linear(xn, tensor(m, `${p}.self_attn.q_proj.weight`), T, h, H * d);
    const k = linear(xn, tensor(m, `${p}.self_attn.k_proj.weight`), T, h, KV * d);
    const v = linear(xn, tensor(m, `${p}.self_attn.v_proj.weight`), T, h, KV * d);
    if (cfg.qkvBias) {
      addBias(q, tensor(m, `${p}.self_attn.q_proj.bias`), T);
      addBias(k, tensor(m, `${p}.self_attn.k_proj.bias`), T);
      addBias(v, tensor(m, `${p}.self_attn.v_proj.bias`), T);
    }
    if (cfg.qkNorm) {
      // Qwen3: every head of q and k RMS-normalized over head_dim before RoPE
      q.set(rmsNorm(q, tensor(m, `${p}.self_attn.q_norm.weight`), T * H, d, cfg.rmsNormEps));
      k.set(rmsNorm(k, tensor(m, `${p}.self_attn.k_norm.weight`), T * KV, d, cfg.rmsNormEps));
    }
    applyRope(q, T, H, d, invFreq, ropeScale);
    applyRope(k, T, KV, d, invFreq, ropeScale);
    const attn = new Float64Array(T * H * d);
    const scores = new Float64Array(T);
    for (let t = 0; t < T; t++) {
      for (let hq = 0; hq < H; hq++) {
        const kvh = Math.floor(hq / group);
        const qo = t * H * d + hq * d;
        let max = -Infinity;
        // Mistral's sliding window: a query sees the last `slidingWindow` positions, itself included (HF: kv > q - W)
        const s0 = cfg.slidingWindow === null ? 0 : Math.max(0, t - cfg.slidingWindow + 1);
        for (let s = s0; s <= t; s++) {
          const ko = s * KV * d + kvh * d;
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[qo + i] * k[ko + i];
          scores[s] = dot * scale;
          if (scores[s] > max) max = scores[s];
        }
        let sum = 0;
        for (let s = s0; s <= t; s++) {
          scores[s] = Math.exp(scores[s] - max);
          sum += scores[s];
        }
        for (let s = s0; s <= t; s++) {
          const wgt = scores[s] / sum;
          const vo = s * KV * d + kvh * d;
          for (let i = 0; i < d; i++) attn[qo + i] += wgt * v[vo + i];
        }
      }
    }
    const o = linear(attn, tensor(m, `${p}.self_attn.o_proj.weight`), T, H * d, h);
    for (let i = 0; i < x.length; i++) x[i] += o[i];
    // MLP block (SwiGLU): down(silu(gate(x)) * up(x)).
    const xn2 = rmsNorm(x, tensor(m, `${p}.post_attention_layernorm.weight`), T, h, cfg.rmsNormEps);
    const g = linear(xn2, tensor(m, `${p}.mlp.gate_proj.weight`), T, h, inter);
    const u = linear(xn2, tensor(m, `${p}.mlp.up_proj.weight`), T, h, inter);
    for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    const down = linear(g, tensor(m, `${p}.mlp.down_proj.weight`), T, inter, h);
    for (let i = 0; i < x.length; i++) x[i] += down[i];
  }

  const rows = options.allPositions ? T : 1;
  const last = options.allPositions ? x : x.subarray((T - 1) * h, T * h);
  const xf = rmsNorm(last, tensor(m, "model.norm.weight"), rows, h, cfg.rmsNormEps);
  const head = cfg.tieWordEmbeddings ? embed : tensor(m, "lm_head.weight");
  return { logits: linear(xf, head, rows, h, V), vocabSize: V, positions: rows };
}

/** Index of the largest value (first on ties). */
export function argmax(values: ArrayLike<number>, offset = 0, length = values.length - offset): number {
  let best = 0;
  let bestV = -Infinity;
  for (let i = 0; i < length; i++) {
    if (values[offset + i] > bestV) {
      bestV = values[offset + i];
      best = i;
    }
  }
  return best;
}
