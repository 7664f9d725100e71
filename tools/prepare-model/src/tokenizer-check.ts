// Proves a model directory's tokenizer actually loads in tiktoken (the WASM package the tokenizer package uses).
// tiktoken reports malformed input as an opaque "RuntimeError: unreachable", so @trtd/model's checks run first.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { get_encoding, Tiktoken, type TiktokenEncoding } from "tiktoken";
import { InvalidTokenizerError, type ModelDirReport } from "@trtd/model";

/** The pre-tokenization pattern of Llama 3 / cl100k_base (the same expression). */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const SAMPLE = "Hello, world! 123 ünïcödé\n";

/** Loads the tokenizer, round-trips a sample string and frees it. Throws InvalidTokenizerError on failure. */
export async function checkTokenizerLoads(dir: string, report: ModelDirReport): Promise<void> {
  const specials: Record<string, number> = {};
  for (const s of report.tokenizer.specialTokens) specials[s.content] = s.id;
  let enc: Tiktoken | undefined;
  try {
    if (report.tokenizer.kind === "tiktoken-file") {
      enc = new Tiktoken(readFileSync(report.tokenizer.modelPath ?? join(dir, "tokenizer.model"), "utf8"), specials, LLAMA3_PATTERN);
    } else {
      const base = get_encoding(report.tokenizer.encoding as TiktokenEncoding);
      base.free();
      enc = get_encoding(report.tokenizer.encoding as TiktokenEncoding, specials);
    }
    const sample = report.tokenizer.kind === "tiktoken-file" ? "ab ba" : SAMPLE;
    const ids = enc.encode_ordinary(sample);
    const back = new TextDecoder().decode(enc.decode(ids));
    if (back !== sample) throw new Error(`round trip of ${JSON.stringify(sample)} gave ${JSON.stringify(back)}`);
    for (const id of ids) {
      if (id >= report.config.vocabSize) throw new Error(`token id ${id} is not below vocab_size ${report.config.vocabSize}`);
    }
  } catch (e) {
    if (e instanceof InvalidTokenizerError) throw e;
    throw new InvalidTokenizerError(`tokenizer of ${dir} does not load in tiktoken: ${(e as Error).message}`, { cause: e });
  } finally {
    // After a failed call tiktoken's WASM object stays "borrowed" and free() itself throws ("attempted to take
    // ownership of Rust value while it was borrowed"); the original error is the one worth reporting.
    try {
      enc?.free();
    } catch {
      /* the encoder is unusable either way */
    }
  }
}
