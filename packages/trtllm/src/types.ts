// Public data types of @trtd/trtllm (see docs/design/contracts.md, "Executor").
import type { KvLayout } from "@trtd/model";
import type { ExecutorError } from "./errors.js";
import type { KvImport } from "./kv.js";

/** Executor implementations built in this repository: the CPU reference executor and the CUDA executor. */
export type ExecutorName = "reference" | "cuda";

export interface ExecutorOptions {
  /** Most requests in flight per iteration (default 32). */
  maxBatchSize?: number;
  /** Token budget per engine iteration; long prompts are chunked to it (default 512). */
  maxTokensPerIteration?: number;
  /** Tokens per KV block (default 16). */
  kvTokensPerBlock?: number;
  /** KV blocks in the pool; 0 or unset = from kvMemoryBytes. */
  kvBlockCount?: number;
  /** KV pool budget in bytes when kvBlockCount is unset (default 64 MiB). */
  kvMemoryBytes?: number;
  /** Compute threads (default: all cores). */
  threads?: number;
  /** Prompt + generated tokens per request (default: the model's max_position_embeddings). */
  maxContextLength?: number;
  /** Enqueue fails with QueueFullError past this many waiting requests (default 0 = unbounded). */
  maxQueuedRequests?: number;
  /**
   * Reuse full KV blocks across requests whose tokens start the same way (default true). The output is the same
   * either way, token for token; see "Prefix cache" in the package README.
   */
  prefixCache?: boolean;
  /**
   * Bytes of host memory for the host KV tier (default 0 = off): cached blocks evicted from the pool are kept there
   * and copied back on a prefix hit. Needs prefixCache; see "Host KV tier" in the package README.
   */
  kvHostCacheBytes?: number;
  /** Accelerator ordinal (config device_id); default 0 with executor "cuda", -1 (CPU) with "reference", else the library's. */
  deviceId?: number;
  /**
   * The implementation by name: "reference" (build/libtrtd_ref.so) or "cuda" (build/libtrtd_executor_cuda.so).
   * Default: `library`, else $TRTD_EXECUTOR_LIB, else the reference executor. Not together with `library`.
   */
  executor?: ExecutorName;
  /** Path of the executor library; default: $TRTD_EXECUTOR_LIB, else the built reference executor. */
  library?: string;
}

export interface ModelInfo {
  vocabSize: number;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Effective prompt + generated token limit. */
  maxContextLength: number;
  eosTokenIds: number[];
  /** Hex digest of config.json and the weights. */
  fingerprint: string;
}

export type MemoryKind = "host" | "host_pinned" | "cuda_device" | "engine_handle";

/** An executor's KV layout: the exchangeable identity (`KvLayout` of @trtd/model) and where its KV lives. */
export interface ExecutorKvLayout extends KvLayout {
  memoryKind: MemoryKind;
}

export interface SamplingOptions {
  /** 0 = greedy (default). */
  temperature?: number;
  /** 0 = off (default). */
  topK?: number;
  /** (0, 1]; 1 = off (default). */
  topP?: number;
  /** The draw for the n-th generated token depends only on (seed, n); n starts at `generatedOffset`. Default 0. */
  seed?: number | bigint;
  /**
   * Logit controls (trtd_executor.h, "Logit controls", for their order). CTRL repetition penalty over the prompt and
   * generated ids: > 0, 1 = off (default).
   */
  repetitionPenalty?: number;
  /** OpenAI's frequency penalty over the generated ids: subtracted count times; 0 = off (default). */
  frequencyPenalty?: number;
  /** OpenAI's presence penalty over the generated ids: subtracted once per id present; 0 = off (default). */
  presencePenalty?: number;
  /** [0, 1]: drop ids whose probability after temperature is below minP times the largest; 0 = off (default). */
  minP?: number;
}

/** One output token's logprobs, of the raw model distribution (before logit controls and temperature). */
export interface TokenLogprobs {
  logprob: number;
  /** The most likely ids (`topLogprobs` of them), logprob descending, lower id first on ties. */
  top: { id: number; logprob: number }[];
}

export type RequestType = "context_and_generation" | "context_only" | "generation_only";

export interface ContextPhase {
  /** The first token produced by the context-only request. */
  firstToken: number;
  /** KV reserved with reserveKvImport and filled with the context-only request's exported segments. */
  kvImport?: KvImport;
  /** An engine's opaque context state (TensorRT-LLM shim); ignored by the reference executor. */
  opaqueState?: Uint8Array;
}

/** An allowed-token bitmask: ceil(vocabSize / 32) words, bit t % 32 of word t / 32 allows token t. */
export type TokenMask = Uint32Array | Int32Array;

/**
 * What a constrained request's tokens may be (C ABI 4): a grammar matcher such as @trtd/grammar's `GrammarMatcher`,
 * or any object with these methods. The executor calls them in order on the event loop: `nextTokenMask()` for each
 * sampled token, `acceptToken()` for each output token (a generation-only request's context-phase first token
 * included). The executor never frees it: its owner does, after the stream ended.
 */
export interface TokenConstraint {
  /** Advances past one output token; false when the token is not allowed (the request then fails). */
  acceptToken(token: number): boolean;
  /** The mask of the next sampled token; may be computed asynchronously. */
  nextTokenMask(): TokenMask | Promise<TokenMask>;
  /** True once the constraint is complete (its stop token accepted). Optional. */
  isTerminated?(): boolean;
}

export interface GenerateRequest {
  prompt: readonly number[] | Int32Array;
  /** Tokens to generate, counting the first token (also for generation_only). */
  maxNewTokens: number;
  /** Generation stops after this token (it is the last output token); default none. */
  endId?: number;
  /** Generation stops after any of these (the token is the last output token). */
  stopTokenIds?: readonly number[];
  sampling?: SamplingOptions;
  /** Default "context_and_generation". */
  type?: RequestType;
  /** Required for generation_only. */
  contextPhase?: ContextPhase;
  /**
   * Index of the first token this request generates, for resuming a sampled sequence begun elsewhere (request
   * migration): the prompt ends with the `generatedOffset` tokens already produced and the draws continue at
   * (seed, generatedOffset). `maxNewTokens` still counts only this request's tokens. Default 0; must be >= 0.
   * The TensorRT-LLM shim refuses a non-zero value (UnsupportedError).
   */
  generatedOffset?: number;
  /**
   * Constrains every sampled token to what this allows (constrained decoding, e.g. a JSON schema). The engine runs
   * the request's forward pass while the next mask is computed and waits only with its sampling; other requests
   * are not held up. Implementations without it (the CUDA executor, the TensorRT-LLM shim) refuse the request
   * with UnsupportedError. The request's stop tokens should include the constraint's (the model's EOS ids).
   */
  constraint?: TokenConstraint;
  /** Added to the logits of these ids before the draw (id → bias, finite). Default none. */
  logitBias?: Readonly<Record<number, number>>;
  /**
   * The end id and stop token ids cannot be drawn before this many tokens were generated (counting
   * `generatedOffset`). Default 0.
   */
  minNewTokens?: number;
  /** Record each drawn token's logprobs (GenerateChunk.logprobs). Default false. */
  logprobs?: boolean;
  /** With logprobs: alternatives per token, [0, 20]. Default 0. */
  topLogprobs?: number;
}

export type FinishReason = "length" | "end_id" | "stop_token" | "cancelled" | "error";

export interface GenerateChunk {
  requestId: number;
  /** New tokens since the previous chunk (may be empty in a final chunk). */
  tokens: number[];
  /**
   * With `logprobs`: one entry per token; undefined for a token the executor did not record (the first token of a
   * generation_only request: the context_only request's chunk carried it).
   */
  logprobs?: (TokenLogprobs | undefined)[];
  final: boolean;
  /** Set on the final chunk. */
  finishReason?: FinishReason;
  /** Set when finishReason is "error". */
  error?: ExecutorError;
}

export interface GenerateOptions {
  /** Aborting cancels the request; its final chunk then has finishReason "cancelled". */
  signal?: AbortSignal;
}

/** Prefix-cache events drained by Executor.kvEvents(): block hashes stored and evicted, oldest first. */
export interface KvEvents {
  events: { type: "stored" | "removed"; hash: bigint }[];
  /** Events were dropped (the executor's queue overflowed) since the last snapshot: rebuild from kvCacheSnapshot(). */
  lost: boolean;
}

export interface ExecutorStats {
  activeRequests: number;
  queuedRequests: number;
  /** Blocks held by requests, pinned exports and pending imports: 0 once all are done. */
  kvBlocksUsed: number;
  /** Blocks not held: empty, or holding a cached prefix (kvBlocksCached). kvBlocksUsed + kvBlocksFree = kvBlocksTotal. */
  kvBlocksFree: number;
  kvBlocksTotal: number;
  /** Free blocks that hold a cached prefix: reused on a hit, evicted least recently used first when space is needed. */
  kvBlocksCached: number;
  /** Prompt tokens whose KV came from the prefix cache (counted at admission). */
  prefixCacheHitTokens: number;
  /** Prompt tokens that had to be computed (generation-only requests count neither). */
  prefixCacheMissTokens: number;
  /** Cached blocks evicted from the pool to make room (also those that moved to the host tier). */
  prefixCacheEvictedBlocks: number;
  /** Slots in the host KV tier (kvHostCacheBytes / bytes per block); 0 when it is off. */
  kvHostBlocksTotal: number;
  /** Host-tier slots that hold a block. */
  kvHostBlocksHeld: number;
  /** Blocks copied from the pool to the host tier on eviction. */
  kvHostStoredBlocks: number;
  /** Blocks copied back from the host tier on a prefix match (their tokens count in prefixCacheHitTokens too). */
  kvHostHitBlocks: number;
  /** Blocks dropped from the full host tier, least recently used first. */
  kvHostEvictedBlocks: number;
  /** Finished context-only requests whose KV is still pinned for export. */
  pinnedExports: number;
  /** Reserved KV imports not yet consumed or aborted. */
  pendingImports: number;
  iterations: number;
  generatedTokens: number;
  promptTokens: number;
}
