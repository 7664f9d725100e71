// The HTTP layer: routes, middleware per concern, and one onError mapping typed errors to OpenAI error JSON.
import type { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono, type Context } from "hono";
import { traceStage } from "@trtd/apps-common";
import { streamSSE } from "hono/streaming";
import type { GenerationBackend } from "./backend.js";
import { ApiError, ApiErrorCodes, InvalidRequestError, NotFoundError, RequestTooLargeError, toApiError } from "./errors.js";
import { choiceRequest, respondChoices, type ChoiceShape } from "./choices.js";
import { buildGenerateRequest, runGeneration, type GenerationDeps, type GenerationResult } from "./generation.js";
import { createApiMetrics, type ApiMetrics } from "./metrics/api-metrics.js";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics/registry.js";
import { bearerAuth, bodyLimit, requestId } from "./middleware/index.js";
import { parseChatCompletion } from "./openai/chat-completions.js";
import { checkResponseFormat } from "./openai/response-format.js";
import { checkToolGrammar } from "./openai/tool-choice.js";
import { parseCompletion } from "./openai/completions.js";
import { chatMessageParts, chatPieces, pieceDelta, type ChatOutputOptions, type ChatPiece } from "./openai/chat-output.js";
import { chatLogprobs, completionLogprobs, LogprobsCollector, type TokenLogprob } from "./openai/logprobs.js";
import type { ReasoningOptions } from "./openai/reasoning.js";
import type { ToolCallFormat } from "./openai/tool-calls.js";
import { CHAT_DEFAULT_MAX_TOKENS, COMPLETIONS_DEFAULT_MAX_TOKENS, DEFAULT_LIMITS, type ServerLimits } from "./openai/limits.js";
import * as R from "./openai/responses.js";
import { jsonTemplate, NodeSseWriter } from "./sse-writer.js";
import type { TextCodec } from "./text-codec.js";

export interface ApiAppOptions {
  backend: GenerationBackend;
  codec: TextCodec;
  modelName: string;
  /** When set, /v1/* requires `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  limits?: Partial<ServerLimits>;
  metrics?: ApiMetrics;
  /** Called with unexpected (500) errors. */
  log?: (line: string) => void;
  /**
   * Split chat completions' `<think>…</think>` into `reasoning_content` (openai/reasoning.ts); undefined: no
   * split. server.ts picks it from the chat template and `--reasoning-parser`.
   */
  reasoning?: ReasoningOptions;
  /**
   * The model's tool-call format (openai/tool-calls.ts); undefined: requests with `tools` are refused. server.ts
   * picks it from the chat template and `--tool-call-parser`.
   */
  toolCalls?: ToolCallFormat;
}

const JSON_CONTENT_TYPE = /^application\/json\s*(;|$)/i;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The body as JSON: `Content-Type: application/json`, valid UTF-8 (not silently replaced), valid JSON. */
async function readJson(c: Context): Promise<unknown> {
  const type = c.req.header("content-type") ?? "";
  if (!JSON_CONTENT_TYPE.test(type)) {
    throw new InvalidRequestError(`Content-Type must be application/json (got '${type.slice(0, 100) || "none"}')`, null, ApiErrorCodes.invalidRequest);
  }
  let text: string;
  try {
    text = utf8.decode(await c.req.arrayBuffer());
  } catch (err) {
    if (err instanceof ApiError) throw err; // the body limit fires while the body is read
    throw new InvalidRequestError("the request body is not valid UTF-8", null, ApiErrorCodes.invalidJson, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidRequestError("the request body is not valid JSON", null, ApiErrorCodes.invalidJson, { cause: err });
  }
}

export function createApiApp(opts: ApiAppOptions) {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const metrics = opts.metrics ?? createApiMetrics();
  const deps: GenerationDeps = { backend: opts.backend, codec: opts.codec, limits, metrics };
  const log = opts.log ?? ((l: string) => console.error(l));
  const created = () => Math.floor(Date.now() / 1000);
  const app = new Hono();

  app.use("*", requestId());
  app.use("*", async function countRequests(c, next) {
    await next();
    metrics.requests.inc({ endpoint: c.req.routePath, status: String(c.res.status) });
  });
  app.use("/v1/*", bearerAuth(opts.apiKey));
  app.use("/v1/*", bodyLimit(limits.maxBodyBytes));

  app.onError(function openAIError(err, c) {
    const e = toApiError(err);
    // Server-side failures are logged, except those of clients that already left (nobody reads the answer).
    if (e.status >= 500 && e.status !== 503 && e.status !== 504 && !c.req.raw.signal.aborted) {
      log(`request ${c.get("requestId")}: ${(err as Error).stack ?? err}`);
    }
    // A refused body was not read to its end (body-limit.ts drains it, bounded): the connection is not reused.
    if (e instanceof RequestTooLargeError) c.header("Connection", "close");
    return c.json(e.toJSON(), e.status);
  });
  app.notFound((c) => {
    const e = new NotFoundError(`no route for ${c.req.method} ${c.req.path}`);
    return c.json(e.toJSON(), e.status);
  });

  app.get("/health", function health(c) {
    const r = opts.backend.readiness();
    return c.json({ status: r.ready ? "ready" : "not_ready", ...r }, r.ready ? 200 : 503);
  });
  app.get("/metrics", function prometheus(c) {
    return c.body(metrics.registry.render(), 200, { "content-type": PROMETHEUS_CONTENT_TYPE });
  });
  app.get("/v1/models", function models(c) {
    return c.json({ object: "list", data: [{ id: opts.modelName, object: "model", created: 0, owned_by: "trtd" }] });
  });

  /**
   * Runs a generation, as SSE or as one JSON body. `pieces` turns the text stream into the stream's items (the
   * text deltas themselves, or reasoning/content pieces); `deltaJson` is `delta` serialised (a jsonTemplate, for speed).
   */
  async function respond<T>(
    c: Context,
    stream: { stream: boolean; includeUsage: boolean },
    req: ReturnType<typeof buildGenerateRequest>,
    stop: string[],
    /** One choice's response shape and logprobs collector (both hold per-choice state): called once per choice. */
    make: () => { shape: ChoiceShape<T> & { deltaJson: (item: T) => string }; logprobs?: LogprobsCollector },
    choices: { n: number; seed: number | undefined },
  ) {
    if (choices.n > 1) {
      const reqs = Array.from({ length: choices.n }, (_, i) => choiceRequest(req, i, choices.seed));
      return respondChoices(c, deps, reqs, stop, stream, reqs.map(() => make()));
    }
    const { shape, logprobs } = make();
    const arrival = c.get("arrival");
    const signal = c.req.raw.signal;
    if (!stream.stream) {
      const gen = runGeneration(deps, req, stop, arrival, signal, logprobs);
      let text = "";
      for (;;) {
        const step = await gen.next();
        if (step.done) return c.json(shape.whole(text, step.value));
        text += step.value;
      }
    }
    // Streaming: the first item is awaited before the response starts, so a failure before any output is
    // still an HTTP error with OpenAI error JSON; later failures are sent as an SSE error event.
    const gen = shape.pieces(runGeneration(deps, req, stop, arrival, signal, logprobs));
    const first = await gen.next();
    // Under @hono/node-server, events go straight onto Node's response (sse-writer.ts); app.request() without a
    // Node server (tests of the HTTP layer alone) takes hono's streamSSE.
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    if (outgoing) {
      const sse = new NodeSseWriter(outgoing, c.newResponse(null).headers);
      const delta = shape.deltaJson;
      void (async () => {
        try {
          // The role chunk and the first delta leave in one write.
          if (shape.first) await sse.send(JSON.stringify(shape.first()));
          let step = first;
          if (!step.done) {
            await sse.sendNow(delta(step.value));
            step = await gen.next();
          }
          while (!step.done && !sse.aborted) {
            await sse.send(delta(step.value));
            step = await gen.next();
          }
          if (step.done) {
            await sse.send(JSON.stringify(shape.last(step.value)));
            if (stream.includeUsage) await sse.send(JSON.stringify(shape.usage(step.value)));
            await sse.send("[DONE]");
          }
        } catch (err) {
          if (!sse.aborted) await sse.send(JSON.stringify(toApiError(err).toJSON())).catch(() => {});
        } finally {
          sse.end();
          await gen.return(undefined as never).catch(() => {}); // ends the backend stream if still open: cancels in the workers
        }
      })();
      // @hono/node-server's marker object for "written by the handler" (a new Response would be written again).
      return RESPONSE_ALREADY_SENT;
    }
    return streamSSE(c, async (sse) => {
      const abort = new AbortController();
      sse.onAbort(() => abort.abort());
      try {
        if (shape.first) await sse.writeSSE({ data: JSON.stringify(shape.first()) });
        let step = first;
        while (!step.done) {
          await sse.writeSSE({ data: JSON.stringify(shape.delta(step.value)) });
          if (abort.signal.aborted) break;
          step = await gen.next();
        }
        if (step.done) {
          await sse.writeSSE({ data: JSON.stringify(shape.last(step.value)) });
          if (stream.includeUsage) await sse.writeSSE({ data: JSON.stringify(shape.usage(step.value)) });
          await sse.writeSSE({ data: "[DONE]" });
        }
      } catch (err) {
        const e = toApiError(err);
        if (!abort.signal.aborted) await sse.writeSSE({ data: JSON.stringify(e.toJSON()) });
      } finally {
        await gen.return(undefined as never); // ends the backend stream if still open: cancels in the workers
      }
    });
  }

  app.post("/v1/chat/completions", async function chatCompletions(c) {
    const p = parseChatCompletion(await readJson(c), opts.modelName);
    traceStage?.("api.parsed");
    // `required` and a named function constrain decoding to a JSON schema of the calls (openai/tool-choice.ts), so
    // they need no tool-call format of the model's; `auto` reads the model's own format.
    const forced = p.tools && (p.toolChoice === "required" || typeof p.toolChoice === "object") ? p.toolChoice : undefined;
    if (p.tools && !forced && !opts.toolCalls) {
      throw new InvalidRequestError("'tools' with tool_choice \"auto\" needs a tool-call format, and this model has none (its chat template shows none; see --tool-call-parser)", "tools", ApiErrorCodes.unsupported);
    }
    if (forced && p.responseFormat) {
      throw new InvalidRequestError("'tool_choice' \"required\" or a named function cannot be combined with 'response_format': both constrain the output", "tool_choice");
    }
    const grammar = forced ? await checkToolGrammar(forced, p.tools!, p.parallelToolCalls) : p.responseFormat && (await checkResponseFormat(p.responseFormat));
    const promptTokens = await opts.codec.encodeChat(p.messages, { tools: p.tools, signal: c.req.raw.signal });
    traceStage?.("api.tokenized");
    const req = buildGenerateRequest(deps, {
      promptTokens,
      maxTokens: p.maxTokens,
      defaultMaxTokens: CHAT_DEFAULT_MAX_TOKENS,
      sampling: p.sampling,
      controls: p.controls,
      logprobs: p.logprobs,
      stop: p.stop,
      maxTokensParam: p.maxTokensParam,
      promptParam: "messages",
      grammar,
    });
    const common = { id: `chatcmpl-${c.get("requestId")}`, created: created(), model: opts.modelName };
    const u = p.stream.includeUsage;
    // The delta chunk's JSON around its text is serialised once per request.
    const contentDelta = jsonTemplate((s) => R.chatChunk(common, { content: s }, null, u));
    let reasoningTemplate: ((s: string) => string) | undefined; // built on the first reasoning piece (most requests have none)
    const reasoningDelta = (s: string) => (reasoningTemplate ??= jsonTemplate((x) => R.chatChunk(common, { reasoning_content: x }, null, u)))(s);
    const output: ChatOutputOptions = forced
      ? typeof forced === "object"
        ? { namedCall: forced.name }
        : { tools: { format: "call_list", parallel: p.parallelToolCalls } }
      : { reasoning: opts.reasoning, tools: p.tools && opts.toolCalls ? { format: opts.toolCalls, parallel: p.parallelToolCalls } : undefined };
    const choices = { n: p.n, seed: p.sampling.seed };
    // With logprobs, each chunk carries those of the tokens that arrived since the previous one; the last chunk
    // those left (tokens whose text was held back to the end). Without, the chunks keep their JSON templates.
    // One collector per choice (n > 1).
    const logprobsOf = () => {
      const lp = p.logprobs.logprobs ? new LogprobsCollector(opts.codec) : undefined;
      return {
        lp,
        lpNext: () => (lp ? chatLogprobs(lp.take()) : null),
        lpRest: (entries = lp?.take()) => (entries?.length ? chatLogprobs(entries) : null),
        lpAll: () => (lp ? chatLogprobs(lp.all()) : null),
      };
    };
    if (output.reasoning || output.tools || output.namedCall !== undefined) {
      // The same parsers split the whole text and the stream, so both give the same reasoning, content and calls.
      return respond<ChatPiece>(c, p.stream, req, p.stop, () => {
        const { lp, lpNext, lpRest, lpAll } = logprobsOf();
        const delta = (x: ChatPiece) => R.chatChunk(common, pieceDelta(x), null, u, lpNext());
        const shape = {
          whole: (text: string, r: GenerationResult) => R.chatCompletionFromParts(common, chatMessageParts(text, r, output), lpAll()),
          pieces: (gen: AsyncGenerator<string, GenerationResult>) => chatPieces(gen, output),
          first: () => R.chatChunk(common, { role: "assistant", content: "" }, null, u),
          delta,
          deltaJson: lp
            ? (x: ChatPiece) => JSON.stringify(delta(x))
            : (x: ChatPiece) => (x.kind === "content" ? contentDelta(x.text) : x.kind === "reasoning" ? reasoningDelta(x.text) : JSON.stringify(delta(x))),
          last: (r: GenerationResult) => R.chatChunk(common, {}, r.finishReason, u, lpRest()),
          usage: (r: GenerationResult) => R.chatUsageChunk(common, r),
        };
        return { shape, logprobs: lp };
      }, choices);
    }
    return respond<string>(c, p.stream, req, p.stop, () => {
      const { lp, lpNext, lpRest, lpAll } = logprobsOf();
      const delta = (text: string) => R.chatChunk(common, { content: text }, null, u, lpNext());
      const shape = {
        whole: (text: string, r: GenerationResult) => R.chatCompletion(common, text, r, lpAll()),
        pieces: (gen: AsyncGenerator<string, GenerationResult>) => gen,
        first: () => R.chatChunk(common, { role: "assistant", content: "" }, null, u),
        delta,
        deltaJson: lp ? (text: string) => JSON.stringify(delta(text)) : contentDelta,
        last: (r: GenerationResult) => R.chatChunk(common, {}, r.finishReason, u, lpRest()),
        usage: (r: GenerationResult) => R.chatUsageChunk(common, r),
      };
      return { shape, logprobs: lp };
    }, choices);
  });

  app.post("/v1/completions", async function completions(c) {
    const p = parseCompletion(await readJson(c), opts.modelName);
    let promptTokens: number[];
    if ("text" in p.prompt) promptTokens = await opts.codec.encode(p.prompt.text, c.req.raw.signal);
    else opts.codec.checkTokenIds((promptTokens = p.prompt.tokens));
    const req = buildGenerateRequest(deps, {
      promptTokens,
      maxTokens: p.maxTokens,
      defaultMaxTokens: COMPLETIONS_DEFAULT_MAX_TOKENS,
      sampling: p.sampling,
      controls: p.controls,
      logprobs: p.logprobs,
      stop: p.stop,
      maxTokensParam: "max_tokens",
      promptParam: "prompt",
    });
    const common = { id: `cmpl-${c.get("requestId")}`, created: created(), model: opts.modelName };
    const u = p.stream.includeUsage;
    return respond<string>(c, p.stream, req, p.stop, () => {
      // One collector per choice (n > 1).
      const lp = p.logprobs.logprobs ? new LogprobsCollector(opts.codec) : undefined;
      const lpOf = (entries: TokenLogprob[]) => (lp ? completionLogprobs(entries, lp.advanceTextOffset(entries)) : null);
      const lpNext = () => (lp ? lpOf(lp.take()) : null);
      const delta = (text: string) => R.completionChunk(common, text, null, u, lpNext());
      const shape = {
        whole: (text: string, r: GenerationResult) => R.completion(common, text, r, lp ? lpOf(lp.all()) : null),
        pieces: (gen: AsyncGenerator<string, GenerationResult>) => gen,
        delta,
        deltaJson: lp ? (text: string) => JSON.stringify(delta(text)) : jsonTemplate((text) => R.completionChunk(common, text, null, u)),
        last: (r: GenerationResult) => R.completionChunk(common, "", r.finishReason, u, lpNext()),
        usage: (r: GenerationResult) => R.completionUsageChunk(common, r),
      };
      return { shape, logprobs: lp };
    }, { n: p.n, seed: p.sampling.seed });
  });

  return { app, metrics, limits };
}
