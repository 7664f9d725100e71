import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import {
  argmax,
  CHATML_TEMPLATE,
  expectedTensorShapes,
  generateModel,
  generatedModelFiles,
  loadedModelFromGenerated,
  loadModel,
  parameterCount,
  referenceForward,
  Rng,
  validateModelDir,
  writeModelDir,
} from "@trtd/model";
import { tempDirs } from "./helpers.js";

const tmp = tempDirs();

function dirHash(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) out[f] = createHash("sha256").update(readFileSync(join(dir, f))).digest("hex");
  return out;
}

describe("Rng", () => {
  it("is reproducible per seed and stream, and its normals have mean 0 and variance 1", () => {
    const a = new Rng(42, 7);
    const b = new Rng(42, 7);
    const c = new Rng(42, 8);
    const xs = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.nextUint32())).not.toEqual(xs);
    const r = new Rng(0);
    let s = 0;
    let ss = 0;
    const n = 200000;
    for (let i = 0; i < n; i++) {
      const x = r.nextNormal();
      s += x;
      ss += x * x;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(ss / n - 1)).toBeLessThan(0.02);
    expect(() => new Rng(-1)).toThrow(RangeError);
  });
});

describe("tiny", () => {
  it("is generated in well under a few seconds and byte-identical on every run", () => {
    const t0 = performance.now();
    const a = tmp();
    writeModelDir(a, generateModel({ preset: "tiny", seed: 0 }));
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(10_000); // ≈0.3 s measured on the 2-core VM; generous for a loaded machine
    const b = tmp();
    writeModelDir(b, generateModel({ preset: "tiny", seed: 0 }));
    const ha = dirHash(a);
    expect(Object.keys(ha)).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"]);
    expect(dirHash(b)).toEqual(ha);
    const c = tmp();
    writeModelDir(c, generateModel({ preset: "tiny", seed: 1 }));
    expect(dirHash(c)["model.safetensors"]).not.toBe(ha["model.safetensors"]);
  });

  it("matches the contract: dimensions, ChatML specials, eos, no BOS, tied float32, llama3 RoPE", () => {
    const dir = tmp();
    writeModelDir(dir, generateModel({ preset: "tiny" }));
    const r = validateModelDir(dir);
    expect(r.warnings).toEqual([]);
    expect(r.config).toMatchObject({
      hiddenSize: 64, intermediateSize: 192, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 100352,
      maxPositionEmbeddings: 2048, ropeTheta: 500000, rmsNormEps: 1e-5, tieWordEmbeddings: true, torchDtype: "float32",
      eosTokenIds: [100265, 100257],
      ropeScaling: { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 },
    });
    expect(r.dtypes).toEqual(["F32"]);
    expect(r.tokenizer.kind).toBe("tiktoken-encoding");
    expect(r.tokenizer.encoding).toBe("cl100k_base");
    expect(r.tokenizer.specialTokens).toEqual([
      { id: 100257, content: "<|endoftext|>" },
      { id: 100264, content: "<|im_start|>" },
      { id: 100265, content: "<|im_end|>" },
    ]);
    const tc = r.tokenizer.tokenizerConfig!;
    expect(tc).toMatchObject({ add_bos_token: false, bos_token: null, eos_token: "<|im_end|>", tiktoken_encoding: "cl100k_base" });
    expect(JSON.parse(readFileSync(join(dir, "generation_config.json"), "utf8")).eos_token_id).toEqual([100265, 100257]);
    expect(parameterCount(r.config)).toBe(100352 * 64 + 2 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 64 * 192) + 64);
  });

  it("chat_template renders ChatML with and without the generation prompt", () => {
    const t = new Template(CHATML_TEMPLATE);
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "Hi" }, { type: "image_url", image_url: "x" }, { type: "text", text: " there" }] },
    ];
    expect(t.render({ messages, add_generation_prompt: true })).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.render({ messages: [{ role: "user", content: "x" }], add_generation_prompt: false })).toBe("<|im_start|>user\nx<|im_end|>\n");
  });

  it("greedy continuations depend on the prompt and do not collapse to one repeated token", () => {
    const m = loadedModelFromGenerated(generateModel({ preset: "tiny" }));
    const prompts = [[9906, 1917], [40, 1093, 279], [100264, 882, 198, 13347], [5, 6, 7, 8, 9]];
    const outs: number[][] = [];
    for (const p of prompts) {
      const toks = [...p];
      for (let i = 0; i < 8; i++) toks.push(argmax(referenceForward(m, toks).logits));
      outs.push(toks.slice(p.length));
    }
    expect(new Set(outs.map((o) => o.join(","))).size).toBe(prompts.length);
    for (const o of outs) expect(new Set(o).size).toBeGreaterThan(2);
    // Padding ids (not tokens of cl100k_base) have zero embeddings, so they are never produced.
    for (const o of outs) for (const t of o) expect(t === 100257 || t === 100264 || t === 100265 || t < 100256).toBe(true);
  });
});

describe("small", () => {
  it("has about 90M parameters (checked on the config, without generating 350 MB)", () => {
    const full = generatedModelFiles({ preset: "small" }).modelConfig;
    const n = parameterCount(full);
    expect(n).toBeGreaterThan(85e6);
    expect(n).toBeLessThan(100e6);
    expect(expectedTensorShapes(full).get("model.layers.11.self_attn.k_proj.weight")).toEqual([256, 512]);
    expect(full).toMatchObject({ hiddenSize: 512, intermediateSize: 1536, numHeads: 8, numKvHeads: 4, headDim: 64, maxPositionEmbeddings: 4096 });
  });
});

describe("bf16 variant", () => {
  it("stores each weight as the bf16 rounding of the float32 weight", () => {
    const gen = generateModel({ dims: { vocabSize: 300, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2, numKvHeads: 2, headDim: 8 } });
    const dir = tmp();
    writeModelDir(dir, gen, { dtype: "bfloat16" });
    const loaded = loadModel(dir);
    for (const [name, t] of gen.tensors) {
      const got = loaded.tensors.get(name)!;
      for (let i = 0; i < got.length; i++) {
        const want = t.data[i];
        expect(Math.abs(got[i] - want)).toBeLessThanOrEqual(Math.abs(want) * 2 ** -8);
      }
    }
  });
});
