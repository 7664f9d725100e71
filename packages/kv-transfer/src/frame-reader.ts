import { decodeHeader, HEADER_BYTES, MAX_CONTROL_BYTES, type FrameHeader } from "./wire.js";
import { KvProtocolError } from "./errors.js";

/** Splits a byte stream of small frames (the server side only receives control frames) into header + payload. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | null = null;

  /** Feeds bytes; calls `onFrame` for every complete frame. Throws KvProtocolError on garbage. */
  push(data: Buffer, onFrame: (h: FrameHeader, payload: Buffer) => void): void {
    this.chunks.push(data);
    this.buffered += data.length;
    for (;;) {
      if (!this.header) {
        if (this.buffered < HEADER_BYTES) return;
        this.header = decodeHeader(this.take(HEADER_BYTES));
        if (this.header.length > MAX_CONTROL_BYTES) {
          throw new KvProtocolError(`control frame of ${this.header.length} bytes exceeds ${MAX_CONTROL_BYTES}`);
        }
      }
      if (this.buffered < this.header.length) return;
      const h = this.header;
      this.header = null;
      onFrame(h, this.take(h.length));
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

export function parseJson<T>(payload: Buffer, what: string): T {
  try {
    return JSON.parse(payload.toString("utf8")) as T;
  } catch (err) {
    throw new KvProtocolError(`${what}: payload is not JSON`, { cause: err });
  }
}
