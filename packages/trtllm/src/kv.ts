// KV export (pinned blocks of a finished context-only request) and KV import (blocks reserved for a
// generation-only request). Segments are zero-copy views of the executor's memory: valid until release() /
// abort() / consumption by generate(), or the executor's close(). Never touch a view after that.
import { ExecutorClosedError, InvalidStateError, InvalidArgumentError, NativeStatus } from "./errors.js";
import koffi from "koffi";
import { decodeSegments, SEGMENT_SIZE, type NativeLib } from "./native.js";

/** What KvExport and KvImport need from their executor (kept narrow to avoid an import cycle). */
export interface KvOwner {
  readonly native: NativeLib;
  /** Throws ExecutorClosedError after close(). */
  handle(): bigint;
  check(status: number): void;
}

function views(owner: KvOwner, list: (buf: Buffer | null, max: number, nOut: Int32Array) => number): Uint8Array[] {
  const nOut = new Int32Array(1);
  list(null, 0, nOut); // size first: BUFFER_TOO_SMALL with the count
  const n = nOut[0];
  const buf = Buffer.alloc(Math.max(1, n) * SEGMENT_SIZE);
  owner.check(list(buf, n, nOut));
  return decodeSegments(buf, n).map((s) => {
    if (s.memoryKind !== 0 && s.memoryKind !== 1) {
      throw new InvalidStateError(`KV segments live in memory kind ${s.memoryKind}: not host-addressable`);
    }
    return new Uint8Array(koffi.view(s.data, s.size));
  });
}

export class KvExport {
  readonly requestId: number;
  readonly numTokens: number;
  readonly numBlocks: number;
  readonly bytes: number;
  #owner: KvOwner;
  #released = false;

  /** @internal Use Executor.exportKv. */
  constructor(owner: KvOwner, requestId: number, info: { num_tokens: number; num_blocks: number; bytes: number | bigint }) {
    this.#owner = owner;
    this.requestId = requestId;
    this.numTokens = info.num_tokens;
    this.numBlocks = info.num_blocks;
    this.bytes = Number(info.bytes);
  }

  get released(): boolean {
    return this.#released;
  }

  #handle(): bigint {
    if (this.#released) throw new InvalidStateError(`KV export of request ${this.requestId} was released`);
    return this.#owner.handle();
  }

  /** Zero-copy read-only views, one per block, in token order (each bytesPerBlock long). */
  segments(): Uint8Array[] {
    const ex = this.#handle();
    return views(this.#owner, (buf, max, nOut) => this.#owner.native.kvExportSegments(ex, this.requestId, buf, max, nOut));
  }

  /** Copies all segments back to back into dst (at least `bytes` long); returns the bytes written. */
  copyTo(dst: Uint8Array): number {
    const ex = this.#handle();
    if (dst.byteLength < this.bytes) {
      throw new InvalidArgumentError(`destination holds ${dst.byteLength} bytes; the export has ${this.bytes}`);
    }
    this.#owner.check(this.#owner.native.kvExportCopy(ex, this.requestId, dst, dst.byteLength));
    return this.bytes;
  }

  /**
   * The device descriptor of this KV (size first, then copied), for KvImport.fillFromDevice in a process whose
   * device can reach this one's memory (the same GPU, or peer access); undefined when the executor keeps KV in
   * host memory (the reference executor): move the segments instead. Valid until release(), which must wait
   * until the importer's fillFromDevice returned (decode acks, then prefill releases).
   * @throws NotFoundError, InvalidStateError, ExecutorClosedError
   */
  deviceDescriptor(): Uint8Array | undefined {
    const ex = this.#handle();
    const native = this.#owner.native;
    const size: unknown[] = [0];
    const status = native.kvExportDevice(ex, this.requestId, null, 0, size);
    if (status === NativeStatus.UNSUPPORTED) return undefined;
    this.#owner.check(status);
    const buf = new Uint8Array(Number(size[0]));
    this.#owner.check(native.kvExportDevice(ex, this.requestId, buf, buf.byteLength, size));
    return buf;
  }

  /** Unpins the blocks (idempotent). Views from segments() become invalid. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    let ex: bigint;
    try {
      ex = this.#owner.handle();
    } catch (e) {
      if (e instanceof ExecutorClosedError) return; // close() already freed everything
      throw e;
    }
    this.#owner.native.kvExportRelease(ex, this.requestId); // NOT_FOUND: released through another handle
  }
}

export class KvImport {
  readonly id: number;
  readonly numTokens: number;
  readonly numBlocks: number;
  readonly bytes: number;
  #owner: KvOwner;
  #state: "reserved" | "consumed" | "aborted" = "reserved";

  /** @internal Use Executor.reserveKvImport. */
  constructor(owner: KvOwner, id: number, numTokens: number, numBlocks: number, bytesPerBlock: number) {
    this.#owner = owner;
    this.id = id;
    this.numTokens = numTokens;
    this.numBlocks = numBlocks;
    this.bytes = numBlocks * bytesPerBlock;
  }

  get state(): "reserved" | "consumed" | "aborted" {
    return this.#state;
  }

  /** @internal The executor this import belongs to. */
  belongsTo(owner: KvOwner): boolean {
    return this.#owner === owner;
  }

  /** @internal Called by generate() once the generation-only request took ownership. */
  markConsumed(): void {
    this.#state = "consumed";
  }

  /** Writable zero-copy views, one per block; fill them with the exported segments, in order. */
  segments(): Uint8Array[] {
    if (this.#state !== "reserved") throw new InvalidStateError(`KV import ${this.id} is ${this.#state}`);
    const ex = this.#owner.handle();
    return views(this.#owner, (buf, max, nOut) => this.#owner.native.kvImportSegments(ex, this.id, buf, max, nOut));
  }

  /** Writes `src` (all segments back to back, as KvExport.copyTo produces) into the reserved blocks. */
  writeFrom(src: Uint8Array): void {
    if (src.byteLength !== this.bytes) {
      throw new InvalidArgumentError(`source has ${src.byteLength} bytes; the import holds ${this.bytes}`);
    }
    let off = 0;
    for (const seg of this.segments()) {
      seg.set(src.subarray(off, off + seg.byteLength));
      off += seg.byteLength;
    }
  }

  /**
   * Fills the reserved blocks device to device from a KvExport.deviceDescriptor() (of any process) and checks
   * the copy's checksum; returns when the copy is complete. Then consume the import as usual.
   * @throws UnsupportedError (host-memory executor, or this device cannot reach the exporter's: use the segments),
   *   InvalidArgumentError (malformed descriptor, other layout or token count), InternalError (checksum mismatch
   *   or a CUDA error; the import stays reserved), InvalidStateError (not reserved), ExecutorClosedError
   */
  fillFromDevice(descriptor: Uint8Array): void {
    if (!(descriptor instanceof Uint8Array) || descriptor.byteLength === 0) {
      throw new InvalidArgumentError("descriptor must be a non-empty Uint8Array from KvExport.deviceDescriptor()");
    }
    if (this.#state !== "reserved") throw new InvalidStateError(`KV import ${this.id} is ${this.#state}`);
    const ex = this.#owner.handle();
    this.#owner.check(this.#owner.native.kvImportDevice(ex, this.id, descriptor, descriptor.byteLength));
  }

  /** Frees the reserved blocks unless a request consumed them (idempotent). */
  abort(): void {
    if (this.#state !== "reserved") return;
    this.#state = "aborted";
    let ex: bigint;
    try {
      ex = this.#owner.handle();
    } catch (e) {
      if (e instanceof ExecutorClosedError) return;
      throw e;
    }
    this.#owner.native.kvImportAbort(ex, this.id);
  }
}
