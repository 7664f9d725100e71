// @trtd/grammar: constrained decoding's grammar engine (xgrammar in WASM): grammars compiled once per tokenizer
// vocabulary and cached by spec, one matcher per constrained sequence (the TokenConstraint of @trtd/trtllm).
export { GrammarCompiler, CompiledGrammar, GrammarMatcher } from "./compiler.js";
export { checkGrammarSpec, grammarKey, JSON_OBJECT_SCHEMA } from "./spec.js";
export { byteLevelVocabulary } from "./vocabulary.js";
export {
  GrammarErrorCode,
  GrammarError,
  InvalidGrammarError,
  MatcherFreedError,
  CompilerFreedError,
  VocabularyError,
} from "./errors.js";

export type { GrammarCompilerOptions, GrammarCacheStats } from "./compiler.js";
export type { GrammarSpec, JsonSchema, JsonGrammarOptions, JsonWhitespace } from "./spec.js";
export type { VocabularySource } from "./vocabulary.js";
