// `n` > 1 (issue 22): the n choices of one request. Each choice is its own generation (runGeneration): its own
// request on the request plane, so a worker failure, a cancel or a migration acts on that choice as on any
// request; its own seed, stop strings and finish reason. Choice 0 starts at once; the others start when it has its
// first token, pinned to its decode worker, where its prompt KV then sits in the prefix cache: with an executor
// that has one, the prompt is computed once. The rules are in docs/design/serving.md ("n > 1").
import { randomInt, randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { DecodeChunk, GenerateRequest } from "@trtd/apps-common";
import type { GenerationBackend } from "./backend.js";
import { toApiError } from "./errors.js";
import { runGeneration, type GenerationDeps, type GenerationResult } from "./generation.js";
import type { LogprobsCollector } from "./openai/logprobs.js";
import { usageOf } from "./openai/responses.js";
import { NodeSseWriter } from "./sse-writer.js";

/**
 * Choice i's request: a fresh id and a seed of its own. With a client seed, choice i samples with seed + i (so
 * choice i equals a separate request with seed + i); sampling without one, each choice draws a fresh random seed;
 * greedy requests have none (every choice is the same).
 */
export function choiceRequest(req: GenerateRequest, i: number, clientSeed: number | undefined): GenerateRequest {
  const { seed: drawn, ...sampling } = req.sampling;
  const seed = clientSeed !== undefined ? clientSeed + i : drawn === undefined ? undefined : i === 0 ? drawn : randomInt(0, 2 ** 32);
  return { ...req, id: i === 0 ? req.id : randomUUID(), sampling: seed === undefined ? sampling : { ...sampling, seed } };
}

export interface Choices {
  /** Choice i's text deltas and result; choices 1.. start when choice 0 has its first token. */
  readonly gens: AsyncGenerator<string, GenerationResult>[];
  /** Ends every choice still running (their requests are cancelled in the workers). Idempotent. */
  cancel(reason?: unknown): void;
}

/** Starts the n choices of `req` (n = reqs.length, from choiceRequest); `signal` (the client) cancels them all. */
export function startChoices(
  deps: GenerationDeps,
  reqs: GenerateRequest[],
  stop: string[],
  arrival: number,
  signal: AbortSignal,
  logprobs: (LogprobsCollector | undefined)[] = [],
): Choices {
  const all = new AbortController();
  const onClientGone = () => all.abort(signal.reason);
  if (signal.aborted) all.abort(signal.reason);
  else signal.addEventListener("abort", onClientGone, { once: true });
  all.signal.addEventListener("abort", () => signal.removeEventListener("abort", onClientGone), { once: true });

  // Where choice 0 decodes, known once its first token is out (after a migration, the worker that now holds it).
  // The others start then, and only then: a choice 0 that fails before its first token (its worker's error
  // chunk, or an error thrown) ends them all with its error before any of them is sent.
  let decodeAt: string | undefined;
  let released = false;
  let placed!: (instanceId: string | undefined) => void;
  const firstToken = new Promise<string | undefined>((resolve) => (placed = resolve));
  const release = () => {
    released = true;
    placed(decodeAt);
  };
  const lead: GenerationBackend = {
    readiness: () => deps.backend.readiness(),
    async *generate(req, sig) {
      for await (const chunk of deps.backend.generate(req, sig, { onDecode: (id) => (decodeAt = id) })) {
        // A token the router streamed from the prefill comes before any decode worker is chosen: the others wait for
        // the first chunk from choice 0's decode worker, where its prompt's KV is.
        if (!failed(chunk) && (chunk.tokens.length > 0 || chunk.finishReason) && decodeAt !== undefined) release();
        yield chunk;
      }
    },
  };
  async function* leader(req: GenerateRequest): AsyncGenerator<string, GenerationResult> {
    let why: unknown = CHOICE_0_ENDED;
    try {
      const result = yield* runGeneration({ ...deps, backend: lead }, req, stop, arrival, all.signal, logprobs[0]);
      if (!released) release(); // finished without a token (not seen from a worker, but then the others may run)
      return result;
    } catch (err) {
      why = err;
      throw err;
    } finally {
      // Still waiting: the others end with choice 0's error (the same object, so whichever choice reports
      // first, the client gets that error).
      if (!released) all.abort(why);
    }
  }
  async function* follower(req: GenerateRequest, lp: LogprobsCollector | undefined): AsyncGenerator<string, GenerationResult> {
    const pin = await untilAborted(firstToken, all.signal);
    const backend: GenerationBackend = { readiness: () => deps.backend.readiness(), generate: (r, sig) => deps.backend.generate(r, sig, { pin }) };
    return yield* runGeneration({ ...deps, backend }, req, stop, arrival, all.signal, lp);
  }
  const gens = reqs.map((req, i) => (i === 0 ? leader(req) : follower(req, logprobs[i])));
  return { gens, cancel: (reason) => all.abort(reason) };
}

/** The choices' results as one: the prompt counted once, the completion tokens summed. */
export function totalResult(results: GenerationResult[]): GenerationResult {
  return { finishReason: results[0]!.finishReason, promptTokens: results[0]!.promptTokens, completionTokens: results.reduce((s, r) => s + r.completionTokens, 0) };
}

/** An OpenAI response object or chunk with one choice (as the endpoints' shapes make them). */
type OneChoice = { choices: { index: number }[] };

/** Sets the index of a one-choice response object or chunk. */
function withIndex<T>(obj: T, index: number): T {
  (obj as OneChoice).choices[0]!.index = index;
  return obj;
}

/** What app.ts's respond() knows about an endpoint's response objects (one choice each). */
export interface ChoiceShape<T> {
  whole: (text: string, r: GenerationResult) => unknown;
  pieces: (gen: AsyncGenerator<string, GenerationResult>) => AsyncGenerator<T, GenerationResult>;
  first?: () => unknown;
  delta: (item: T) => unknown;
  last: (r: GenerationResult) => unknown;
  usage: (r: GenerationResult) => unknown;
}

/** Runs every choice to its end; the first failure cancels the others and is thrown. */
async function wholeChoices<T>(choices: Choices, shapes: ChoiceShape<T>[]): Promise<unknown> {
  let failure: { err: unknown } | undefined;
  const outs = await Promise.all(
    choices.gens.map(async (gen) => {
      try {
        let text = "";
        for (;;) {
          const step = await gen.next();
          if (step.done) return { text, result: step.value };
          text += step.value;
        }
      } catch (err) {
        if (!failure) {
          failure = { err };
          choices.cancel(err);
        }
        return undefined;
      }
    }),
  );
  if (failure) throw failure.err;
  const done = outs as { text: string; result: GenerationResult }[];
  const objs = done.map((o, i) => withIndex(shapes[i]!.whole(o.text, o.result), i) as OneChoice & Record<string, unknown>);
  return { ...objs[0], choices: objs.map((o) => o.choices[0]), usage: usageOf(totalResult(done.map((o) => o.result))) };
}

/**
 * The stream's events (JSON strings, then "[DONE]"): a role chunk per choice when the endpoint has one, then the
 * choices' deltas as they come, each choice closed by its own finish_reason chunk, and one usage chunk at the end.
 */
async function* choiceEvents<T>(choices: Choices, shapes: ChoiceShape<T>[], includeUsage: boolean): AsyncGenerator<string> {
  const gens = choices.gens.map((g, i) => shapes[i]!.pieces(g));
  const results: GenerationResult[] = [];
  let started = false;
  for await (const { index, step } of interleave(gens)) {
    if (!started) for (let i = 0; i < gens.length; i++) if (shapes[i]!.first) yield JSON.stringify(withIndex(shapes[i]!.first!(), i));
    started = true;
    if (!step.done) yield JSON.stringify(withIndex(shapes[index]!.delta(step.value), index));
    else {
      results[index] = step.value;
      yield JSON.stringify(withIndex(shapes[index]!.last(step.value), index));
    }
  }
  if (includeUsage) yield JSON.stringify(shapes[0]!.usage(totalResult(results)));
  yield "[DONE]";
}

/** The items of several generators as they come, each tagged with its generator's index; the first failure is thrown. */
async function* interleave<T, R>(gens: AsyncGenerator<T, R>[]): AsyncGenerator<{ index: number; step: IteratorResult<T, R> }> {
  const pending = new Map<number, Promise<{ index: number; step: IteratorResult<T, R> }>>();
  const pull = (index: number) => {
    const p = gens[index]!.next().then((step) => ({ index, step }));
    p.catch(() => {}); // a loser of the race that fails later is handled by the caller's cancel, not unhandled
    pending.set(index, p);
  };
  gens.forEach((_, i) => pull(i));
  while (pending.size > 0) {
    const x = await Promise.race(pending.values());
    if (x.step.done) pending.delete(x.index);
    else pull(x.index);
    yield x;
  }
}

/**
 * Answers an `n` > 1 request, whole or as SSE, like app.ts's respond() does for one choice. As there, a failure
 * before the first event is an HTTP error, a later one an SSE error event; the client leaving cancels every choice.
 */
export async function respondChoices<T>(
  c: Context,
  deps: GenerationDeps,
  reqs: GenerateRequest[],
  stop: string[],
  stream: { stream: boolean; includeUsage: boolean },
  parts: { shape: ChoiceShape<T>; logprobs?: LogprobsCollector }[],
): Promise<Response | typeof RESPONSE_ALREADY_SENT> {
  const choices = startChoices(deps, reqs, stop, c.get("arrival"), c.req.raw.signal, parts.map((p) => p.logprobs));
  const shapes = parts.map((p) => p.shape);
  if (!stream.stream) {
    try {
      return c.json(await wholeChoices(choices, shapes));
    } finally {
      choices.cancel();
    }
  }
  const events = choiceEvents(choices, shapes, stream.includeUsage);
  const finish = async () => {
    choices.cancel();
    await events.return(undefined).catch(() => {});
    await Promise.allSettled(choices.gens.map((g) => g.return(undefined as never)));
  };
  let first: IteratorResult<string>;
  try {
    first = await events.next();
  } catch (err) {
    await finish();
    throw err;
  }
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  if (outgoing) {
    const sse = new NodeSseWriter(outgoing, c.newResponse(null).headers);
    void (async () => {
      try {
        for (let step = first; !step.done && !sse.aborted; step = await events.next()) await sse.send(step.value);
      } catch (err) {
        if (!sse.aborted) await sse.send(JSON.stringify(toApiError(err).toJSON())).catch(() => {});
      } finally {
        sse.end();
        await finish();
      }
    })();
    return RESPONSE_ALREADY_SENT;
  }
  return streamSSE(c, async (sse) => {
    const abort = new AbortController();
    sse.onAbort(() => abort.abort());
    try {
      for (let step = first; !step.done && !abort.signal.aborted; step = await events.next()) await sse.writeSSE({ data: step.value });
    } catch (err) {
      if (!abort.signal.aborted) await sse.writeSSE({ data: JSON.stringify(toApiError(err).toJSON()) });
    } finally {
      await finish();
    }
  });
}

/** Why the later choices end when choice 0 ended before its first token without an error (it was closed). */
const CHOICE_0_ENDED = new Error("choice 0 ended before its first token");

/**
 * A worker's chunk that ends its request without a result: an error (runGeneration turns it into WorkerFailedError)
 * or a cancel. Either way choice 0 has no first token to release the others with.
 */
function failed(chunk: DecodeChunk): boolean {
  return chunk.error !== undefined || chunk.finishReason === "error" || chunk.finishReason === "cancelled";
}

/** `p`, or a rejection with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener("abort", onAbort);
      resolve(v);
    });
  });
}
