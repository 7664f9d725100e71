// The decode worker's request handler: aggregated generation, or generation-only after a remote prefill with the
// KV pulled into this executor; when the pull fails the prompt is recomputed here, so the request is not lost.
import {
  executorControls,
  executorSampling,
  finishReasonOf,
  wireLogprobs,
  parseDecodeRequest,
  traceStage,
  type DecodeChunk,
  type DecodeRequest,
  type ExecutionMode,
  type WireTokenLogprobs,
  type WorkerGrammars,
} from "@trtd/apps-common";
import type { Handler, RequestContext } from "@trtd/request-plane";
import { kvPullFailureReason, type KvPullFailureReason } from "@trtd/kv-transfer";
import { UnsupportedError, type Executor, type GenerateChunk, type GenerationStream, type TokenConstraint } from "@trtd/trtllm";

/**
 * What a successful KV pull hands over: an import the executor consumes, or, on an engine that moves KV itself
 * (the TensorRT-LLM shim), the context phase state it continues from; and figures for metrics.
 */
export interface PulledKv {
  kvImport?: ReturnType<Executor["reserveKvImport"]>;
  opaqueState?: Uint8Array;
  bytes: number;
  transferMs: number;
  /** The kv-transfer transport that moved the KV ("cuda-ipc", "shm", "tcp", "nats", "engine"). */
  path: string;
  /** Transports that failed during this pull and handed over to the next one. */
  fallbacks: string[];
}

/** Pulls a prefill worker's KV (a kv-transfer handle) into a fresh import of `executor`. */
export type KvPullFn = (kvHandle: unknown, signal: AbortSignal) => Promise<PulledKv>;
/** Tells the offering side its KV will not be pulled (so it is freed now rather than at expiry). */
export type KvDeclineFn = (kvHandle: unknown) => Promise<void>;

export interface DecodeHandlerDeps {
  executor: Executor;
  /**
   * The grammars of constrained requests (response_format); the matcher of each runs here, beside the executor.
   * Without it a request with a grammar is refused.
   */
  grammars?: WorkerGrammars;
  pullKv: KvPullFn;
  declineKv: KvDeclineFn;
  /** Called once per failed pull (the prompt is recomputed), with why it failed (kv-transfer's KvPullFailureReasons). */
  onPullFailure?: (reason: KvPullFailureReason) => void;
  log?: (line: string) => void;
}

/**
 * Executor chunks as wire chunks; the first one sent carries the mode (and KV figures). A generation-only request's
 * executor re-emits the prefill's first token: `first` says what to do with it: `fill` it with the prefill's
 * logprobs (the executor has none for it), or `skip` it (the api already streamed it: DecodeRequest.firstTokenSent).
 */
async function* relay(
  stream: AsyncIterable<GenerateChunk>,
  head0: Pick<DecodeChunk, "mode" | "kv">,
  first?: { skip: true } | { skip: false; logprobs: WireTokenLogprobs | undefined },
): AsyncGenerator<DecodeChunk> {
  let head: Pick<DecodeChunk, "mode" | "kv"> | undefined = head0;
  let tokens = 0;
  let reemitted = first !== undefined; // the re-emitted first token is still to come
  for await (const c of stream) {
    if (tokens === 0 && c.tokens.length > 0) traceStage?.("decode.first_token");
    tokens += c.tokens.length;
    let ids = c.tokens;
    let logprobs = wireLogprobs(c.logprobs);
    if (reemitted && ids.length > 0) {
      reemitted = false;
      if (first!.skip) {
        ids = ids.slice(1);
        logprobs = logprobs?.slice(1);
      } else if (logprobs && logprobs.length > 0 && first!.logprobs) logprobs[0] ??= first!.logprobs;
    }
    const out: DecodeChunk = { tokens: ids };
    if (logprobs) out.logprobs = logprobs;
    if (c.final) {
      out.finishReason = finishReasonOf(c.finishReason);
      if (c.error) out.error = c.error.message;
    }
    if (out.tokens.length > 0 || c.final) {
      // the mode and KV figures ride on the first chunk that goes out (one that was all skipped token does not)
      yield head ? { ...out, ...head } : out;
      head = undefined;
    }
    if (c.final) return;
  }
}

export function createDecodeHandler(deps: DecodeHandlerDeps): Handler<DecodeRequest, DecodeChunk> {
  const { executor, log = () => {} } = deps;

  /**
   * Runs a request with its grammar's matcher (when it has one) as the constraint, and frees the matcher when the
   * stream ends, however it ends. `generated`: tokens already produced elsewhere (migration), which the matcher
   * accepts first.
   */
  async function* constrained(
    req: DecodeRequest,
    generated: readonly number[],
    start: (constraint: TokenConstraint | undefined) => AsyncGenerator<DecodeChunk>,
  ): AsyncGenerator<DecodeChunk> {
    if (req.grammar && !deps.grammars) throw new Error("grammar: this decode handler has no grammars (constrained decoding)");
    const matcher = req.grammar ? await deps.grammars!.matcher(req.grammar, generated) : undefined;
    try {
      yield* start(matcher);
    } finally {
      matcher?.free();
    }
  }

  const aggregated = (req: DecodeRequest, signal: AbortSignal, mode: ExecutionMode) => {
    const offset = req.generatedOffset ?? 0;
    return constrained(req, req.tokens.slice(req.tokens.length - offset), (constraint) => runAggregated(req, signal, mode, constraint));
  };

  const runAggregated = (req: DecodeRequest, signal: AbortSignal, mode: ExecutionMode, constraint: TokenConstraint | undefined) => {
    const base = {
      prompt: req.tokens,
      maxNewTokens: req.maxTokens,
      stopTokenIds: req.stopTokenIds,
      sampling: executorSampling(req),
      ...executorControls(req),
      ...(constraint ? { constraint } : {}),
    };
    const offset = req.generatedOffset ?? 0;
    let stream: GenerationStream;
    try {
      // A migrated request continues its draws where the dead worker stopped (exact seeded continuation).
      stream = executor.generate({ ...base, generatedOffset: offset }, { signal });
    } catch (err) {
      // An engine without a draw offset (the TensorRT-LLM shim) still serves the migration, restarting the draw
      // count: a valid sample with the same parameters, not the one the uninterrupted run would have drawn.
      if (!(err instanceof UnsupportedError) || offset === 0) throw err;
      log(`${req.id}: the executor cannot resume draws at ${offset} (${err.message}); continuing with a fresh draw count`);
      stream = executor.generate(base, { signal });
    }
    traceStage?.("decode.enqueued");
    return relay(stream, { mode });
  };

  return async function* decode(raw: DecodeRequest, ctx: RequestContext): AsyncGenerator<DecodeChunk> {
    traceStage?.("decode.handler");
    const req = parseDecodeRequest(raw);
    const { signal } = ctx;
    const p = req.prefill;
    if (!p) {
      yield* aggregated(req, signal, "aggregated");
      return;
    }
    // The api streamed the first token already: a recompute continues after it, as a migration from offset 1 does
    // (draws at (seed, 1): the tokens of the uninterrupted run).
    const recompute = (): AsyncGenerator<DecodeChunk> =>
      req.firstTokenSent
        ? aggregated({ ...req, tokens: [...req.tokens, p.firstToken], maxTokens: req.maxTokens - 1, generatedOffset: 1 }, signal, "recomputed")
        : aggregated(req, signal, "recomputed");
    // The first token already ends the request: nothing to pull.
    const eos = req.stopTokenIds.includes(p.firstToken);
    if (eos || req.maxTokens === 1) {
      await deps.declineKv(p.kvHandle).catch((err) => log(`declining KV of ${req.id} failed: ${(err as Error).message}`));
      const sent = req.firstTokenSent === true; // then the api does not send it here (router.ts); kept exact anyway
      const logprobs = req.logprobs && !sent ? { logprobs: [p.firstTokenLogprobs ?? null] } : {};
      yield { tokens: sent ? [] : [p.firstToken], ...logprobs, mode: "disaggregated", finishReason: eos ? "stop" : "length" };
      return;
    }
    let pulled: PulledKv;
    try {
      traceStage?.("decode.pull_start");
      pulled = await deps.pullKv(p.kvHandle, signal);
      traceStage?.("decode.pull_done");
    } catch (err) {
      if (signal.aborted) throw err;
      const reason = kvPullFailureReason(err);
      deps.onPullFailure?.(reason);
      log(`KV pull for ${req.id} failed (${reason}), recomputing the prompt here: ${(err as Error).message}`);
      yield* recompute();
      return;
    }
    // A generation-only request's output starts with the first token (the executor re-emits it), so the
    // client sees the same sequence as in aggregated mode. With a grammar, the executor feeds that token to the
    // matcher before it asks for the second token's mask.
    const kv = { bytes: pulled.bytes, transferMs: pulled.transferMs, path: pulled.path, fallbacks: pulled.fallbacks };
    let consumed = false;
    try {
      yield* constrained(req, [], (constraint) => {
        const stream = executor.generate(
          {
            type: "generation_only",
            prompt: req.tokens,
            maxNewTokens: req.maxTokens,
            stopTokenIds: req.stopTokenIds,
            sampling: executorSampling(req),
            ...executorControls(req),
            contextPhase: { firstToken: p.firstToken, kvImport: pulled.kvImport, opaqueState: pulled.opaqueState },
            ...(constraint ? { constraint } : {}),
          },
          { signal },
        );
        consumed = true;
        traceStage?.("decode.enqueued");
        return relay(stream, { mode: "disaggregated", kv }, req.firstTokenSent ? { skip: true } : { skip: false, logprobs: p.firstTokenLogprobs });
      });
    } finally {
      if (!consumed && pulled.kvImport?.state === "reserved") pulled.kvImport.abort(); // the grammar failed before enqueue
    }
  };
}
