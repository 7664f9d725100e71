// Qwen2 (Llama with biases on q, k and v) against transformers itself: fixtures/qwen2-tiny was written by
// transformers 5.18's save_pretrained (its config layout: rope_parameters, layer_types) with random weights and
// biases, beside transformers' own logits for a prompt at every position (tools/reference/qwen2_fixture.py).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel, readModelConfig, referenceForward, UnsupportedArchitectureError } from "../src/index.js";

const dir = join(import.meta.dirname, "fixtures", "qwen2-tiny");
const hf = JSON.parse(readFileSync(join(dir, "hf-logits.json"), "utf8")) as { prompt: number[]; logits: number[][] };

/** max |ours - hf| / max |hf| over every position. */
function relError(ours: Float64Array, vocab: number): number {
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

describe("Qwen2 against transformers", () => {
  it("reads the config: QKV bias, tied embeddings, rope_parameters", () => {
    const c = readModelConfig(dir);
    expect(c).toMatchObject({ architecture: "Qwen2ForCausalLM", qkvBias: true, tieWordEmbeddings: true, ropeTheta: 1_000_000, ropeScaling: null });
  });

  it("the float64 reference's logits equal transformers' at every position", () => {
    const m = loadModel(dir);
    const { logits } = referenceForward(m, hf.prompt, { allPositions: true });
    expect(relError(logits, m.config.vocabSize)).toBeLessThan(1e-5);
    // the biases matter: without them the logits are far off (so the check above can fail)
    const noBias = { ...m, config: { ...m.config, qkvBias: false } };
    expect(relError(referenceForward(noBias, hf.prompt, { allPositions: true }).logits, m.config.vocabSize)).toBeGreaterThan(1e-2);
  });

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
