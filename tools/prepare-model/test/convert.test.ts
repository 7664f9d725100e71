import { describe, expect, it } from "vitest";
import { readFileSync, rmSync, statSync, writeFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { loadModel, referenceForward, ShapeMismatchError, UnsupportedArchitectureError, InvalidTokenizerError, TokenizerNotFoundError, MissingFileError } from "@trtd/model";
import { convertCheckpoint, ConvertError } from "../src/convert.js";
import { rejection, runCli, tempDirs, writeSyntheticCheckpoint } from "./helpers.js";

const tmp = tempDirs();

function checkpoint(): string {
  const dir = tmp();
  writeSyntheticCheckpoint(dir);
  return dir;
}
function editJson(path: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(readFileSync(path, "utf8"));
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

describe("convert", () => {
  it("validates a sharded bf16 checkpoint with a tiktoken tokenizer.model and hard-links its files", async () => {
    const src = checkpoint();
    const out = join(tmp(), "model");
    const progress: number[] = [];
    const report = await convertCheckpoint(src, out, { onProgress: (d, t) => progress.push(d / t) });
    expect(report.indexFile).toBe("model.safetensors.index.json");
    expect(report.weightFiles.length).toBeGreaterThan(1);
    expect(report.dtypes).toEqual(["BF16"]);
    expect(report.tokenizer).toMatchObject({ kind: "tiktoken-file", ranks: 261, maxRank: 260 });
    expect(report.config.tieWordEmbeddings).toBe(false);
    expect(progress.at(-1)).toBe(1);
    const files = readdirSync(out).sort();
    expect(files).toEqual(
      ["config.json", "generation_config.json", "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json", ...report.weightFiles].sort(),
    );
    expect(files).not.toContain("README.md");
    for (const f of files) expect(statSync(join(out, f)).ino).toBe(statSync(join(src, f)).ino);
    const tokens = [1, 200, 17, 296];
    expect(Array.from(referenceForward(out, tokens).logits)).toEqual(Array.from(referenceForward(loadModel(src), tokens).logits));
  });

  it("--copy copies instead of linking", async () => {
    const src = checkpoint();
    const out = join(tmp(), "copy");
    await convertCheckpoint(src, out, { copy: true });
    expect(statSync(join(out, "config.json")).ino).not.toBe(statSync(join(src, "config.json")).ino);
    expect(readFileSync(join(out, "tokenizer.model"), "utf8")).toBe(readFileSync(join(src, "tokenizer.model"), "utf8"));
  });

  it("fails with typed errors and leaves no output for broken checkpoints", async () => {
    const cases: [string, (dir: string) => void, new (...a: never[]) => Error, RegExp][] = [
      ["architecture", (d) => editJson(join(d, "config.json"), (c) => (c.architectures = ["GemmaForCausalLM"])), UnsupportedArchitectureError, /architecture GemmaForCausalLM is not supported/],
      ["shape", (d) => editJson(join(d, "config.json"), (c) => (c.num_key_value_heads = 4)), ShapeMismatchError, /tensor model.layers.0.self_attn.k_proj.weight has shape \[8, 16\], expected \[16, 16\]/],
      ["shard", (d) => rmSync(join(d, "model-00002-of-" + readdirSync(d).find((f) => f.startsWith("model-00001"))!.slice(15))), MissingFileError, /lists shard model-00002-of-\d+\.safetensors, which is not in/],
      ["tokenizer", (d) => rmSync(join(d, "tokenizer.model")), TokenizerNotFoundError, /has no tokenizer/],
      ["ranks", (d) => writeFileSync(join(d, "tokenizer.model"), "not base64!! 0\n"), InvalidTokenizerError, /line 1 is not "<base64> <rank>"/],
    ];
    for (const [label, breakIt, type, msg] of cases) {
      const src = checkpoint();
      breakIt(src);
      const out = join(tmp(), label);
      const e = await rejection(convertCheckpoint(src, out));
      expect(e, label).toBeInstanceOf(type);
      expect(e.message, label).toMatch(msg);
      expect(existsSync(out), label).toBe(false);
    }
  });

  it("takes Llama 3's original/tokenizer.model when the top level has only tokenizer.json", async () => {
    const src = checkpoint();
    mkdirSync(join(src, "original"));
    writeFileSync(join(src, "original", "tokenizer.model"), readFileSync(join(src, "tokenizer.model")));
    rmSync(join(src, "tokenizer.model"));
    writeFileSync(join(src, "tokenizer.json"), "{}");
    const out = join(tmp(), "llama3-layout");
    const report = await convertCheckpoint(src, out);
    expect(report.tokenizer).toMatchObject({ kind: "tiktoken-file", ranks: 261, modelPath: join(out, "tokenizer.model") });
    expect(readFileSync(join(out, "tokenizer.model"), "utf8")).toBe(readFileSync(join(src, "original", "tokenizer.model"), "utf8"));
    expect(readFileSync(join(out, "tokenizer.json"), "utf8")).toBe("{}"); // carried: its post_processor tells whether BOS is added
    // Without it, tokenizer.json is the tokenizer: one that is not a BPE vocabulary is refused by name.
    const bare = checkpoint();
    rmSync(join(bare, "tokenizer.model"));
    writeFileSync(join(bare, "tokenizer.json"), "{}");
    const e = await rejection(convertCheckpoint(bare, join(tmp(), "x")));
    expect(e).toBeInstanceOf(InvalidTokenizerError);
    expect(e.message).toMatch(/tokenizer.json: model type undefined is not supported \(byte-level BPE is\)/);
  });

  it("refuses a missing source and converting a directory onto itself", async () => {
    const missing = await rejection(convertCheckpoint(join(tmp(), "nope"), join(tmp(), "o")));
    expect(missing).toBeInstanceOf(MissingFileError);
    expect(missing.message).toMatch(/checkpoint directory .*nope does not exist/);
    const src = checkpoint();
    const same = await rejection(convertCheckpoint(src, src));
    expect(same).toHaveProperty("code", "SAME_DIRECTORY");
  });

  it("refuses a non-empty output directory", async () => {
    const src = checkpoint();
    const out = tmp();
    writeFileSync(join(out, "keep.txt"), "x");
    const e = await rejection(convertCheckpoint(src, out));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e).toHaveProperty("code", "OUTPUT_EXISTS");
    expect(readdirSync(out)).toEqual(["keep.txt"]);
  });

  it("a tokenizer.model that passes the format check but that tiktoken cannot use is reported", async () => {
    const src = checkpoint();
    // Well-formed lines, but no single-byte tokens: tiktoken cannot encode the sample text.
    writeFileSync(join(src, "tokenizer.model"), `${Buffer.from("ab").toString("base64")} 0\n${Buffer.from("ba").toString("base64")} 1\n`);
    const e = await rejection(convertCheckpoint(src, join(tmp(), "o")));
    expect(e).toBeInstanceOf(InvalidTokenizerError);
    expect(e.message).toMatch(/does not load: .*single byte/);
  });
});

describe("prepare-model convert / validate (CLI)", () => {
  it("converts, then validates the result", () => {
    const src = checkpoint();
    const out = join(tmp(), "cli-out");
    const r = runCli(["convert", src, "--out", out]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/validating /);
    expect(r.stderr).toMatch(/linked \d+ files/);
    expect(r.stderr).toMatch(/convert: .*cli-out: LlamaForCausalLM, .*BF16, \d weight file\(s\), tokenizer: tokenizer.model \(261 ranks\)/);
    const v = runCli(["validate", out]);
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^ok /);
  });

  it("exits 1 with a clear message for a broken checkpoint", () => {
    const src = checkpoint();
    editJson(join(src, "config.json"), (c) => (c.intermediate_size = 41));
    const r = runCli(["convert", src, "--out", join(tmp(), "never")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/prepare-model: ShapeMismatchError \[SHAPE_MISMATCH\]: tensor model.layers.0.mlp.gate_proj.weight has shape \[40, 16\], expected \[41, 16\]/);
    const usage = runCli(["convert", src]);
    expect(usage.status).toBe(1);
    expect(usage.stderr).toMatch(/convert needs --out DIR/);
  });
});
