// The identity of a model directory, computed in one place (ARCHITECTURE.md, "Model identity"): what a worker
// announces at registration and what the api compares it with. Cheap enough to compute at every start, also for
// a checkpoint of hundreds of GB: it reads config.json, the safetensors headers, a sample of each tensor's bytes
// and the tokenizer files, never the whole weights (the executor's own fingerprint, which hashes every weight as
// it loads them, covers the rest; workers announce both).
import { createHash, type Hash } from "node:crypto";
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { MissingFileError } from "./errors.js";
import { locateTokenizer } from "./tokenizer-files.js";
import { ModelWeights } from "./weights.js";

/** Bytes of each tensor's data that enter the model identity (its first bytes). */
export const IDENTITY_SAMPLE_BYTES = 256;

export interface ModelDirIdentity {
  /**
   * sha-256 (hex, 32 chars) over config.json as stored, every weights file's name, size and safetensors header
   * (tensor names, dtypes, shapes, offsets, metadata) and the first {@link IDENTITY_SAMPLE_BYTES} bytes of every
   * tensor: a different config, shape, dtype, quantization or random seed changes it.
   */
  model: string;
  /** {@link tokenizerIdentity} of the directory. */
  tokenizer: string;
}

const hex32 = (h: Hash) => h.digest("hex").slice(0, 32);

function readRange(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/**
 * The weights-and-config identity of a model directory (see {@link ModelDirIdentity.model}). Throws
 * MissingFileError when config.json or the weights are missing (e.g. a tokenizer-only directory).
 */
export function weightsIdentity(dir: string): string {
  const configPath = join(dir, "config.json");
  if (!existsSync(configPath)) throw new MissingFileError(configPath, `model directory ${dir} has no config.json`);
  const h = createHash("sha256").update("trtd-model-identity/v1\0");
  const config = readFileSync(configPath);
  h.update(`config.json ${config.length}\0`).update(config);
  const weights = ModelWeights.open(dir);
  const byFile = new Map<string, string[]>();
  try {
    for (const t of weights.tensorNames) {
      const file = weights.info(t)!.file;
      byFile.set(file, [...(byFile.get(file) ?? []), t]);
    }
  } finally {
    weights.close();
  }
  for (const file of [...byFile.keys()].sort()) {
    const fd = openSync(join(dir, file), "r");
    try {
      const size = fstatSync(fd).size;
      const headerLength = Number(readRange(fd, 8, 0).readBigUInt64LE(0));
      const dataStart = 8 + headerLength;
      h.update(`\0file ${file} ${size}\0`).update(readRange(fd, dataStart, 0));
      // The header is JSON with offsets relative to the data section; take each tensor's first bytes.
      const header = JSON.parse(readRange(fd, headerLength, 8).toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
      for (const name of byFile.get(file)!.sort()) {
        const [begin, end] = header[name]?.data_offsets ?? [0, 0];
        h.update(`\0${name}\0`).update(readRange(fd, Math.min(IDENTITY_SAMPLE_BYTES, end - begin), dataStart + begin));
      }
    } finally {
      closeSync(fd);
    }
  }
  return hex32(h);
}

/**
 * The tokenizer identity of a model directory: sha-256 (hex, 32 chars) over the tokenizer that
 * `locateTokenizer` picks (the file's bytes, or the tiktoken encoding's name) and, when present,
 * tokenizer_config.json and chat_template.jinja (special tokens, chat template). Two directories with equal
 * tokenizer identities turn the same text into the same token ids.
 */
export function tokenizerIdentity(dir: string): string {
  const h = createHash("sha256").update("trtd-tokenizer-identity/v1\0");
  const src = locateTokenizer(dir);
  if (src.kind === "tiktoken-encoding") h.update(`encoding ${src.encoding}\0`);
  else h.update(`${src.kind}\0`).update(readFileSync(src.path));
  for (const f of ["tokenizer_config.json", "chat_template.jinja"]) {
    const p = join(dir, f);
    if (existsSync(p)) h.update(`\0${f}\0`).update(readFileSync(p));
  }
  return hex32(h);
}

/** Both identities of a model directory (weights + config, tokenizer). */
export function modelDirIdentity(dir: string): ModelDirIdentity {
  return { model: weightsIdentity(dir), tokenizer: tokenizerIdentity(dir) };
}
