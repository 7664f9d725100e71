// Proves a model directory's tokenizer loads with @trtd/tokenizer (the loader every app uses, from the files that
// @trtd/model's locateTokenizer names) and round-trips a sample. @trtd/model's checks run first.
import { InvalidTokenizerError, type ModelDirReport } from "@trtd/model";
import { Tokenizer } from "@trtd/tokenizer";

const SAMPLE = "Hello, world! 123 ünïcödé\n";

/** Loads the tokenizer, round-trips a sample string and frees it. Throws InvalidTokenizerError on failure. */
export async function checkTokenizerLoads(dir: string, report: ModelDirReport): Promise<void> {
  let tok: Tokenizer | undefined;
  try {
    tok = Tokenizer.fromModelDir(dir);
    const ids = tok.encode(SAMPLE, { addBos: false });
    const back = tok.decode(ids);
    if (back !== SAMPLE) throw new Error(`round trip of ${JSON.stringify(SAMPLE)} gave ${JSON.stringify(back)}`);
    for (const id of ids) {
      if (id >= report.config.vocabSize) throw new Error(`token id ${id} is not below vocab_size ${report.config.vocabSize}`);
    }
  } catch (e) {
    if (e instanceof InvalidTokenizerError) throw e;
    throw new InvalidTokenizerError(`tokenizer of ${dir} does not load: ${(e as Error).message}`, { cause: e });
  } finally {
    tok?.free();
  }
}
