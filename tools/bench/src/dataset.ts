import { readFileSync } from "node:fs";
import { PromptsFileError } from "./errors.js";
import type { LengthDistribution } from "./distributions.js";
import { createRandom, type Random } from "./random.js";
import { PROMPT_WORDS } from "./words.js";

/** One request of a workload: the prompt text and how many tokens to ask for. */
export interface BenchRequest {
  prompt: string;
  maxTokens: number;
  /** The input length the dataset aimed for (random datasets); the server's usage gives the real count. */
  targetInputTokens?: number;
}

export interface RandomDatasetOptions {
  count: number;
  input: LengthDistribution;
  output: LengthDistribution;
  /** [seed=0] */
  seed?: number;
}

/** `n` words drawn from {@link PROMPT_WORDS}, space separated: about `n` tokens. */
export function randomText(rng: Random, n: number): string {
  const words: string[] = new Array(n);
  for (let i = 0; i < n; i++) words[i] = PROMPT_WORDS[Math.floor(rng.next() * PROMPT_WORDS.length)];
  return words.join(" ");
}

/** Random prompts: input and output lengths drawn from the given distributions, text from common words. */
export function randomDataset({ count, input, output, seed = 0 }: RandomDatasetOptions): BenchRequest[] {
  const rng = createRandom(seed);
  const out: BenchRequest[] = [];
  for (let i = 0; i < count; i++) {
    const n = input.sample(rng);
    out.push({ prompt: randomText(rng, n), maxTokens: output.sample(rng), targetInputTokens: n });
  }
  return out;
}

/**
 * Reads a prompts file: JSON Lines with `{"prompt": "...", "max_tokens"?: n}` per line, or plain text with one
 * prompt per non-empty line. Requests without max_tokens take a length from `output`. The prompts are cycled to
 * fill `count` requests.
 */
export function promptsFileDataset(path: string, count: number, output: LengthDistribution, seed = 0): BenchRequest[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    throw new PromptsFileError(`cannot read prompts file ${path}`, { cause });
  }
  const rng = createRandom(seed);
  const base: { prompt: string; maxTokens?: number }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const s = line.trim();
    if (s === "") return;
    if (!s.startsWith("{")) {
      base.push({ prompt: s });
      return;
    }
    let row: unknown;
    try {
      row = JSON.parse(s);
    } catch (cause) {
      throw new PromptsFileError(`${path}:${i + 1}: not valid JSON`, { cause });
    }
    const r = row as { prompt?: unknown; max_tokens?: unknown };
    if (typeof r.prompt !== "string" || r.prompt === "") throw new PromptsFileError(`${path}:${i + 1}: "prompt" must be a non-empty string`);
    if (r.max_tokens !== undefined && !(Number.isInteger(r.max_tokens) && (r.max_tokens as number) > 0)) {
      throw new PromptsFileError(`${path}:${i + 1}: "max_tokens" must be a positive integer`);
    }
    base.push({ prompt: r.prompt, maxTokens: r.max_tokens as number | undefined });
  });
  if (base.length === 0) throw new PromptsFileError(`${path}: no prompts`);
  const out: BenchRequest[] = [];
  for (let i = 0; i < count; i++) {
    const b = base[i % base.length];
    out.push({ prompt: b.prompt, maxTokens: b.maxTokens ?? output.sample(rng) });
  }
  return out;
}
