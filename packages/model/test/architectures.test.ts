// Architectures beyond Llama against transformers itself: fixtures/qwen2-tiny (biases on q, k and v) and
// fixtures/qwen3-tiny (per-head q/k RMSNorm, head_dim not hidden / heads) were written by transformers 5.18's
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
