import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "@trtd/test-support";

const require = createRequire(import.meta.url);

/** cl100k_base's ranks re-written as Llama-3-style `<base64> <rank>` lines (100 256 ranks). */
export function cl100kRanksText(): string {
  const json = require("tiktoken/encoders/cl100k_base.json") as { bpe_ranks: string };
  const parts = json.bpe_ranks.split(" ");
  const offset = Number(parts[1]);
  const lines: string[] = [];
  for (let i = 2; i < parts.length; i++) lines.push(`${parts[i]} ${offset + i - 2}`);
  return lines.join("\n") + "\n";
}

export const CL100K_RANKS = 100_256;

/** Llama 3 special tokens as in Meta's layout, placed right after the ranks. */
export function llama3Specials(first = CL100K_RANKS): Array<[number, string]> {
  const named = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
  ];
  const out: Array<[number, string]> = named.map((t, i) => [first + i, t]);
  for (let i = named.length; i < 256; i++) out.push([first + i, `<|reserved_special_token_${i - 8}|>`]);
  return out;
}

export class TempDirs {
  readonly #dirs: string[] = [];
  make(files: Record<string, string | object>): string {
    const dir = mkdtempSync(join(tmpdir(), "trtd-tok-"));
    this.#dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(join(dir, name), typeof content === "string" ? content : JSON.stringify(content, null, 2));
    }
    return dir;
  }
  cleanup(): void {
    for (const d of this.#dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/** A model directory like the ones tools/prepare-model writes: cl100k_base + ChatML specials. */
export function chatmlModelFiles(extra: Record<string, unknown> = {}): Record<string, object> {
  return {
    "tokenizer_config.json": {
      tiktoken_encoding: "cl100k_base",
      added_tokens_decoder: {
        "100257": { content: "<|endoftext|>", special: true },
        "100264": { content: "<|im_start|>", special: true },
        "100265": { content: "<|im_end|>", special: true },
      },
      eos_token: "<|im_end|>",
      bos_token: null,
      add_bos_token: false,
      ...extra,
    },
    "config.json": { vocab_size: 100352, eos_token_id: [100265, 100257] },
  };
}

/** Small seeded PRNG (mulberry32) so random tests are reproducible. */
export const prng = mulberry32;

/** A random string of valid code points drawn from ASCII, Latin, CJK, emoji, combining marks, RTL and whitespace. */
export function randomText(rand: () => number, length: number): string {
  const ranges: Array<[number, number]> = [
    [0x20, 0x7e], [0x0a, 0x0a], [0x09, 0x09], [0xa0, 0x17f], [0x300, 0x36f], [0x590, 0x5ff], [0x600, 0x6ff],
    [0x900, 0x97f], [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x200d, 0x200f],
    [0xfe00, 0xfe0f], [0x10000, 0x1007f], [0xe000, 0xe0ff],
  ];
  let s = "";
  for (let i = 0; i < length; i++) {
    const [a, b] = ranges[Math.floor(rand() * ranges.length)]!;
    s += String.fromCodePoint(a + Math.floor(rand() * (b - a + 1)));
  }
  return s;
}
