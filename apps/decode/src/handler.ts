// The decode worker's request handler: aggregated generation, or generation-only after a remote prefill with the
// KV pulled into this executor; when the pull fails the prompt is recomputed here, so the request is not lost.
import {
  executorControls,
  executorSampling,
  finishReasonOf,
  wireLogprobs,
  parseDecodeRequest,
  type DecodeChunk,
  type DecodeRequest,
  type ExecutionMode,
  type WireTokenLogprobs,
} from "@trtd/apps-common";
import type { Handler, RequestContext } from "@trtd/request-plane";
import { kvPullFailureReason, type KvPullFailureReason } from "@trtd/kv-transfer";
import { UnsupportedError, type Executor, type GenerateChunk, type GenerationStream } from "@trtd/trtllm";

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
  pullKv: KvPullFn;
  declineKv: KvDeclineFn;
  /** Called once per failed pull (the prompt is recomputed), with why it failed (kv-transfer's KvPullFailureReasons). */
  onPullFailure?: (reason: KvPullFailureReason) => void;
  log?: (line: string) => void;
}

/**
 * Executor chunks as wire chunks; the first carries the mode (and KV figures). `firstTokenLogprobs`: the logprobs of
 * a generation-only request's first token, which its executor re-emits without them (the prefill worker drew it).
 */
async function* relay(
  stream: AsyncIterable<GenerateChunk>,
  first: Pick<DecodeChunk, "mode" | "kv">,
  firstTokenLogprobs?: WireTokenLogprobs,
): AsyncGenerator<DecodeChunk> {
  let head: Pick<DecodeChunk, "mode" | "kv"> | undefined = first;
  let fillFirst = firstTokenLogprobs !== undefined;
  for await (const c of stream) {
    const out: DecodeChunk = { tokens: c.tokens, ...head };
    head = undefined;
    const logprobs = wireLogprobs(c.logprobs);
    if (logprobs) {
      if (fillFirst && logprobs.length > 0) {
        logprobs[0] ??= firstTokenLogprobs!;
        fillFirst = false;
      }
      out.logprobs = logprobs;
    }
    if (c.final) {
      out.finishReason = finishReasonOf(c.finishReason);
      if (c.error) out.error = c.error.message;
    }
    if (out.tokens.length > 0 || c.final) yield out;
    if (c.final) return;
  }
}

export function createDecodeHandler(deps: DecodeHandlerDeps): Handler<DecodeRequest, DecodeChunk> {
  const { executor, log = () => {} } = deps;

  const aggregated = (req: DecodeRequest, signal: AbortSignal, mode: ExecutionMode) => {
    const base = {
      prompt: req.tokens,
      maxNewTokens: req.maxTokens,
      stopTokenIds: req.stopTokenIds,
      sampling: executorSampling(req),
      ...executorControls(req),
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
    return relay(stream, { mode });
  };

  return async function* decode(raw: DecodeRequest, ctx: RequestContext): AsyncGenerator<DecodeChunk> {
    const req = parseDecodeRequest(raw);
    const { signal } = ctx;
    const p = req.prefill;
    if (!p) {
      yield* aggregated(req, signal, "aggregated");
      return;
    }
    // The first token already ends the request: nothing to pull.
    const eos = req.stopTokenIds.includes(p.firstToken);
    if (eos || req.maxTokens === 1) {
      await deps.declineKv(p.kvHandle).catch((err) => log(`declining KV of ${req.id} failed: ${(err as Error).message}`));
      const logprobs = req.logprobs ? { logprobs: [p.firstTokenLogprobs ?? null] } : {};
      yield { tokens: [p.firstToken], ...logprobs, mode: "disaggregated", finishReason: eos ? "stop" : "length" };
      return;
    }
    let pulled: PulledKv;
    try {
      pulled = await deps.pullKv(p.kvHandle, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      const reason = kvPullFailureReason(err);
      deps.onPullFailure?.(reason);
      log(`KV pull for ${req.id} failed (${reason}), recomputing the prompt here: ${(err as Error).message}`);
      yield* aggregated(req, signal, "recomputed");
      return;
    }
    const stream = executor.generate(
      {
        type: "generation_only",
        prompt: req.tokens,
        maxNewTokens: req.maxTokens,
        stopTokenIds: req.stopTokenIds,
        sampling: executorSampling(req),
        ...executorControls(req),
        contextPhase: { firstToken: p.firstToken, kvImport: pulled.kvImport, opaqueState: pulled.opaqueState },
      },
      { signal },
    );
    // A generation-only request's output starts with the first token (the executor re-emits it), so the
    // client sees the same sequence as in aggregated mode.
    yield* relay(
      stream,
      { mode: "disaggregated", kv: { bytes: pulled.bytes, transferMs: pulled.transferMs, path: pulled.path, fallbacks: pulled.fallbacks } },
      p.firstTokenLogprobs,
    );
  };
}
