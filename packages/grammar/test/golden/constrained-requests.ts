// The constrained requests whose tokens test/golden/constrained-tokens.json records: 40 requests decoding together
// (the bench's schemas: a long free string, json_object, and varied bounded schemas), temperature 1, fixed seeds.
// Shared by the recorder (record-constrained.ts) and the test (constrained-golden.test.ts).
import type { Executor, TokenConstraint } from "@trtd/trtllm";
import type { Tokenizer } from "@trtd/tokenizer";
import type { GrammarCompiler, GrammarMatcher, GrammarSpec } from "../../src/index.js";

export const GOLDEN_COUNT = 40;
export const GOLDEN_MAX_NEW_TOKENS = 48;

const LONG: GrammarSpec = { type: "json_schema", schema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] } };

export function goldenSpec(i: number): GrammarSpec {
  if (i < 16) return LONG;
  if (i < 32) return { type: "json_object" };
  const k = i - 32;
  return {
    type: "json_schema",
    strict: true,
    schema: {
      type: "object",
      properties: { id: { type: "integer", minimum: 0, maximum: 99 }, ok: { type: "boolean" }, tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 1 + (k % 3) }, name: { type: "string" } },
      required: k % 2 ? ["id", "ok", "tags"] : ["id", "name"],
      additionalProperties: false,
    },
  };
}

export interface GoldenOutput {
  tokens: number[];
  finishReason: string;
}

/**
 * Runs the golden requests together on `ex`, each with a fresh matcher; `wrap` may wrap a matcher (e.g. to
 * delay its masks). Frees every matcher.
 */
export async function runGolden(
  ex: Executor,
  tok: Tokenizer,
  compiler: GrammarCompiler,
  wrap: (m: GrammarMatcher) => TokenConstraint = (m) => m,
): Promise<GoldenOutput[]> {
  const matchers = await Promise.all(Array.from({ length: GOLDEN_COUNT }, (_, i) => compiler.matcher(goldenSpec(i))));
  try {
    const outs = await Promise.all(
      matchers.map((m, i) =>
        ex
          .generate({
            prompt: tok.encode(`Request ${i}: describe item ${(i * 7919) % 1000} in JSON.`),
            maxNewTokens: GOLDEN_MAX_NEW_TOKENS,
            stopTokenIds: [...tok.eosTokenIds],
            sampling: { temperature: 1, seed: 100 + i },
            constraint: wrap(m),
          })
          .collect(),
      ),
    );
    return outs.map((o) => ({ tokens: o.tokens, finishReason: String(o.finishReason) }));
  } finally {
    for (const m of matchers) m.free();
  }
}
