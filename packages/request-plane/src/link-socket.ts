import type { Socket } from "node:net";
import { PayloadTooLargeError } from "./errors.js";
import type { TransportPublishOptions } from "./transport.js";

/*
 * The direct link's framing (docs/design/request-plane-security.md and the README's "Direct data path"). Every
 * frame, both ways, little-endian:
 *
 *   u32 length of what follows | u8 type | u16 subject length | u16 reply length | subject | reply | data
 *
 * Subjects are the plane's own (ASCII) NATS subjects: the link carries exactly the messages that would have gone
 * through nats-server, with the same codec bytes as `data`. Types:
 *   hello    client → server, first frame: subject = instance id, data = the instance's link secret (UTF-8)
 *   welcome  server → client: the secret matched; messages may follow
 *   refused  server → client: data = the reason (UTF-8); the server then ends the connection
 *   msg      a request-plane message (a request, a reply frame, a cancel or a credit)
 *   nr       server → client, "no responders" for the reply subject in `subject` (the instance stopped serving)
 */
export const LinkFrameType = { Hello: 1, Welcome: 2, Refused: 3, Msg: 4, NoResponders: 5 } as const;
export type LinkFrameType = (typeof LinkFrameType)[keyof typeof LinkFrameType];

/** type + two lengths, after the u32 length. */
const FRAME_HEAD = 5;
/** Subjects and reply subjects of a frame are at most this long (u16). */
const MAX_SUBJECT = 0xffff;
const EMPTY = new Uint8Array(0);

export type LinkFrameHandler = (type: number, subject: string, reply: string | undefined, data: Uint8Array) => void;

/** Writes of one event-loop tick are coalesced into one socket write (as nats.js's microtask flush does). */
const INITIAL_OUT = 16 * 1024;

/**
 * One end of a direct link: length-prefixed frames over a TCP socket (Nagle off), writes coalesced per tick, a
 * frame bound on what it reads. The owner (a {@link LinkListener} connection or a pooled client link) decides what
 * frames mean; this class only moves them.
 */
export class LinkSocket {
  private out = Buffer.allocUnsafe(INITIAL_OUT);
  private outPos = 0;
  private flushQueued = false;
  /** Bytes of a frame not yet complete: chunks and their total length. */
  private partial: Buffer[] = [];
  private partialLen = 0;
  private closed = false;

  constructor(
    readonly socket: Socket,
    /** Largest message payload accepted (the transport's maxPayload); a bigger frame is a protocol error. */
    private readonly maxPayload: number,
    private readonly onFrame: LinkFrameHandler,
    /** Called once, when the socket is gone (either side closed it, or it failed). */
    onClose: (err?: Error) => void,
  ) {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    let closeErr: Error | undefined;
    socket.on("error", (err) => (closeErr ??= err));
    socket.once("close", () => {
      this.closed = true;
      onClose(closeErr);
    });
  }

  get isClosed(): boolean {
    return this.closed || this.socket.destroyed;
  }

  /** The plane's publish shape, so a link can stand in for the transport on one request. */
  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void {
    if (data.byteLength > this.maxPayload) throw new PayloadTooLargeError(data.byteLength, this.maxPayload, "message");
    this.write(LinkFrameType.Msg, subject, options?.reply, data);
  }

  write(type: LinkFrameType, subject: string, reply: string | undefined, data: Uint8Array = EMPTY): void {
    if (this.isClosed) return; // the owner fails what was in flight when the close event comes
    const sLen = subject.length;
    const rLen = reply === undefined ? 0 : reply.length;
    if (sLen > MAX_SUBJECT || rLen > MAX_SUBJECT) throw new RangeError("direct link: subject longer than 65535");
    const n = FRAME_HEAD + sLen + rLen + data.byteLength;
    this.ensure(4 + n);
    const b = this.out;
    let p = this.outPos;
    b.writeUInt32LE(n, p);
    b[p + 4] = type;
    b.writeUInt16LE(sLen, p + 5);
    b.writeUInt16LE(rLen, p + 7);
    p += 9;
    p += b.write(subject, p, sLen, "latin1");
    if (rLen) p += b.write(reply!, p, rLen, "latin1");
    b.set(data, p);
    this.outPos = p + data.byteLength;
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  private ensure(n: number): void {
    if (this.outPos + n <= this.out.length) return;
    let size = this.out.length * 2;
    while (size < this.outPos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.out.copy(next, 0, 0, this.outPos);
    this.out = next;
  }

  /** Hands what this tick wrote to the socket: one copy per tick (the socket keeps the chunk until sent). */
  readonly flush = (): void => {
    this.flushQueued = false;
    if (this.outPos === 0 || this.isClosed) {
      this.outPos = 0;
      return;
    }
    const chunk = Buffer.allocUnsafe(this.outPos);
    this.out.copy(chunk, 0, 0, this.outPos);
    this.outPos = 0;
    this.socket.write(chunk);
  };

  /** Sends what is queued, then closes; destroys it if the peer has not closed within `lingerMs`. */
  end(lingerMs = 1000): void {
    if (this.isClosed) return;
    this.flush();
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), lingerMs);
    t.unref();
    this.socket.once("close", () => clearTimeout(t));
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.partialLen > 0) {
      // a frame is being assembled: wait until it is whole before concatenating (one copy per frame)
      this.partial.push(chunk);
      this.partialLen += chunk.length;
      const head = this.partial[0].length >= 4 ? this.partial[0] : Buffer.concat(this.partial);
      if (head.length >= 4 && this.partialLen < 4 + head.readUInt32LE(0)) return;
      buf = Buffer.concat(this.partial, this.partialLen);
      this.partial = [];
      this.partialLen = 0;
    }
    let off = 0;
    const max = FRAME_HEAD + 2 * MAX_SUBJECT + this.maxPayload;
    while (buf.length - off >= 4) {
      const n = buf.readUInt32LE(off);
      if (n < FRAME_HEAD || n > max) {
        this.socket.destroy(new Error(`direct link: frame of ${n} bytes is outside 5..${max}`));
        return;
      }
      if (buf.length - off - 4 < n) break;
      const p = off + 4;
      const sLen = buf.readUInt16LE(p + 1);
      const rLen = buf.readUInt16LE(p + 3);
      if (FRAME_HEAD + sLen + rLen > n) {
        this.socket.destroy(new Error("direct link: subject lengths exceed the frame"));
        return;
      }
      const s0 = p + FRAME_HEAD;
      const subject = buf.toString("latin1", s0, s0 + sLen);
      const reply = rLen ? buf.toString("latin1", s0 + sLen, s0 + sLen + rLen) : undefined;
      off = p + n;
      this.onFrame(buf[p], subject, reply, buf.subarray(s0 + sLen + rLen, off));
      if (this.isClosed) return;
    }
    if (off < buf.length) {
      this.partial.push(buf.subarray(off));
      this.partialLen = buf.length - off;
    }
  }
}
