import { describe, expect, it } from "vitest";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  readChatTemplate,
  expectedTensorShapes,
  generateModel,
  InvalidConfigError,
  loadedModelFromGenerated,
  loadModel,
  MalformedSafetensorsError,
  MissingFileError,
  MissingTensorError,
  ModelError,
  ModelWeights,
  readModelConfig,
  referenceForward,
  ShapeMismatchError,
  TokenizerNotFoundError,
  InvalidTokenizerError,
  UnexpectedTensorError,
  UnsupportedArchitectureError,
  validateModelDir,
  writeModelDir,
  writeSafetensors,
  type GenerateModelOptions,
} from "@trtd/model";
import { tempDirs } from "./helpers.js";

const tmp = tempDirs();
const small: GenerateModelOptions = { dims: { vocabSize: 50, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 8 }, seed: 5 };

function modelDir(opts: GenerateModelOptions = small, write: Parameters<typeof writeModelDir>[2] = {}): string {
  const dir = tmp();
  writeModelDir(dir, generateModel(opts), write);
  return dir;
}
function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const p = join(dir, "config.json");
  const c = JSON.parse(readFileSync(p, "utf8"));
  edit(c);
  writeFileSync(p, JSON.stringify(c));
}
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

describe("sharded weights", () => {
  it("reads shards through model.safetensors.index.json and gives the single-file result", () => {
    const single = modelDir();
    const sharded = modelDir(small, { maxShardBytes: 4096 });
    const w = ModelWeights.open(sharded);
    expect(w.indexFile).toBe("model.safetensors.index.json");
    expect(w.files.length).toBeGreaterThan(2);
    expect(w.files[0]).toMatch(/^model-00001-of-0000\d\.safetensors$/);
    w.close();
    const index = JSON.parse(readFileSync(join(sharded, "model.safetensors.index.json"), "utf8"));
    expect(Object.keys(index.weight_map).sort()).toEqual([...expectedTensorShapes(readModelConfig(sharded)).keys()].sort());
    const a = loadModel(single);
    const b = loadModel(sharded);
    for (const [name, t] of a.tensors) expect(Array.from(b.tensors.get(name)!)).toEqual(Array.from(t));
    expect(validateModelDir(sharded).weightFiles.length).toBe(index && new Set(Object.values(index.weight_map)).size);
  });

  it("names a shard the index lists but the directory lacks", () => {
    const dir = modelDir(small, { maxShardBytes: 4096 });
    const w = ModelWeights.open(dir);
    const victim = w.files[1];
    w.close();
    rmSync(join(dir, victim));
    const e = thrown(() => loadModel(dir));
    expect(e).toBeInstanceOf(MissingFileError);
    expect(e.message).toContain(`lists shard ${victim}`);
  });

  it("rejects an index that puts a tensor in the wrong shard, or misses one", () => {
    const dir = modelDir(small, { maxShardBytes: 4096 });
    const p = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(p, "utf8"));
    const original = JSON.stringify(index);
    index.weight_map["model.norm.weight"] = Object.values(index.weight_map).find((f) => f !== JSON.parse(original).weight_map["model.norm.weight"]);
    writeFileSync(p, JSON.stringify(index));
    expect(thrown(() => ModelWeights.open(dir)).message).toMatch(/puts tensor model.norm.weight in model-0000\d-of-0000\d.safetensors, which does not hold it/);
    const missing = JSON.parse(original);
    delete missing.weight_map["model.norm.weight"];
    writeFileSync(p, JSON.stringify(missing));
    expect(thrown(() => ModelWeights.open(dir)).message).toMatch(/holds tensor model.norm.weight, which model.safetensors.index.json does not list/);
    writeFileSync(p, "{ nope");
    expect(thrown(() => ModelWeights.open(dir))).toBeInstanceOf(MalformedSafetensorsError);
  });
});

describe("config validation", () => {
  it("accepts the generated config and fills defaults", () => {
    const dir = modelDir();
    const c = readModelConfig(dir);
    expect(c).toMatchObject({ hiddenSize: 16, numHeads: 2, numKvHeads: 1, headDim: 8, vocabSize: 50, tieWordEmbeddings: true, torchDtype: "float32" });
    editConfig(dir, (c) => {
      delete c.head_dim;
      delete c.num_key_value_heads;
      delete c.rope_scaling;
    });
    const d = readModelConfig(dir);
    expect(d.headDim).toBe(8); // 16 / 2
    expect(d.numKvHeads).toBe(2);
    expect(d.ropeScaling).toBeNull();
  });

  it("refuses unsupported architectures and features by name", () => {
    const cases: [(c: Record<string, unknown>) => void, RegExp][] = [
      [(c) => (c.architectures = ["GemmaForCausalLM"]), /architecture GemmaForCausalLM is not supported \(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM\)/],
      [(c) => (c.model_type = "gemma"), /model_type "gemma" is not supported/],
      [(c) => (c.rope_scaling = { rope_type: "longrope", factor: 4 }), /rope_scaling rope_type "longrope" is not supported/],
      [(c) => (c.attention_bias = true), /attention_bias: true is not supported/],
      [(c) => (c.hidden_act = "gelu"), /hidden_act "gelu" is not supported/],
    ];
    for (const [edit, msg] of cases) {
      const dir = modelDir();
      editConfig(dir, edit);
      const e = thrown(() => readModelConfig(dir));
      expect(e).toBeInstanceOf(UnsupportedArchitectureError);
      expect(e).toHaveProperty("code", "UNSUPPORTED_ARCHITECTURE");
      expect(e.message).toMatch(msg);
    }
  });

  it("names missing and invalid fields", () => {
    const cases: [(c: Record<string, unknown>) => void, RegExp, string][] = [
      [(c) => delete c.hidden_size, /hidden_size is missing/, "hidden_size"],
      [(c) => (c.num_key_value_heads = 3), /num_attention_heads 2 is not a multiple of num_key_value_heads 3/, "num_key_value_heads"],
      [(c) => (c.head_dim = 7), /head_dim 7 must be even for RoPE/, "head_dim"],
      [(c) => (c.vocab_size = 0), /vocab_size must be an integer ≥ 1, got 0/, "vocab_size"],
      [(c) => (c.eos_token_id = [1, 99]), /eos_token_id 99 is not a token id below vocab_size 50/, "eos_token_id"],
      [(c) => (c.rope_scaling = { rope_type: "llama3", factor: 8 }), /rope_scaling of rope_type "llama3" needs "low_freq_factor"/, "rope_scaling.low_freq_factor"],
    ];
    for (const [edit, msg, field] of cases) {
      const dir = modelDir();
      editConfig(dir, edit);
      const e = thrown(() => readModelConfig(dir));
      expect(e).toBeInstanceOf(InvalidConfigError);
      expect(e.message).toMatch(msg);
      expect((e as InvalidConfigError).field).toBe(field);
    }
    const dir = modelDir();
    writeFileSync(join(dir, "config.json"), "{ broken");
    expect(thrown(() => readModelConfig(dir)).message).toMatch(/config.json is not valid JSON/);
  });

  it("reports missing files", () => {
    const dir = modelDir();
    rmSync(join(dir, "model.safetensors"));
    const e = thrown(() => validateModelDir(dir));
    expect(e).toBeInstanceOf(MissingFileError);
    expect(e.message).toMatch(/has neither model.safetensors nor model.safetensors.index.json/);
    rmSync(join(dir, "config.json"));
    const e2 = thrown(() => validateModelDir(dir));
    expect(e2).toBeInstanceOf(MissingFileError);
    expect((e2 as MissingFileError).path).toBe(join(dir, "config.json"));
  });
});

describe("tensor validation", () => {
  it("names a tensor whose shape does not match the config, with both shapes", () => {
    const dir = modelDir();
    editConfig(dir, (c) => (c.intermediate_size = 32));
    const e = thrown(() => validateModelDir(dir)) as ShapeMismatchError;
    expect(e).toBeInstanceOf(ShapeMismatchError);
    expect(e.tensor).toBe("model.layers.0.mlp.gate_proj.weight");
    expect(e.expected).toEqual([32, 16]);
    expect(e.actual).toEqual([24, 16]);
    expect(e.message).toBe("tensor model.layers.0.mlp.gate_proj.weight has shape [24, 16], expected [32, 16]");
  });

  it("names a missing tensor, an untied model without lm_head, and unknown tensors", () => {
    const gen = generateModel(small);
    const dir = tmp();
    writeModelDir(dir, gen);
    const without = new Map(gen.tensors);
    without.delete("model.layers.1.self_attn.v_proj.weight");
    writeSafetensors(join(dir, "model.safetensors"), without);
    const e = thrown(() => validateModelDir(dir));
    expect(e).toBeInstanceOf(MissingTensorError);
    expect(e.message).toMatch(/tensor model.layers.1.self_attn.v_proj.weight \(shape \[8, 16\]\) is missing/);

    writeSafetensors(join(dir, "model.safetensors"), gen.tensors);
    editConfig(dir, (c) => (c.tie_word_embeddings = false));
    expect((thrown(() => validateModelDir(dir)) as MissingTensorError).tensor).toBe("lm_head.weight");

    editConfig(dir, (c) => (c.tie_word_embeddings = true));
    const extra = new Map(gen.tensors);
    extra.set("model.layers.0.self_attn.q_proj.bias", { shape: [16], data: new Float32Array(16) });
    extra.set("model.layers.0.self_attn.rotary_emb.inv_freq", { shape: [4], data: new Float32Array(4) }); // ignored, as in HF
    writeSafetensors(join(dir, "model.safetensors"), extra);
    const u = thrown(() => validateModelDir(dir));
    expect(u).toBeInstanceOf(UnexpectedTensorError);
    expect(u.message).toMatch(/tensor model.layers.0.self_attn.q_proj.bias in model.safetensors is not part of the Llama layout/);
  });

  it("every failure is a ModelError with a code and a name", () => {
    const dir = modelDir();
    writeFileSync(join(dir, "model.safetensors"), Buffer.from([1, 2, 3]));
    const e = thrown(() => validateModelDir(dir));
    expect(e).toBeInstanceOf(ModelError);
    expect(e.name).toBe("MalformedSafetensorsError");
    expect((e as ModelError).code).toBe("MALFORMED_SAFETENSORS");
    expect(e.message).toContain(join(dir, "model.safetensors"));
  });
});

describe("tokenizer files", () => {
  it("finds the chat template as the tokenizer does: a string, a named list, or chat_template.jinja", () => {
    const dir = modelDir();
    const tc = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    const { chat_template: _t, ...noTemplate } = tc;
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(noTemplate));
    expect(validateModelDir(dir).tokenizer.hasChatTemplate).toBe(false);
    expect(readChatTemplate(dir, noTemplate)).toBeUndefined();
    writeFileSync(join(dir, "chat_template.jinja"), "{{ messages[0]['content'] }}");
    expect(validateModelDir(dir).tokenizer.hasChatTemplate).toBe(true);
    expect(readChatTemplate(dir, noTemplate)).toBe("{{ messages[0]['content'] }}");
    const listed = { ...noTemplate, chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }] };
    expect(readChatTemplate(dir, listed)).toBe("D");
    expect(() => readChatTemplate(dir, { chat_template: 3 })).toThrow(InvalidTokenizerError);
  });

  it("needs tokenizer.model or a tiktoken_encoding", () => {
    const dir = modelDir();
    expect(validateModelDir(dir).tokenizer).toMatchObject({ kind: "tiktoken-file", ranks: 50, hasChatTemplate: true });
    rmSync(join(dir, "tokenizer.model"));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ tiktoken_encoding: "cl100k_base" }));
    expect(thrown(() => validateModelDir(dir)).message).toMatch(/tiktoken_encoding cl100k_base has 100256 ordinary tokens, more than vocab_size 50/);
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ tiktoken_encoding: "bogus" }));
    expect(thrown(() => validateModelDir(dir))).toBeInstanceOf(InvalidTokenizerError);
    rmSync(join(dir, "tokenizer_config.json"));
    const e = thrown(() => validateModelDir(dir));
    expect(e).toBeInstanceOf(TokenizerNotFoundError);
    expect(e.message).toMatch(/no tokenizer: expected a "tiktoken_encoding" in tokenizer_config.json, tokenizer.model \(tiktoken ranks\), original\/tokenizer.model or tokenizer.json/);
  });

  it("checks tiktoken ranks files and special token ids", () => {
    const dir = modelDir();
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ added_tokens_decoder: { "45": { content: "<|end|>", special: true } } }));
    const ranks = Array.from({ length: 40 }, (_, i) => `${Buffer.from([65 + i]).toString("base64")} ${i}`).join("\n");
    writeFileSync(join(dir, "tokenizer.model"), ranks + "\n");
    const ok = validateModelDir(dir);
    expect(ok.tokenizer).toMatchObject({ kind: "tiktoken-file", ranks: 40, maxRank: 39, specialTokens: [{ id: 45, content: "<|end|>" }] });
    expect(ok.warnings).toContain("tokenizer_config.json has no chat_template (chat completions will not work)");
    writeFileSync(join(dir, "tokenizer.model"), Buffer.from([0x0a, 0x05, 0x3c, 0x75, 0x6e, 0x6b, 0x3e, 0x15])); // SentencePiece-like protobuf
    const sp = thrown(() => validateModelDir(dir));
    expect(sp).toBeInstanceOf(InvalidTokenizerError);
    expect(sp.message).toMatch(/not "<base64> <rank>" \(tiktoken ranks format; SentencePiece models are not supported\)/);
    writeFileSync(join(dir, "tokenizer.model"), ranks + "\nQUJD 60\n");
    expect(thrown(() => validateModelDir(dir)).message).toMatch(/rank 60 is not below vocab_size 50/);
    writeFileSync(join(dir, "tokenizer.model"), ranks + "\nQUJD 3\n");
    expect(thrown(() => validateModelDir(dir)).message).toMatch(/line 41: rank 3 appears twice/);
  });
});

describe("dtypes on disk", () => {
  it("bf16 and f16 directories load and give logits close to float32", () => {
    const gen = generateModel(small);
    const ref = referenceForward(loadedModelFromGenerated(gen), [1, 2, 3, 4]).logits;
    for (const dtype of ["float16", "bfloat16"] as const) {
      const dir = tmp();
      writeModelDir(dir, gen, { dtype });
      const r = validateModelDir(dir);
      expect(r.config.torchDtype).toBe(dtype);
      expect(r.dtypes).toEqual([dtype === "float16" ? "F16" : "BF16"]);
      const got = referenceForward(dir, [1, 2, 3, 4]).logits;
      const scale = Math.max(...ref.map(Math.abs));
      const err = Math.max(...got.map((v, i) => Math.abs(v - ref[i])));
      expect(err / scale).toBeLessThan(dtype === "float16" ? 0.01 : 0.05);
      expect(err).toBeGreaterThan(0); // it really is a different (rounded) model
    }
  });
});
