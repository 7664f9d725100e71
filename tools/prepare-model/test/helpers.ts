// Test helpers: temp dirs, a synthetic Hugging Face style checkpoint, and running the CLI as a child process.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll } from "vitest";
import { CHATML_TEMPLATE, generateModel, writeModelDir } from "@trtd/model";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "../../..");
const cliPath = resolve(here, "../src/cli.ts");

export function tempDirs(prefix = "trtd-prep-"): () => string {
  const made: string[] = [];
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    made.push(d);
    return d;
  };
}

/** Byte-level ranks plus a few merges, in tiktoken's `<base64> <rank>` format (as Llama 3's tokenizer.model). */
export function tiktokenRanksText(): string {
  const lines: string[] = [];
  for (let b = 0; b < 256; b++) lines.push(`${Buffer.from([b]).toString("base64")} ${b}`);
  ["ab", "ba", " b", "aba", "hello"].forEach((m, i) => lines.push(`${Buffer.from(m).toString("base64")} ${256 + i}`));
  return lines.join("\n") + "\n";
}

export const SYNTHETIC_DIMS = { vocabSize: 300, hiddenSize: 16, intermediateSize: 40, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4, tieWordEmbeddings: false };

/**
 * Writes an HF-style checkpoint: untied lm_head, bf16 shards with an index, tokenizer.model (tiktoken ranks),
 * tokenizer_config.json with added tokens and a chat template, plus files HF repos carry that convert ignores.
 */
export function writeSyntheticCheckpoint(dir: string): void {
  const gen = generateModel({ dims: SYNTHETIC_DIMS, seed: 11 });
  gen.config = { ...gen.config, eos_token_id: 297, bos_token_id: 296, transformers_version: "4.44.0", initializer_range: 0.02, pretraining_tp: 1 };
  delete gen.config.trtd_generator;
  writeModelDir(dir, gen, { dtype: "bfloat16", maxShardBytes: 4096 });
  writeFileSync(join(dir, "tokenizer.model"), tiktokenRanksText());
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      add_bos_token: true,
      bos_token: "<|begin_of_text|>",
      eos_token: "<|end_of_text|>",
      chat_template: CHATML_TEMPLATE,
      added_tokens_decoder: {
        "296": { content: "<|begin_of_text|>", special: true },
        "297": { content: "<|end_of_text|>", special: true },
      },
    }),
  );
  writeFileSync(join(dir, "README.md"), "# synthetic\n");
  writeFileSync(join(dir, "special_tokens_map.json"), JSON.stringify({ bos_token: "<|begin_of_text|>" }));
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `prepare-model <args>` in a child process (bounded by a timeout). */
export function runCli(args: string[], timeoutMs = 60_000): CliResult {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--conditions=source", cliPath, ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout: timeoutMs,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error `p` rejects with; throws when it fulfils. */
export async function rejection<E extends Error = Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (e) {
    return e as E;
  }
  throw new Error("expected a rejection");
}
