// Explicitly named test doubles for HTTP-layer tests that need no workers. The end-to-end tests use the real
// tokenizer, request plane and executor.
import type { DecodeChunk, GenerateRequest } from "@trtd/apps-common";
import { InvalidRequestError, type GenerationBackend, type Readiness, type StreamingDetokenizer, type TextCodec } from "../../src/index.js";

/** TEST DOUBLE: one token per UTF-8 byte; token 256 is eos. Stop strings are found on the decoded text. */
export class ByteCodecTestDouble implements TextCodec {
  readonly eosTokenIds = [256];
  async encode(text: string): Promise<number[]> {
    return [...Buffer.from(text, "utf8")];
  }
  async encodeChat(messages: { role: string; content: string }[]): Promise<number[]> {
    return this.encode(messages.map((m) => `<${m.role}>${m.content}`).join("") + "<assistant>");
  }
  checkTokenIds(ids: number[], param = "prompt"): void {
    if (ids.some((t) => t > 256)) throw new InvalidRequestError("token id out of range", param);
  }
  tokenBytes(id: number): Uint8Array {
    return id < 256 ? Uint8Array.of(id) : new Uint8Array(0);
  }
  createDetokenizer(stop: string[]): StreamingDetokenizer {
    let bytes: number[] = [];
    let emitted = 0;
    let done = false;
    return {
      push(tokens) {
        bytes = bytes.concat(tokens.filter((t) => t < 256));
        const text = Buffer.from(bytes).toString("utf8");
        for (const s of stop) {
          const at = text.indexOf(s);
          if (at >= 0) {
            const out = text.slice(emitted, at);
            emitted = at;
            done = true;
            return { text: out, stopped: true };
          }
        }
        // Hold back a tail that could still become a stop string.
        let safe = text.length;
        for (const s of stop) {
          for (let k = Math.min(s.length - 1, text.length); k > 0; k--) {
            if (text.endsWith(s.slice(0, k))) {
              safe = Math.min(safe, text.length - k);
              break;
            }
          }
        }
        const out = text.slice(emitted, Math.max(emitted, safe));
        emitted = Math.max(emitted, safe);
        return { text: out, stopped: false };
      },
      finish: () => (done ? "" : Buffer.from(bytes).toString("utf8").slice(emitted)),
    };
  }
}

/** TEST DOUBLE: replays a fixed token script per request, one token per chunk, and records cancellations. */
export class ScriptedBackendTestDouble implements GenerationBackend {
  readonly requests: GenerateRequest[] = [];
  /** Requests that saw their signal aborted. */
  cancelled = 0;
  /** Streams not yet ended (by completion, abort, or the consumer closing them). */
  open = 0;
  /** Tokens handed out over all requests. */
  yielded = 0;
  constructor(
    private readonly script: (req: GenerateRequest) => number[],
    private readonly ready = true,
    private readonly tokenDelayMs = 0,
  ) {}
  readiness(): Readiness {
    return { ready: this.ready, decodeWorkers: this.ready ? 1 : 0, prefillWorkers: 0, stalledWorkers: 0 };
  }
  async *generate(req: GenerateRequest, signal: AbortSignal): AsyncGenerator<DecodeChunk> {
    this.requests.push(req);
    this.open++;
    try {
      const tokens = this.script(req).slice(0, req.maxTokens);
      for (let i = 0; i < tokens.length; i++) {
        if (this.tokenDelayMs) await new Promise((r) => setTimeout(r, this.tokenDelayMs));
        if (signal.aborted) {
          this.cancelled++;
          return;
        }
        const last = i === tokens.length - 1;
        const eos = req.stopTokenIds.includes(tokens[i]);
        this.yielded++;
        yield { tokens: [tokens[i]], ...(i === 0 ? { mode: "aggregated" as const } : {}), ...(last || eos ? { finishReason: eos ? "stop" : "length" } : {}) };
        if (eos) return;
      }
    } finally {
      this.open--;
    }
  }
}
