import { sendStreamingRequest, type ClientOptions } from "./client.js";
import { describe, type Distribution } from "./stats.js";

/** Executor settings used for the direct measurement; pass the same to the workers. */
export interface ExecutorSettings {
  maxBatchSize: number;
  maxTokensPerIteration: number;
  kvTokensPerBlock: number;
  kvBlockCount: number;
  threads: number;
}

/** The parts of @trtd/trtllm and @trtd/tokenizer used here (docs/design/contracts.md), loaded on demand. */
interface ExecutorLike {
  generate(req: { prompt: number[]; maxNewTokens: number }): AsyncIterable<{ tokens: number[]; final: boolean; finishReason?: string; error?: unknown }>;
  close(): Promise<void>;
}
interface TrtllmModule {
  Executor: { open(dir: string, opts: ExecutorSettings & { library?: string }): ExecutorLike };
}
interface TokenizerLike {
  encodeChat(messages: { role: string; content: string }[]): number[];
  free(): void;
}
interface TokenizerModule {
  Tokenizer: { fromModelDir(dir: string): TokenizerLike };
}

export interface FrontendOverheadOptions extends ClientOptions {
  modelDir: string;
  prompt: string;
  executor: ExecutorSettings & { library?: string };
  /** [reps=8] Measured pairs (after `warmup` of each). */
  reps?: number;
  /**
   * [warmup=1] Requests through HTTP, and executor runs, before the measured pairs. A serving api has had its
   * request path optimised by V8 long ago; a measurement after one warm-up request reads code still partly
   * interpreted (0.3–1.5 ms more on the 2-core VM: apps/api/README.md, "Results, 2026-12-08 (2)"). Give ~100–200
   * to measure the steady state.
   */
  warmup?: number;
  /** [maxTokens=2] Tokens asked for: TTFT needs only the first. */
  maxTokens?: number;
}

export interface FrontendOverhead {
  reps: number;
  warmup: number;
  /** usage.prompt_tokens from the server, and the chat-encoded length fed to the executor: equal if the same prompt. */
  httpPromptTokens?: number;
  executorPromptTokens: number;
  httpTtftMs: Distribution;
  executorTtftMs: Distribution;
  /** p50(HTTP) - p50(executor). */
  overheadP50Ms?: number;
  /** p50(HTTP) / p50(executor). */
  ratioP50?: number;
}

/**
 * TTFT of one prompt through the whole HTTP stack against the executor's own TTFT for the same tokens (the
 * model's chat template applied by @trtd/tokenizer, as the api does), measured alternately in this process on an
 * otherwise idle stack. The executor opened here is closed before returning.
 */
export async function measureFrontendOverhead(opts: FrontendOverheadOptions): Promise<FrontendOverhead> {
  const reps = opts.reps ?? 8;
  const warmup = Math.max(1, opts.warmup ?? 1);
  const maxTokens = opts.maxTokens ?? 2;
  const trtllm = (await import("@trtd/trtllm")) as unknown as TrtllmModule;
  const tokenizerMod = (await import("@trtd/tokenizer")) as unknown as TokenizerModule;
  const tok = tokenizerMod.Tokenizer.fromModelDir(opts.modelDir);
  let tokens: number[];
  try {
    tokens = tok.encodeChat([{ role: "user", content: opts.prompt }]);
  } finally {
    tok.free();
  }
  const ex = trtllm.Executor.open(opts.modelDir, opts.executor);
  const http: number[] = [];
  const direct: number[] = [];
  let httpPromptTokens: number | undefined;
  try {
    const directOnce = async (): Promise<number> => {
      const t0 = performance.now();
      let first: number | undefined;
      for await (const chunk of ex.generate({ prompt: tokens, maxNewTokens: maxTokens })) {
        if (chunk.error) throw new Error(`executor error: ${String(chunk.error)}`);
        if (first === undefined && chunk.tokens.length > 0) first = performance.now() - t0;
      }
      if (first === undefined) throw new Error("executor produced no token");
      return first;
    };
    const httpOnce = async (): Promise<number> => {
      const rec = await sendStreamingRequest(opts, { prompt: opts.prompt, maxTokens }, { index: 0, scheduledAtMs: 0, runStart: performance.now() });
      if (!rec.ok || rec.ttftMs === undefined) throw new Error(`HTTP request failed: ${rec.error}`);
      httpPromptTokens = rec.promptTokens;
      return rec.ttftMs;
    };
    for (let i = 0; i < warmup; i++) {
      await httpOnce();
      await directOnce();
    }
    for (let i = 0; i < reps; i++) {
      // Alternate which goes first so drift (caches, other load) hits both alike.
      if (i % 2 === 0) {
        http.push(await httpOnce());
        direct.push(await directOnce());
      } else {
        direct.push(await directOnce());
        http.push(await httpOnce());
      }
    }
  } finally {
    await ex.close();
  }
  const h = describe(http);
  const d = describe(direct);
  return {
    reps,
    warmup,
    httpPromptTokens,
    executorPromptTokens: tokens.length,
    httpTtftMs: h,
    executorTtftMs: d,
    overheadP50Ms: h.p50 !== undefined && d.p50 !== undefined ? h.p50 - d.p50 : undefined,
    ratioP50: h.p50 !== undefined && d.p50 ? h.p50 / d.p50 : undefined,
  };
}
