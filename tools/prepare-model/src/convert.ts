// convert: validate a Hugging Face Llama checkpoint directory completely, then hard-link (or copy) its files
// into the executor's model directory. The HF layout is the executor's format, so nothing is rewritten.
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { MissingFileError, validateModelDir, type ModelDirReport } from "@trtd/model";
import { checkTokenizerLoads } from "./tokenizer-check.js";

export const ConvertErrorCode = {
  OutputExists: "OUTPUT_EXISTS",
  SameDirectory: "SAME_DIRECTORY",
} as const;
export type ConvertErrorCode = (typeof ConvertErrorCode)[keyof typeof ConvertErrorCode];

export class ConvertError extends Error {
  readonly code: ConvertErrorCode;
  constructor(code: ConvertErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConvertError";
    this.code = code;
  }
}

export interface ConvertOptions {
  /** Copy instead of hard-linking (links fall back to copies across file systems anyway). */
  copy?: boolean;
  onProgress?: (doneBytes: number, totalBytes: number, file: string) => void;
  log?: (message: string) => void;
}

const ORIGINAL_TOKENIZER = "original/tokenizer.model";

/** Optional files carried over when present. */
// tokenizer.json is not a tokenizer we load, but @trtd/tokenizer reads its post_processor to learn whether BOS is added.
const OPTIONAL_FILES = ["generation_config.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.json", "special_tokens_map.json"];

function linkOrCopy(src: string, dst: string, copy: boolean): "linked" | "copied" {
  if (!copy) {
    try {
      linkSync(src, dst);
      return "linked";
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EMLINK") throw e;
    }
  }
  copyFileSync(src, dst);
  return "copied";
}

/**
 * Validates `src` (config, every tensor's shape, tokenizer, and that the tokenizer loads), then links or copies
 * its files into `out`, config.json last. `out` must not exist or be empty. Returns the validation report of `out`.
 */
export async function convertCheckpoint(src: string, out: string, options: ConvertOptions = {}): Promise<ModelDirReport> {
  const log = options.log ?? (() => {});
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new MissingFileError(src, `checkpoint directory ${src} does not exist`);
  if (existsSync(out) && statSync(out).ino === statSync(src).ino && statSync(out).dev === statSync(src).dev) {
    throw new ConvertError(ConvertErrorCode.SameDirectory, `--out ${out} is the checkpoint directory itself`);
  }
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new ConvertError(ConvertErrorCode.OutputExists, `output directory ${out} exists and is not empty`);
  }
  log(`validating ${src}`);
  // Hugging Face Llama 3 repos keep the tiktoken ranks file as original/tokenizer.model (beside tokenizer.json).
  const original = join(src, ORIGINAL_TOKENIZER);
  const useOriginal = !existsSync(join(src, "tokenizer.model")) && existsSync(original);
  if (useOriginal) log(`using ${ORIGINAL_TOKENIZER} as tokenizer.model`);
  const report = validateModelDir(src, useOriginal ? { tokenizerModelPath: original } : {});
  await checkTokenizerLoads(src, report);

  // [source path relative to src, destination name]
  const files: [string, string][] = [
    ...report.weightFiles,
    ...(report.indexFile ? [report.indexFile] : []),
    ...OPTIONAL_FILES.filter((f) => existsSync(join(src, f))),
  ].map((f) => [f, f]);
  if (useOriginal) files.push([ORIGINAL_TOKENIZER, "tokenizer.model"]);
  files.push(["config.json", "config.json"]); // last: its presence marks a complete directory
  const total = files.reduce((s, [f]) => s + statSync(join(src, f)).size, 0);
  const createdOut = !existsSync(out);
  mkdirSync(out, { recursive: true });
  let done = 0;
  const how = new Set<string>();
  try {
    for (const [f, to] of files) {
      how.add(linkOrCopy(join(src, f), join(out, to), options.copy ?? false));
      done += statSync(join(src, f)).size;
      options.onProgress?.(done, total, to);
    }
  } catch (e) {
    // Leave nothing half-made behind.
    for (const [, to] of files) rmSync(join(out, to), { force: true });
    if (createdOut) rmSync(out, { recursive: true, force: true });
    throw e;
  }
  log(`${[...how].join(" and ")} ${files.length} files`);
  return validateModelDir(out);
}
