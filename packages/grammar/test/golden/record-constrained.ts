// Records test/golden/constrained-tokens.json: the golden requests' tokens on the reference executor (the library
// that TRTD_EXECUTOR_LIB names, else the built one), with the sha256 of models/tiny/model.safetensors they were made
// with. Run from packages/grammar: node --import tsx --conditions=source test/golden/record-constrained.ts
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { modelDir } from "@trtd/test-support";
import { Executor } from "@trtd/trtllm";
import { Tokenizer } from "@trtd/tokenizer";
import { GrammarCompiler } from "../../src/index.js";
import { runGolden } from "./constrained-requests.js";

const tok = Tokenizer.fromModelDir(modelDir);
const ex = Executor.open(modelDir, { maxBatchSize: 64, kvBlockCount: 4096 });
const compiler = await GrammarCompiler.create(tok, { vocabSize: ex.model.vocabSize });
try {
  const outputs = await runGolden(ex, tok, compiler);
  const modelSha256 = createHash("sha256").update(readFileSync(join(modelDir, "model.safetensors"))).digest("hex");
  const file = new URL("./constrained-tokens.json", import.meta.url);
  writeFileSync(file, JSON.stringify({ recordedWith: process.argv[2] ?? "unspecified", modelSha256, outputs }) + "\n");
  console.log(`wrote ${outputs.length} outputs (${outputs.reduce((n, o) => n + o.tokens.length, 0)} tokens) to ${file.pathname}`);
} finally {
  compiler.free();
  tok.free();
  await ex.close();
}
