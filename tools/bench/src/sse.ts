import { SseProtocolError } from "./errors.js";

/** One server-sent event: its `event:` name (default "message") and its `data:` lines joined by "\n". */
export interface SseEvent {
  event: string;
  data: string;
}

/** [maxEventBytes=8 MiB] An event this large without a blank line means a broken stream, not a slow one. */
const DEFAULT_MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * Incremental SSE parser (the WHATWG event-stream rules that matter for OpenAI streams): bytes may be split
 * anywhere, including inside a line, a CRLF pair or a UTF-8 sequence. Feed bytes with `push`, which returns the
 * events completed so far; `end` flushes a final event not followed by a blank line.
 */
export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private buffer = "";
  private data: string[] = [];
  private eventName = "";
  private pendingCr = false;
  private readonly maxChars: number;

  constructor(options: { maxEventChars?: number } = {}) {
    this.maxChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  }

  push(bytes: Uint8Array | string): SseEvent[] {
    let text = typeof bytes === "string" ? bytes : this.decoder.decode(bytes, { stream: true });
    // A CR ended the previous chunk: an LF starting this one belongs to the same line break.
    if (this.pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      let end: number;
      let next: number;
      if (cr === -1 && lf === -1) break;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === this.buffer.length) {
          this.pendingCr = true;
          next = cr + 1;
        } else next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buffer.slice(start, end), events);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    const held = this.buffer.length + this.data.reduce((n, d) => n + d.length, 0);
    if (held > this.maxChars) throw new SseProtocolError(`SSE event larger than ${this.maxChars} characters`);
    return events;
  }

  /** Ends the stream; returns a last event that had data but no terminating blank line. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    const rest = this.buffer + this.decoder.decode();
    this.buffer = "";
    if (rest !== "") this.line(rest, events);
    if (this.data.length > 0) this.line("", events);
    return events;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === "") {
      if (this.data.length > 0) events.push({ event: this.eventName || "message", data: this.data.join("\n") });
      this.data = [];
      this.eventName = "";
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.eventName = value;
    // id and retry do not matter to a benchmark client.
  }
}
