// Plain fetch clients for the api: one JSON request, or one SSE stream read event by event (with timings).
import { request as httpRequest } from "node:http";

export interface JsonReply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

export async function postJson(url: string, body: unknown, init: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<JsonReply> {
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: init.signal ?? AbortSignal.timeout(60_000),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left as text: the caller's assertion shows it
  }
  return { status: r.status, body: parsed, headers: r.headers };
}

export interface StreamResult {
  status: number;
  /** The error JSON of a non-200 answer, or of an SSE error event. */
  error?: { message: string; code: string; type: string };
  text: string;
  finishReason: string | null;
  /** Content chunks received. */
  chunks: number;
  sawDone: boolean;
  /** Longest silence between two events after the first, ms. */
  maxGapMs: number;
  totalMs: number;
}

/**
 * Streams a completion and reads it to the end. `onChunk` sees the number of content chunks so far (to kill
 * something mid-stream); the whole read is bounded by `timeoutMs` (an abort then rejects).
 */
export async function streamCompletion(
  apiUrl: string,
  body: Record<string, unknown>,
  opts: { onChunk?: (n: number) => void; signal?: AbortSignal; timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<StreamResult> {
  const started = performance.now();
  const signal = opts.signal ?? AbortSignal.timeout(opts.timeoutMs ?? 60_000);
  const r = await fetch(`${apiUrl}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...opts.headers },
    body: JSON.stringify({ model: "tiny", stream: true, ...body }),
    signal,
  });
  const res: StreamResult = { status: r.status, text: "", finishReason: null, chunks: 0, sawDone: false, maxGapMs: 0, totalMs: 0 };
  if (r.status !== 200) {
    res.error = ((await r.json()) as { error: StreamResult["error"] }).error;
    res.totalMs = performance.now() - started;
    return res;
  }
  const decoder = new TextDecoder();
  let buf = "";
  let last = 0;
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event.split("\n").find((l) => l.startsWith("data: "))?.slice(6);
      if (data === undefined) continue;
      const now = performance.now();
      if (last) res.maxGapMs = Math.max(res.maxGapMs, now - last);
      last = now;
      if (data === "[DONE]") {
        res.sawDone = true;
        continue;
      }
      const j = JSON.parse(data) as { error?: StreamResult["error"]; choices?: Array<{ text: string; finish_reason: string | null }> };
      if (j.error) {
        res.error = j.error;
        continue;
      }
      for (const c of j.choices ?? []) {
        if (c.text) {
          res.text += c.text;
          res.chunks++;
          opts.onChunk?.(res.chunks);
        }
        if (c.finish_reason) res.finishReason = c.finish_reason;
      }
    }
  }
  res.totalMs = performance.now() - started;
  return res;
}

/** Prompts that differ, long enough for remote prefill with `--disagg-min-prompt-tokens 1`. */
export function prompts(n: number): string[] {
  const topics = ["the sea", "a red fox", "winter mornings", "old clocks", "the moon", "rivers", "a lighthouse", "bread", "trains", "owls", "rain", "mountains"];
  return Array.from({ length: n }, (_, i) => `Write a short story about ${topics[i % topics.length]}, number ${i}. Once upon a time`);
}

/**
 * A POST over node:http that keeps the answer even when the server answers before reading the whole body and
 * closes the connection (what it does to a body over its limit; fetch reports that as a failure).
 */
export function rawPost(url: string, body: Buffer, headers: Record<string, string>, timeoutMs = 30_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(url, { method: "POST", agent: false, headers: { ...headers, "content-length": String(body.length) }, timeout: timeoutMs }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString() }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    req.end(body);
  });
}
