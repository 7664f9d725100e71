import { connect as netConnect, type Socket } from "node:net";
import { closeSync, openSync, readSync } from "node:fs";
import { copyWithCrc32c, crc32c, crcOfSlices, digestOfChunks } from "./checksum.js";
import { mapFile, type Mapping } from "./native.js";
import {
  errorFromCode,
  KvAbortedError,
  KvChecksumError,
  KvClosedError,
  KvPeerLostError,
  KvProtocolError,
  KvTimeoutError,
  KvTransferError,
  KvTransportError,
} from "./errors.js";
import type { KvHandle } from "./handle.js";
import type { SegmentMap } from "./segments.js";
import {
  controlFrame,
  decodeHeader,
  encodeHeader,
  FrameType,
  HEADER_BYTES,
  MAX_CONTROL_BYTES,
  type ErrorBody,
  type FrameHeader,
  type PullBegin,
  type PullRequest,
  type ReleaseBody,
  expectedDigest,
} from "./wire.js";

interface ClientRing {
  fd: number;
  map: Mapping | null;
  slots: number;
  slotBytes: number;
}

interface PullJob {
  handle: KvHandle;
  idBytes: Buffer;
  /** null for a lease (no bytes come) */
  sink: SegmentMap | null;
  mode: "tcp" | "shm" | "lease";
  nextSeq: number;
  crcs: Uint32Array;
  /** What the chunk CRCs must add up to: the handle's digest, or a lazy offer's from BEGIN. */
  digest: string | undefined;
  begun: boolean;
  ring: ClientRing | null;
  resolve: () => void;
  reject: (e: KvTransferError) => void;
  cleanup: () => void;
}

/**
 * One pooled connection to a KvOfferServer. Received KV bytes go straight from the kernel into the sink's views
 * (net's `onread` with a buffer chosen per read), and their CRC is computed on the just-written, cache-hot bytes:
 * no JS-heap copy and no per-read allocation.
 */
export class PullConnection {
  readonly key: string;
  private sock!: Socket;
  private readonly hdr = Buffer.alloc(HEADER_BYTES);
  private hdrFill = 0;
  private mode: "header" | "control" | "data" = "header";
  private ctrl: Buffer | null = null;
  private ctrlFill = 0;
  private ctrlHeader: FrameHeader | null = null;
  private dataPos = 0;
  private dataLeft = 0;
  private dataCrc = 0;
  private dataHeader: FrameHeader | null = null;
  private job: PullJob | null = null;
  private dead = false;
  /** The shared-memory ring of this connection, kept across pulls like the server's. */
  private ring: ClientRing | null = null;
  /** Offer id this connection holds a cuda-ipc lease on (until ackLease, a fallback pull, or destroy). */
  private leased: string | null = null;

  private constructor(key: string) {
    this.key = key;
  }

  get usable(): boolean {
    return !this.dead && !this.job && this.leased === null;
  }

  /** Whether the server still holds this connection's lease on `offerId` (the connection has not dropped). */
  holdsLease(offerId: string): boolean {
    return !this.dead && this.leased === offerId;
  }

  static connect(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<PullConnection> {
    const c = new PullConnection(`${host}:${port}`);
    return new Promise((resolve, reject) => {
      const fail = (e: KvTransferError) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        c.sock.destroy();
        reject(e);
      };
      const onAbort = () => fail(new KvAbortedError("aborted while connecting", { cause: signal?.reason }));
      const timer = setTimeout(() => fail(new KvTimeoutError(`connect to ${c.key} timed out after ${timeoutMs} ms`)), timeoutMs);
      c.sock = netConnect({
        host,
        port,
        noDelay: true,
        onread: { buffer: () => c.nextBuffer(), callback: (n: number, b: Uint8Array) => c.onRead(n, b) },
      });
      c.sock.once("connect", () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        c.sock.on("error", () => {
          /* 'close' follows */
        });
        c.sock.on("close", () => c.onClose());
        resolve(c);
      });
      c.sock.once("error", (err) => fail(new KvPeerLostError(`cannot connect to offering side ${c.key}: ${err.message}`, { cause: err })));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Writes one frame and closes the connection gracefully (bounded). */
  sendAndClose(frame: Buffer, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.destroy();
        resolve();
      }, timeoutMs);
      this.sock.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.dead = true;
      this.sock.end(frame);
    });
  }

  /**
   * ACK or NACK outside a transfer on this (idle, pooled) connection: one write, no reply awaited (the server
   * answers only a refusal, which ends this connection). A single-copy shm pull releases its offer this way.
   */
  sendRelease(handle: KvHandle, type: "ack" | "nack", body: ReleaseBody): void {
    if (this.dead || this.job) throw new KvClosedError("connection not usable");
    this.write(controlFrame(type === "ack" ? FrameType.Ack : FrameType.Nack, body, Buffer.from(handle.id, "hex")));
  }

  destroy(): void {
    this.dead = true;
    this.sock.destroy();
    this.closeRing();
  }

  /**
   * Pulls one offer over this connection; resolves after the data is verified and the ACK is written. On a
   * connection leased for the same offer (cuda-ipc, device import failed) this is the fallback: the server sends
   * the offer's bytes instead.
   */
  pull(handle: KvHandle, sink: SegmentMap, mode: "tcp" | "shm", o: PullConnectionOptions): Promise<void> {
    return this.start(handle, sink, mode, o);
  }

  /**
   * cuda-ipc: asks the server to claim the offer for this connection and send nothing; resolves once it has
   * (BEGIN with `lease`). Then exactly one of: `ackLease` (the device copy is done: released), `pull` of the same
   * offer (fall back), `destroy` (released as failed).
   */
  lease(handle: KvHandle, o: PullConnectionOptions): Promise<void> {
    return this.start(handle, null, "lease", o);
  }

  /** Acknowledges a leased offer (the device copy is done and verified): the server releases the export. */
  ackLease(offerId: string): void {
    if (this.leased !== offerId) throw new KvProtocolError(`no lease on offer ${offerId} on this connection`);
    this.leased = null;
    this.write([encodeHeader({ type: FrameType.Ack, offerId: Buffer.from(offerId, "hex") })]);
  }

  private start(handle: KvHandle, sink: SegmentMap | null, mode: PullJob["mode"], o: PullConnectionOptions): Promise<void> {
    const fallback = mode !== "lease" && this.leased === handle.id;
    if (this.dead || this.job || (this.leased !== null && !fallback)) return Promise.reject(new KvClosedError("connection not usable"));
    this.leased = null;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => this.failJob(new KvAbortedError("pull aborted", { cause: o.signal?.reason }));
      const timer = setTimeout(() => this.failJob(new KvTimeoutError(`transfer of ${handle.bytes} bytes did not finish in time`)), Math.max(0, o.deadline - Date.now()));
      const onIdle = () => this.failJob(new KvTimeoutError(`no data from the offering side for ${o.idleMs} ms`));
      this.sock.setTimeout(o.idleMs, onIdle);
      this.job = {
        handle,
        idBytes: Buffer.from(handle.id, "hex"),
        sink,
        mode,
        nextSeq: 0,
        crcs: new Uint32Array(handle.checksum.chunks),
        digest: undefined,
        begun: false,
        ring: null,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          this.sock.setTimeout(0);
          this.sock.off("timeout", onIdle);
          o.signal?.removeEventListener("abort", onAbort);
        },
      };
      if (o.signal?.aborted) return onAbort();
      o.signal?.addEventListener("abort", onAbort, { once: true });
      const req: PullRequest = {
        offerId: handle.id,
        secret: handle.secret,
        fingerprint: handle.layout.fingerprint,
        transport: mode === "lease" ? "cuda-ipc" : mode,
        bytes: handle.bytes,
        digest: handle.checksum.digest,
        hostId: o.hostId,
      };
      this.write(controlFrame(FrameType.Pull, req, this.job.idBytes));
    });
  }

  private write(bufs: Buffer[]): void {
    if (bufs.length > 1) this.sock.cork();
    for (const b of bufs) this.sock.write(b);
    if (bufs.length > 1) this.sock.uncork();
  }

  /** Fails the current pull: the connection is dropped (the server releases the offer when it closes). */
  private failJob(e: KvTransferError): void {
    this.dead = true;
    this.sock.destroy(); // first: no further reads into the sink's memory
    const j = this.job;
    if (!j) return;
    this.job = null;
    j.cleanup();
    this.closeRing();
    j.reject(e);
  }

  private finishJob(): void {
    const j = this.job!;
    this.job = null;
    j.cleanup();
    this.write([encodeHeader({ type: FrameType.Ack, offerId: j.idBytes })]);
    j.resolve();
  }

  private closeRing(): void {
    const r = this.ring;
    this.ring = null;
    if (!r) return;
    r.map?.unmap();
    closeSync(r.fd);
  }

  private onClose(): void {
    this.dead = true;
    this.closeRing();
    if (this.job) this.failJob(new KvPeerLostError("connection to the offering side closed mid-transfer"));
  }

  // ---- the receive state machine (net onread: callback, then the buffer for the next read) ----

  private nextBuffer(): Uint8Array {
    if (this.mode === "data") return this.job!.sink!.sliceAt(this.dataPos, this.dataLeft);
    if (this.mode === "control") return this.ctrl!.subarray(this.ctrlFill);
    return this.hdr.subarray(this.hdrFill);
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    try {
      if (this.mode === "data") {
        this.dataCrc = crc32c(this.dataCrc, buf.subarray(0, n));
        this.dataPos += n;
        this.dataLeft -= n;
        if (this.dataLeft === 0) this.endChunk();
      } else if (this.mode === "control") {
        this.ctrlFill += n;
        if (this.ctrlFill === this.ctrl!.length) {
          const h = this.ctrlHeader!;
          const payload = this.ctrl!;
          this.mode = "header";
          this.ctrl = null;
          this.onControl(h, payload);
        }
      } else {
        this.hdrFill += n;
        if (this.hdrFill === HEADER_BYTES) {
          this.hdrFill = 0;
          this.onHeader(decodeHeader(this.hdr));
        }
      }
      return true;
    } catch (err) {
      const e = err instanceof KvTransferError ? err : new KvProtocolError(String(err), { cause: err });
      this.failJob(e);
      if (!this.job) this.destroy();
      return false;
    }
  }

  private onHeader(h: FrameHeader): void {
    const j = this.job;
    if (!j) throw new KvProtocolError(`unexpected frame ${h.type} on an idle connection`);
    if (h.type === FrameType.Begin || h.type === FrameType.Error) {
      if (h.length === 0 || h.length > MAX_CONTROL_BYTES) throw new KvProtocolError(`bad control frame length ${h.length}`);
      this.ctrlHeader = h;
      this.ctrl = Buffer.alloc(h.length);
      this.ctrlFill = 0;
      this.mode = "control";
      return;
    }
    if (!j.begun) throw new KvProtocolError(`frame ${h.type} before BEGIN`);
    if (!h.offerId.equals(j.idBytes)) throw new KvProtocolError("frame for another offer");
    if (h.type === FrameType.End) {
      if (j.nextSeq !== j.handle.checksum.chunks) throw new KvProtocolError(`END after ${j.nextSeq} of ${j.handle.checksum.chunks} chunks`);
      if (digestOfChunks(j.crcs) !== j.digest) throw new KvChecksumError("chunk checksums do not match the offer's digest");
      this.finishJob();
      return;
    }
    this.checkChunk(j, h);
    if (h.type === FrameType.Data && j.mode === "tcp") {
      this.dataHeader = h;
      this.dataPos = h.offset;
      this.dataLeft = h.length;
      this.dataCrc = 0;
      this.mode = "data";
      return;
    }
    if (h.type === FrameType.ShmChunk && j.mode === "shm") return this.readShmChunk(j, h);
    throw new KvProtocolError(`unexpected frame type ${h.type}`);
  }

  private checkChunk(j: PullJob, h: FrameHeader): void {
    const cb = j.handle.checksum.chunkBytes;
    const offset = h.seq * cb;
    if (h.seq !== j.nextSeq || h.offset !== offset || h.length !== Math.min(cb, j.handle.bytes - offset) || h.length === 0) {
      throw new KvProtocolError(`chunk ${h.seq} out of order or mis-sized (expected seq ${j.nextSeq})`);
    }
  }

  private endChunk(): void {
    const j = this.job!;
    const h = this.dataHeader!;
    this.mode = "header";
    if ((this.dataCrc >>> 0) !== h.crc) throw new KvChecksumError(`chunk ${h.seq} (bytes ${h.offset}..${h.offset + h.length}) failed its checksum`, h.seq);
    j.crcs[h.seq] = h.crc;
    j.nextSeq++;
  }

  private readShmChunk(j: PullJob, h: FrameHeader): void {
    const ring = j.ring;
    if (!ring || h.slot >= ring.slots) throw new KvProtocolError("SHM_CHUNK without an open ring or with a bad slot");
    const slices = j.sink!.slices(h.offset, h.length);
    let pos = h.slot * j.handle.checksum.chunkBytes;
    let crc = 0;
    if (ring.map) {
      // One pass per byte: copy from the mapped ring into the import views, CRC computed in the same loop.
      for (const s of slices) {
        crc = copyWithCrc32c(s, ring.map.bytes.subarray(pos, pos + s.byteLength), crc);
        pos += s.byteLength;
      }
    } else {
      for (const s of slices) {
        let done = 0;
        while (done < s.byteLength) {
          const n = readSync(ring.fd, s, done, s.byteLength - done, pos + done);
          if (n <= 0) throw new KvTransportError("shared-memory ring ended early");
          done += n;
        }
        pos += s.byteLength;
      }
      crc = crcOfSlices(slices);
    }
    if (crc !== h.crc) throw new KvChecksumError(`chunk ${h.seq} (bytes ${h.offset}..${h.offset + h.length}) failed its checksum`, h.seq);
    j.crcs[h.seq] = h.crc;
    j.nextSeq++;
    this.write([encodeHeader({ type: FrameType.ShmFree, offerId: j.idBytes, slot: h.slot, seq: h.seq })]);
  }

  private onControl(h: FrameHeader, payload: Buffer): void {
    const j = this.job!;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString("utf8"));
    } catch (err) {
      throw new KvProtocolError("control payload is not JSON", { cause: err });
    }
    if (h.type === FrameType.Error) {
      const e = body as ErrorBody;
      throw errorFromCode(String(e.code), String(e.message));
    }
    const b = body as PullBegin;
    if (j.begun) throw new KvProtocolError("second BEGIN");
    if (b.bytes !== j.handle.bytes || b.chunkBytes !== j.handle.checksum.chunkBytes || b.chunks !== j.handle.checksum.chunks) {
      throw new KvProtocolError("BEGIN does not match the handle");
    }
    j.begun = true;
    if (j.mode === "lease") {
      if (!b.lease) throw new KvProtocolError("BEGIN for a cuda-ipc lease without `lease`");
      this.job = null;
      j.cleanup();
      this.leased = j.handle.id;
      j.resolve();
      return;
    }
    if (b.lease) throw new KvProtocolError("BEGIN of a lease for a byte transfer");
    j.digest = expectedDigest(j.handle, b);
    if (j.mode === "shm") {
      if (!b.slots) throw new KvProtocolError("BEGIN for shm without a slot count");
      if (b.reuseRing) {
        if (!this.ring || this.ring.slots !== b.slots || this.ring.slotBytes !== b.chunkBytes) throw new KvProtocolError("BEGIN reuses a ring this side does not hold");
        j.ring = this.ring;
        return;
      }
      if (typeof b.shmPath !== "string") throw new KvProtocolError("BEGIN for shm without a ring");
      this.closeRing();
      let fd: number;
      try {
        fd = openSync(b.shmPath, "r");
      } catch (err) {
        throw new KvTransportError(`cannot open shared-memory ring ${b.shmPath}: ${(err as Error).message}`, { cause: err });
      }
      let map: Mapping | null;
      try {
        map = mapFile(fd, b.slots * b.chunkBytes, false); // null: no mmap here, pread instead
      } catch (err) {
        closeSync(fd);
        throw new KvTransportError(`cannot map shared-memory ring: ${(err as Error).message}`, { cause: err });
      }
      this.ring = { fd, map, slots: b.slots, slotBytes: b.chunkBytes };
      j.ring = this.ring;
      this.write([encodeHeader({ type: FrameType.ShmOpened, offerId: j.idBytes })]);
    }
  }
}

export interface PullConnectionOptions {
  hostId: string;
  deadline: number;
  idleMs: number;
  signal?: AbortSignal;
}

/** Idle connections to offering servers, reused across pulls. */
export class ConnectionPool {
  private readonly idle = new Map<string, Array<{ conn: PullConnection; timer: NodeJS.Timeout }>>();
  private readonly busy = new Set<PullConnection>();
  private closed = false;
  constructor(private readonly maxIdlePerEndpoint = 4, private readonly idleMs = 30_000) {}

  async acquire(host: string, port: number, connectTimeoutMs: number, signal?: AbortSignal): Promise<PullConnection> {
    if (this.closed) throw new KvClosedError("puller is closed");
    const list = this.idle.get(`${host}:${port}`);
    while (list && list.length > 0) {
      const { conn, timer } = list.pop()!;
      clearTimeout(timer);
      if (conn.usable) {
        this.busy.add(conn);
        return conn;
      }
      conn.destroy();
    }
    const conn = await PullConnection.connect(host, port, connectTimeoutMs, signal);
    if (this.closed) {
      conn.destroy();
      throw new KvClosedError("puller is closed");
    }
    this.busy.add(conn);
    return conn;
  }

  /** Returns a connection after a pull: kept when healthy and there is room, otherwise closed. */
  release(conn: PullConnection): void {
    this.busy.delete(conn);
    const list = this.idle.get(conn.key) ?? [];
    if (this.closed || !conn.usable || list.length >= this.maxIdlePerEndpoint) {
      conn.destroy();
      return;
    }
    const entry = {
      conn,
      timer: setTimeout(() => {
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
        conn.destroy();
      }, this.idleMs),
    };
    entry.timer.unref();
    list.push(entry);
    this.idle.set(conn.key, list);
  }

  get size(): { idle: number; busy: number } {
    let idle = 0;
    for (const l of this.idle.values()) idle += l.length;
    return { idle, busy: this.busy.size };
  }

  close(): void {
    this.closed = true;
    for (const l of this.idle.values()) for (const { conn, timer } of l) {
      clearTimeout(timer);
      conn.destroy();
    }
    this.idle.clear();
    for (const c of this.busy) c.destroy();
    this.busy.clear();
  }
}
