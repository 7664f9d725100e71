// One generation from the api's side: build the internal request, run it on the backend, detokenize
// incrementally with stop strings, keep latency metrics. Both endpoints, streaming or not, go through here.
import { randomInt, randomUUID } from "node:crypto";
import { traceStage, type DecodeChunk, type FinishReason, type GenerateRequest } from "@trtd/apps-common";
import type { GrammarSpec } from "@trtd/grammar";
import type { GenerationBackend } from "./backend.js";
import { ApiErrorCodes, DeadlineExceededError, InvalidRequestError, WorkerFailedError } from "./errors.js";
import type { ApiMetrics } from "./metrics/api-metrics.js";
import type { ServerLimits } from "./openai/limits.js";
import type { LogprobsCollector } from "./openai/logprobs.js";
import type { ControlFields, LogprobsFields, SamplingFields } from "./openai/validate.js";
import type { TextCodec } from "./text-codec.js";

export interface GenerationInput {
  promptTokens: number[];
  /** As asked by the client; undefined means `defaultMaxTokens`, limited by the context. */
  maxTokens: number | undefined;
  defaultMaxTokens: number;
  sampling: SamplingFields;
  /** Logit controls; absent: all off. */
  controls?: ControlFields;
  /** Absent: no logprobs. */
  logprobs?: LogprobsFields;
  stop: string[];
  /** The field the client gave the limit in (`max_tokens` or `max_completion_tokens`), named by errors. */
  maxTokensParam: string;
  /** The field that holds the prompt (`messages` or `prompt`), named by errors. */
  promptParam: "messages" | "prompt";
  /** Constrained decoding (response_format), already checked. */
  grammar?: GrammarSpec;
}

/** OpenAI's finish reasons. */
/** `tool_calls` is set only by chat's tool-call parsing (openai/chat-output.ts), never by a worker's finish. */
export type OpenAIFinishReason = "stop" | "length" | "tool_calls";

export interface GenerationResult {
  finishReason: OpenAIFinishReason;
  promptTokens: number;
  completionTokens: number;
}

export interface GenerationDeps {
  backend: GenerationBackend;
  codec: TextCodec;
  limits: ServerLimits;
  metrics: ApiMetrics;
}

/** Checks the prompt against the limits and builds the internal request. Throws InvalidRequestError. */
export function buildGenerateRequest(deps: GenerationDeps, input: GenerationInput): GenerateRequest {
  const { limits } = deps;
  const n = input.promptTokens.length;
  if (n === 0) throw new InvalidRequestError("the prompt is empty", input.promptParam);
  const maxPrompt = Math.min(limits.maxPromptTokens, limits.contextLength - 1);
  if (n > maxPrompt) {
    throw new InvalidRequestError(
      `the prompt has ${n} tokens; this server accepts at most ${maxPrompt}`,
      input.promptParam,
      ApiErrorCodes.contextLengthExceeded,
    );
  }
  const room = limits.contextLength - n;
  let maxTokens = input.maxTokens ?? Math.min(input.defaultMaxTokens, room);
  if (maxTokens > room) {
    throw new InvalidRequestError(
      `${input.maxTokensParam}=${maxTokens} plus the prompt's ${n} tokens exceeds the context length ${limits.contextLength}`,
      input.maxTokensParam,
      ApiErrorCodes.contextLengthExceeded,
    );
  }
  maxTokens = Math.max(1, maxTokens);
  const c = input.controls;
  if (c && c.minTokens > maxTokens) {
    throw new InvalidRequestError(`min_tokens=${c.minTokens} exceeds ${input.maxTokensParam}=${maxTokens}`, "min_tokens");
  }
  if (c) {
    const biased = Object.keys(c.logitBias);
    if (biased.length) deps.codec.checkTokenIds(biased.map(Number), "logit_bias");
    if (c.stopTokenIds.length) deps.codec.checkTokenIds(c.stopTokenIds, "stop_token_ids");
  }
  // ignore_eos: the eos ids no longer end generation; stop_token_ids always do.
  const stopTokenIds = [...new Set([...(c?.ignoreEos ? [] : deps.codec.eosTokenIds), ...(c?.stopTokenIds ?? [])])];
  // Without a client seed, sampled requests still get one: prefill and decode then draw the same sequence.
  const seed = input.sampling.seed ?? (input.sampling.temperature > 0 ? randomInt(0, 2 ** 32) : undefined);
  return {
    id: randomUUID(),
    tokens: input.promptTokens,
    sampling: {
      temperature: input.sampling.temperature,
      topP: input.sampling.topP,
      topK: 0,
      ...(seed !== undefined ? { seed } : {}),
      ...(c && c.repetitionPenalty !== 1 ? { repetitionPenalty: c.repetitionPenalty } : {}),
      ...(c && c.frequencyPenalty !== 0 ? { frequencyPenalty: c.frequencyPenalty } : {}),
      ...(c && c.presencePenalty !== 0 ? { presencePenalty: c.presencePenalty } : {}),
      ...(c && c.minP !== 0 ? { minP: c.minP } : {}),
    },
    maxTokens,
    stopTokenIds,
    deadline: Date.now() + limits.requestTimeoutMs,
    ...(input.grammar ? { grammar: input.grammar } : {}),
    ...(c && Object.keys(c.logitBias).length ? { logitBias: c.logitBias } : {}),
    ...(c && c.minTokens ? { minTokens: c.minTokens } : {}),
    ...(input.logprobs?.logprobs ? { logprobs: true, topLogprobs: input.logprobs.topLogprobs } : {}),
  };
}

/**
 * The reason runGeneration's own signal carries once the generation is over: one object for all requests, because
 * `abort()` without a reason builds a DOMException (a stack capture) per request.
 */
const GENERATION_ENDED = new Error("the generation ended");

function mapFinish(reason: FinishReason | undefined): OpenAIFinishReason {
  return reason === "length" ? "length" : "stop";
}

/**
 * Runs `req` and yields text deltas (never empty strings); returns the finish reason and usage.
 * Aborting `signal` (client gone) or reaching a stop string ends the backend stream, which cancels the
 * request in the workers.
 */
export async function* runGeneration(
  deps: GenerationDeps,
  req: GenerateRequest,
  stop: string[],
  arrival: number,
  signal: AbortSignal,
  /** Receives each chunk's token logprobs before its text is yielded (a request with `logprobs`). */
  logprobs?: LogprobsCollector,
): AsyncGenerator<string, GenerationResult> {
  const { backend, codec, metrics } = deps;
  const local = new AbortController();
  const onAbort = () => local.abort(signal.reason);
  if (signal.aborted) local.abort(signal.reason);
  else signal.addEventListener("abort", onAbort, { once: true });
  const deadlineTimer = setTimeout(() => local.abort(new DeadlineExceededError()), Math.max(0, req.deadline - Date.now()));
  const detok = codec.createDetokenizer(stop);
  let completionTokens = 0;
  let finishReason: OpenAIFinishReason = "length";
  let lastTokenAt = 0;
  metrics.inFlight.add({}, 1);
  metrics.promptTokens.inc({}, req.tokens.length);
  try {
    traceStage?.("api.dispatch");
    const stream = backend.generate(req, local.signal);
    let stopped = false;
    let finished = false;
    for await (const chunk of stream as AsyncIterable<DecodeChunk>) {
      if (chunk.mode) metrics.routed.inc({ mode: chunk.mode });
      if (chunk.kv) {
        const path = { path: chunk.kv.path ?? "unknown" };
        metrics.kvBytes.inc(path, chunk.kv.bytes);
        metrics.kvPathSeconds.inc(path, chunk.kv.transferMs / 1000);
        metrics.kvTransfers.inc(path);
        for (const left of chunk.kv.fallbacks ?? []) metrics.kvFallbacks.inc({ path: left });
        metrics.kvTransferSeconds.observe(chunk.kv.transferMs / 1000);
        metrics.kvTransferSize.observe(chunk.kv.bytes);
      }
      if (chunk.error || chunk.finishReason === "error") throw new WorkerFailedError(chunk.error ?? "the worker failed the request");
      if (chunk.tokens.length > 0) {
        const now = performance.now();
        if (completionTokens === 0) {
          traceStage?.("api.first_token");
          metrics.ttft.observe((now - arrival) / 1000);
        } else {
          // Tokens that arrive together share the gap since the previous chunk.
          const gap = (now - lastTokenAt) / 1000 / chunk.tokens.length;
          for (let i = 0; i < chunk.tokens.length; i++) metrics.itl.observe(gap);
        }
        lastTokenAt = now;
        completionTokens += chunk.tokens.length;
        logprobs?.push(chunk.tokens, chunk.logprobs);
        const { text, stopped: hit } = detok.push(chunk.tokens);
        if (text) yield text;
        if (hit) {
          stopped = true;
          finishReason = "stop";
          break; // leaving the loop closes the backend stream: the workers cancel the request
        }
      }
      if (chunk.finishReason) {
        if (chunk.finishReason === "cancelled") {
          if (local.signal.reason instanceof DeadlineExceededError) throw local.signal.reason;
          throw new WorkerFailedError("the request was cancelled in the worker");
        }
        finishReason = mapFinish(chunk.finishReason);
        finished = true;
        break;
      }
    }
    if (local.signal.aborted && local.signal.reason instanceof DeadlineExceededError) throw local.signal.reason;
    if (!stopped && !finished) throw new WorkerFailedError("the worker ended the stream without finishing the request");
    if (!stopped) {
      const tail = detok.finish();
      if (tail) yield tail;
    }
    metrics.e2e.observe((performance.now() - arrival) / 1000);
    return { finishReason, promptTokens: req.tokens.length, completionTokens };
  } catch (err) {
    if (local.signal.reason instanceof DeadlineExceededError) throw local.signal.reason;
    throw err;
  } finally {
    clearTimeout(deadlineTimer);
    signal.removeEventListener("abort", onAbort);
    local.abort(GENERATION_ENDED); // idempotent; makes sure nothing keeps running for a request nobody reads
    metrics.inFlight.add({}, -1);
    metrics.generatedTokens.inc({}, completionTokens);
  }
}
