/**
 * TEST DOUBLE of an OpenAI-compatible streaming server, for the load generator's tests only (never shipped, no
 * model behind it). It streams `max_tokens` content deltas as SSE: the first after `ttftMs`, then one every
 * `itlMs`, then a usage chunk (when stream_options.include_usage) and `[DONE]`. With `serialPrefillMs`,
 * "prefills" queue behind each other (one at a time, that long each), so TTFT grows with load as on a real
 * server. `splitWrites` writes every event in two pieces to exercise partial-frame parsing in the client.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TestDoubleOptions {
  ttftMs?: number;
  itlMs?: number;
  serialPrefillMs?: number;
  splitWrites?: boolean;
  /** Answer this status with an OpenAI error body instead of streaming (e.g. 429). */
  failStatus?: number;
  /** [port=0] (OS-chosen) and [host="127.0.0.1"] */
  port?: number;
  host?: string;
}

export interface OpenAITestDouble {
  baseUrl: string;
  /** Requests received, with their parsed bodies. */
  bodies: Record<string, unknown>[];
  /** Streams open right now (0 after every client has finished or gone). */
  openStreams(): number;
  close(): Promise<void>;
}

export async function startOpenAITestDouble(opts: TestDoubleOptions = {}): Promise<OpenAITestDouble> {
  const { ttftMs = 20, itlMs = 10, serialPrefillMs = 0, splitWrites = false } = opts;
  const bodies: Record<string, unknown>[] = [];
  let open = 0;
  let prefillFreeAt = 0;
  const timers = new Set<NodeJS.Timeout>();
  const after = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET" && req.url === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "test-double", object: "model" }] }));
      return;
    }
    const chat = req.url === "/v1/chat/completions";
    if (req.method !== "POST" || (!chat && req.url !== "/v1/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    let raw = "";
    for await (const c of req) raw += c;
    const body = JSON.parse(raw) as Record<string, unknown>;
    bodies.push(body);
    if (opts.failStatus) {
      res.writeHead(opts.failStatus, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "test double failure" } }));
      return;
    }
    const n = Number(body.max_tokens ?? 16);
    const usage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    open++;
    let gone = false;
    res.on("close", () => (gone = true));
    try {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.flushHeaders();
      // A single "prefill engine": this request's prefill starts when the previous one ended.
      const now = Date.now();
      const prefillStart = Math.max(now, prefillFreeAt);
      prefillFreeAt = prefillStart + serialPrefillMs;
      await after(prefillStart - now + serialPrefillMs + ttftMs);
      const send = (obj: unknown) => {
        const frame = `data: ${typeof obj === "string" ? obj : JSON.stringify(obj)}\n\n`;
        if (!splitWrites) return void res.write(frame);
        const cut = Math.floor(frame.length / 2);
        res.write(frame.slice(0, cut));
        res.write(frame.slice(cut));
      };
      for (let i = 0; i < n && !gone; i++) {
        if (i > 0) await after(itlMs);
        const text = ` tok${i}`;
        const last = i === n - 1;
        send(
          chat
            ? { object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: text }, finish_reason: last ? "length" : null }] }
            : { object: "text_completion", choices: [{ index: 0, text, finish_reason: last ? "length" : null }] },
        );
      }
      if (usage && !gone) send({ choices: [], usage: { prompt_tokens: 7, completion_tokens: n, total_tokens: 7 + n } });
      if (!gone) send("[DONE]");
      res.end();
    } finally {
      open--;
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy(err as Error);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    bodies,
    openStreams: () => open,
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
