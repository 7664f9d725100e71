// Architectures beyond Llama against transformers itself: fixtures/qwen2-tiny (biases on q, k and v),
// fixtures/qwen3-tiny (per-head q/k RMSNorm, head_dim not hidden / heads) and fixtures/mistral-tiny (a sliding
// window of 5 positions over a 12-token prompt) were written by transformers 5.18's
// save_pretrained (its config layout: rope_parameters, layer_types) with random weights, beside transformers' own
// logits for a prompt at every position (tools/reference/hf_model_fixture.py).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel, readModelConfig, referenceForward, UnsupportedArchitectureError } from "../src/index.js";

const fixture = (name: string) => join(import.meta.dirname, "fixtures", name);
const hfOf = (dir: string) => JSON.parse(readFileSync(join(dir, "hf-logits.json"), "utf8")) as { prompt: number[]; logits: number[][] };

/** max |ours - hf| / max |hf| over every position. */
function relError(ours: Float64Array, hf: { logits: number[][] }, vocab: number): number {
  let diff = 0;
  let scale = 0;
  hf.logits.forEach((row, p) =>
    row.forEach((v, i) => {
      diff = Math.max(diff, Math.abs(ours[p * vocab + i] - v));
      scale = Math.max(scale, Math.abs(v));
    }),
  );
  return diff / scale;
}

const families = [
  { name: "qwen2", dir: fixture("qwen2-tiny"), config: { architecture: "Qwen2ForCausalLM", qkvBias: true, qkNorm: false, headDim: 16 }, without: { qkvBias: false } },
  { name: "qwen3", dir: fixture("qwen3-tiny"), config: { architecture: "Qwen3ForCausalLM", qkvBias: false, qkNorm: true, headDim: 32 }, without: { qkNorm: false } },
  {
    name: "mistral (sliding window 5 over 12 tokens)",
    dir: fixture("mistral-tiny"),
    config: { architecture: "MistralForCausalLM", qkvBias: false, qkNorm: false, slidingWindow: 5 },
    without: { slidingWindow: null },
  },
];

describe.each(families)("$name against transformers", ({ dir, config, without }) => {
  const hf = hfOf(dir);
  it("reads the config (transformers 5 layout: rope_parameters, layer_types)", () => {
    expect(readModelConfig(dir)).toMatchObject({ ...config, tieWordEmbeddings: true, ropeTheta: 1_000_000, ropeScaling: null });
  });

  it("the float64 reference's logits equal transformers' at every position", () => {
    const m = loadModel(dir);
    const { logits } = referenceForward(m, hf.prompt, { allPositions: true });
    expect(relError(logits, hf, m.config.vocabSize)).toBeLessThan(1e-5);
    // what the architecture adds matters: without it the logits are far off (so the check above can fail)
    const plain = { ...m, config: { ...m.config, ...without } };
    expect(relError(referenceForward(plain, hf.prompt, { allPositions: true }).logits, hf, m.config.vocabSize)).toBeGreaterThan(1e-2);
  });
});

describe("Qwen's sliding window is refused by name", () => {
  const dir = fixture("qwen2-tiny");

  it("refuses a sliding window by name", () => {
    const tmp = mkdtempSync(join(tmpdir(), "qwen2-"));
    try {
      cpSync(dir, tmp, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(tmp, "config.json"), "utf8")) as Record<string, unknown>;
      writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...cfg, use_sliding_window: true, sliding_window: 64 }));
      expect(() => readModelConfig(tmp)).toThrow(UnsupportedArchitectureError);
      writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...cfg, layer_types: ["full_attention", "sliding_attention"] }));
      expect(() => readModelConfig(tmp)).toThrow(/layer_types/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe("Mistral's sliding_window as transformers reads it", () => {
  const base = JSON.parse(readFileSync(join(fixture("mistral-tiny"), "config.json"), "utf8")) as Record<string, unknown>;
  it("absent means transformers' default 4096, null means none", () => {
    const tmp = mkdtempSync(join(tmpdir(), "mistral-"));
    try {
      const { sliding_window: _drop, ...rest } = base;
      writeFileSync(join(tmp, "config.json"), JSON.stringify(rest));
      expect(readModelConfig(tmp).slidingWindow).toBe(4096);
      writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...base, sliding_window: null }));
      expect(readModelConfig(tmp).slidingWindow).toBeNull();
      writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...base, layer_types: ["full_attention", "sliding_attention"] }));
      expect(() => readModelConfig(tmp)).toThrow(/layer_types/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
