import { describe, expect, it } from "vitest";
import { cpSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { generateModel, IDENTITY_SAMPLE_BYTES, MissingFileError, modelDirIdentity, readSafetensorsHeader, tokenizerIdentity, weightsIdentity, writeModelDir, type GenerateModelOptions } from "@trtd/model";
import { tempDirs } from "./helpers.js";

const tmp = tempDirs("trtd-identity-");
const small: GenerateModelOptions = { dims: { vocabSize: 50, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, numKvHeads: 1, headDim: 8 }, seed: 5 };

function modelDir(opts: GenerateModelOptions = small): string {
  const dir = tmp();
  writeModelDir(dir, generateModel(opts));
  return dir;
}
function copyOf(dir: string): string {
  const d = tmp();
  cpSync(dir, d, { recursive: true });
  return d;
}
/** Flips one byte of a tensor's data at `at` bytes into it, leaving the header (and its metadata) as it was. */
function flipTensorByte(dir: string, tensor: string, at: number): void {
  const path = join(dir, "model.safetensors");
  const h = readSafetensorsHeader(path);
  const pos = h.dataStart + h.tensors.get(tensor)!.dataOffsets[0] + at;
  const fd = openSync(path, "r+");
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, pos);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, pos);
  } finally {
    closeSync(fd);
  }
}

describe("modelDirIdentity", () => {
  const base = modelDir();
  const id = modelDirIdentity(base);

  it("is 32 hex digits each, and does not depend on where the directory is", () => {
    expect(id.model).toMatch(/^[0-9a-f]{32}$/);
    expect(id.tokenizer).toMatch(/^[0-9a-f]{32}$/);
    expect(id.model).not.toBe(id.tokenizer);
    expect(modelDirIdentity(copyOf(base))).toEqual(id);
  });

  it("changes with one config value, and the tokenizer identity does not", () => {
    const d = copyOf(base);
    const c = JSON.parse(readFileSync(join(d, "config.json"), "utf8"));
    c.rms_norm_eps = c.rms_norm_eps * 2;
    writeFileSync(join(d, "config.json"), JSON.stringify(c, null, 2) + "\n");
    const other = modelDirIdentity(d);
    expect(other.model).not.toBe(id.model);
    expect(other.tokenizer).toBe(id.tokenizer);
  });

  it("changes with the random seed of the weights", () => {
    expect(weightsIdentity(modelDir({ ...small, seed: 6 }))).not.toBe(id.model);
  });

  it("changes with one byte in a tensor's sampled bytes (same header), not with one past them", () => {
    const inside = copyOf(base);
    flipTensorByte(inside, "model.layers.1.mlp.down_proj.weight", IDENTITY_SAMPLE_BYTES - 1);
    expect(weightsIdentity(inside)).not.toBe(id.model);
    // Past the sample the identity is blind by design (the executor's fingerprint covers every byte).
    const past = copyOf(base);
    flipTensorByte(past, "model.layers.1.mlp.down_proj.weight", IDENTITY_SAMPLE_BYTES);
    expect(weightsIdentity(past)).toBe(id.model);
  });

  it("the tokenizer identity follows the tokenizer files and tokenizer_config.json", () => {
    const d = copyOf(base);
    const tc = JSON.parse(readFileSync(join(d, "tokenizer_config.json"), "utf8"));
    tc.chat_template = `${tc.chat_template ?? ""} `;
    writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify(tc));
    expect(tokenizerIdentity(d)).not.toBe(id.tokenizer);
    expect(weightsIdentity(d)).toBe(id.model);
    const t = copyOf(base);
    const ranks = readFileSync(join(t, "tokenizer.model"), "latin1").split("\n");
    writeFileSync(join(t, "tokenizer.model"), ranks.slice(0, -2).join("\n") + "\n");
    expect(tokenizerIdentity(t)).not.toBe(id.tokenizer);
  });

  it("a tokenizer-only directory has a tokenizer identity and no model identity (MissingFileError)", () => {
    const d = copyOf(base);
    rmSync(join(d, "model.safetensors"));
    expect(tokenizerIdentity(d)).toBe(id.tokenizer);
    expect(() => weightsIdentity(d)).toThrow(MissingFileError);
    rmSync(join(d, "config.json"));
    expect(() => weightsIdentity(d)).toThrow(MissingFileError);
  });
});
