// Gives a random-weight Llama-3-shaped model directory (tools/gpu/make_models.py writes no tokenizer) a tokenizer
// that owns every id of its vocabulary, so the api can serve it and equal text means equal tokens:
//   node --import tsx --conditions=source tools/gpu/deploy-tokenizer.ts MODEL_DIR [--force]
// tokenizer.model (Llama-3 tiktoken ranks file): ranks 0..100255 are cl100k_base's (so tools/bench's one-word-one-
// token prompts keep their lengths), ranks 100256..R-1 are filler tokens "<|xNNNNNN|>" (distinct, valid UTF-8, never
// produced by the pre-tokenizer, so they change no encoding), R = vocab_size - 256; the 256 Llama-3 specials follow
// at R.. (<|begin_of_text|> = 128000, <|end_of_text|> = 128001, <|eot_id|> = 128009 for vocab 128256), as
// @trtd/tokenizer adds them for a ranks file without added tokens. tokenizer_config.json: Llama-3 chat template,
// bos <|begin_of_text|> (added by the template), eos <|eot_id|> (config.json's eos ids count too).
// Random weights sample any id: with this file every id decodes to non-empty text, none is "unknown".
// A directory that has a tokenizer already (tokenizer.model or tokenizer_config.json) is left as it is, only checked.
// Checks afterwards (exit 1 on failure): @trtd/model's checkTokenizerFiles, @trtd/tokenizer loads it with
// vocabSize == vocab_size, every id decodes alone, and a chat prompt of N common words encodes to about N tokens.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { get_encoding } from "tiktoken";
import { checkTokenizerFiles, readModelConfig } from "@trtd/model";
import { LLAMA3_CHAT_TEMPLATE, Tokenizer } from "@trtd/tokenizer";

const SPECIALS = 256;
const CL100K_RANKS = 100256;

function write(dir: string, vocab: number): void {
  const rankEnd = vocab - SPECIALS;
  if (rankEnd < CL100K_RANKS) throw new Error(`vocab_size ${vocab} is too small for cl100k_base ranks + ${SPECIALS} specials`);
  const enc = get_encoding("cl100k_base");
  const lines: string[] = [];
  const seen = new Set<string>();
  try {
    for (let id = 0; id < rankEnd; id++) {
      let bytes: Uint8Array | undefined;
      if (id < CL100K_RANKS) {
        try {
          bytes = enc.decode_single_token_bytes(id);
        } catch {
          bytes = undefined; // a hole in cl100k's ranks: filled below
        }
      }
      const b64 = Buffer.from(bytes ?? Buffer.from(`<|x${String(id).padStart(6, "0")}|>`, "utf8")).toString("base64");
      if (seen.has(b64)) throw new Error(`duplicate token bytes at id ${id}`);
      seen.add(b64);
      lines.push(`${b64} ${id}`);
    }
  } finally {
    enc.free();
  }
  writeFileSync(join(dir, "tokenizer.model"), lines.join("\n") + "\n");
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: "<|begin_of_text|>",
    eos_token: "<|eot_id|>",
    add_bos_token: false,
    chat_template: LLAMA3_CHAT_TEMPLATE,
    trtd_note: "tools/gpu/deploy-tokenizer.ts: cl100k_base ranks + filler tokens + Llama-3 specials, for random-weight models",
  };
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2) + "\n");
}

function check(dir: string, ours: boolean): string[] {
  const cfg = readModelConfig(dir);
  const info = checkTokenizerFiles(dir, cfg);
  const tok = Tokenizer.fromModelDir(dir);
  const problems: string[] = [];
  try {
    if (tok.vocabSize !== cfg.vocabSize) problems.push(`tokenizer vocabSize ${tok.vocabSize} != config vocab_size ${cfg.vocabSize}`);
    let empty = 0;
    for (let id = 0; id < cfg.vocabSize; id++) if (tok.decodeBytes([id]).length === 0) empty++;
    // A tokenizer written here must own every id; a model's own may leave padded rows unowned (decoded as nothing).
    if (empty > 0 && ours) problems.push(`${empty} ids decode to nothing`);
    const words = "the of and to in is you that it he was for on are as with his they at be".split(" ");
    const n = 200;
    const text = Array.from({ length: n }, (_, i) => words[i % words.length]).join(" ");
    const ids = tok.encodeChat([{ role: "user", content: text }]);
    if (ids.length < n || ids.length > n + 16) problems.push(`a ${n}-word chat prompt encoded to ${ids.length} tokens`);
    console.log(
      `tokenizer ${dir}${ours ? " (written by deploy-tokenizer.ts)" : " (the model's own)"}: ${info.kind}, vocab ${tok.vocabSize}, ${empty} ids own no text, eos ${JSON.stringify(tok.eosTokenIds)}, bos ${tok.bosTokenId}; ${n}-word chat prompt -> ${ids.length} tokens; ${problems.length ? "PROBLEMS: " + problems.join("; ") : "ok"}`,
    );
  } finally {
    tok.free();
  }
  return problems;
}

const [dir, ...rest] = process.argv.slice(2);
if (!dir) {
  console.error("usage: deploy-tokenizer.ts MODEL_DIR [--force]");
  process.exit(2);
}
const vocab = (JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { vocab_size: number }).vocab_size;
// A directory with a tokenizer of its own (tokenizer.model or tokenizer_config.json) is only checked.
const has = existsSync(join(dir, "tokenizer.model")) || existsSync(join(dir, "tokenizer_config.json"));
if (rest.includes("--force") || !has) write(dir, vocab);
const ours = existsSync(join(dir, "tokenizer_config.json")) && readFileSync(join(dir, "tokenizer_config.json"), "utf8").includes("deploy-tokenizer.ts");
process.exit(check(dir, ours).length ? 1 : 0);
