import type { BenchRequest } from "./dataset.js";
import { SseParser } from "./sse.js";

/** Which OpenAI endpoint to call: `/v1/chat/completions` (messages) or `/v1/completions` (prompt). */
export type Endpoint = "chat" | "completions";

export interface ClientOptions {
  /** Server root, e.g. `http://127.0.0.1:8000` (with or without a trailing `/v1`). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** [endpoint="chat"] */
  endpoint?: Endpoint;
  /** Extra JSON fields merged into every request body (e.g. `{"ignore_eos": true}` for servers that have it). */
  extraBody?: Record<string, unknown>;
  /** [requestTimeoutMs=60000] A request running longer is aborted and recorded as failed. */
  requestTimeoutMs?: number;
}

/** What one request measured. Times in milliseconds; `sentAtMs` is relative to the run's start. */
export interface RequestRecord {
  index: number;
  /** When the arrival process scheduled it. */
  scheduledAtMs: number;
  /** When it was actually sent (later than scheduled when the concurrency limit held it back). */
  sentAtMs: number;
  ok: boolean;
  error?: string;
  httpStatus?: number;
  /** Time to the first content delta. */
  ttftMs?: number;
  /** Gaps between consecutive content deltas. */
  itlMs: number[];
  /** Time per output token after the first: (e2e - ttft) / (outputTokens - 1); undefined for one token. */
  tpotMs?: number;
  e2eMs: number;
  /** usage.prompt_tokens when the server sent usage. */
  promptTokens?: number;
  /** usage.completion_tokens when sent, else the number of content deltas. */
  outputTokens: number;
  /** Content deltas seen (one per token on servers that stream token by token). */
  contentDeltas: number;
  finishReason?: string;
}

export function endpointUrl(baseUrl: string, endpoint: Endpoint): string {
  const root = baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
  return `${root}/v1/${endpoint === "chat" ? "chat/completions" : "completions"}`;
}

export function requestBody(opts: ClientOptions, req: BenchRequest): Record<string, unknown> {
  const common = {
    model: opts.model,
    max_tokens: req.maxTokens,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  const input = (opts.endpoint ?? "chat") === "chat" ? { messages: [{ role: "user", content: req.prompt }] } : { prompt: req.prompt };
  return { ...common, ...input, ...opts.extraBody };
}

interface Chunk {
  choices?: { delta?: { content?: string | null }; text?: string | null; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

/**
 * Sends one streaming request and times it: TTFT at the first content delta, an inter-token gap per further
 * delta, end-to-end at the end of the stream. Never throws for server or network failures: they come back as a
 * record with `ok: false` and the error text. The body is always consumed or cancelled before returning.
 */
export async function sendStreamingRequest(
  opts: ClientOptions,
  req: BenchRequest,
  meta: { index: number; scheduledAtMs: number; runStart: number },
  signal?: AbortSignal,
): Promise<RequestRecord> {
  const timeout = AbortSignal.timeout(opts.requestTimeoutMs ?? 60_000);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const start = performance.now();
  const rec: RequestRecord = {
    index: meta.index,
    scheduledAtMs: meta.scheduledAtMs,
    sentAtMs: start - meta.runStart,
    ok: false,
    itlMs: [],
    e2eMs: 0,
    outputTokens: 0,
    contentDeltas: 0,
  };
  let last = start;
  let usageTokens: number | undefined;
  let done = false;
  try {
    const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
    if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
    const res = await fetch(endpointUrl(opts.baseUrl, opts.endpoint ?? "chat"), {
      method: "POST",
      headers,
      body: JSON.stringify(requestBody(opts, req)),
      signal: combined,
    });
    rec.httpStatus = res.status;
    if (!res.ok || !res.body) {
      const text = (await res.text().catch(() => "")).slice(0, 500);
      rec.error = `HTTP ${res.status}: ${text}`;
      return finish();
    }
    const parser = new SseParser();
    const handle = (data: string): void => {
      if (data === "[DONE]") {
        done = true;
        return;
      }
      const chunk = JSON.parse(data) as Chunk;
      if (chunk.error) throw new Error(`server error in stream: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
      const choice = chunk.choices?.[0];
      const content = choice?.delta?.content ?? choice?.text ?? "";
      if (content !== "") {
        const now = performance.now();
        if (rec.contentDeltas === 0) rec.ttftMs = now - start;
        else rec.itlMs.push(now - last);
        last = now;
        rec.contentDeltas++;
      }
      if (choice?.finish_reason) rec.finishReason = choice.finish_reason;
      if (chunk.usage) {
        if (typeof chunk.usage.prompt_tokens === "number") rec.promptTokens = chunk.usage.prompt_tokens;
        if (typeof chunk.usage.completion_tokens === "number") usageTokens = chunk.usage.completion_tokens;
      }
    };
    for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
      for (const ev of parser.push(bytes)) handle(ev.data);
    }
    for (const ev of parser.end()) handle(ev.data);
    if (!done) rec.error = "stream ended without [DONE]";
    else if (rec.contentDeltas === 0) rec.error = "no content in the stream";
    else rec.ok = true;
  } catch (err) {
    rec.error = timeout.aborted ? `request timed out after ${opts.requestTimeoutMs ?? 60_000} ms` : signal?.aborted ? "aborted: run stopped" : errorText(err);
  }
  return finish();

  function finish(): RequestRecord {
    rec.e2eMs = performance.now() - start;
    rec.outputTokens = usageTokens ?? rec.contentDeltas;
    if (rec.ok && rec.ttftMs !== undefined && rec.outputTokens > 1) {
      rec.tpotMs = (last - start - rec.ttftMs) / (rec.outputTokens - 1);
    }
    return rec;
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : "";
    return `${err.name}: ${err.message}${cause}`;
  }
  return String(err);
}
