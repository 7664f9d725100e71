import { KvSizeMismatchError } from "./errors.js";

/**
 * The offering side's KV: what `Executor.exportKv(requestId)` of @trtd/trtllm returns satisfies it.
 * The views must stay valid until `release()`; the offer registry calls `release()` exactly once.
 */
export interface KvSource {
  readonly numTokens: number;
  readonly bytes: number;
  /**
   * Zero-copy views over the KV, in order (one per block for the executor); read only. Called at offer time, except
   * for a source with a usable device path (`deviceUuid` + `deviceDescriptor()`): then only when a host transfer
   * (tcp, shm, nats, a cuda-ipc fallback) starts, at most once, never after `release()`, and never for a pull that
   * moves the KV device to device (on the CUDA executor this call stages every block to pinned host memory).
   */
  segments(): Uint8Array[];
  release(): void;
  /** Engine-native opaque state for the "engine" transport (TensorRT-LLM ContextPhaseParams), if any. */
  engineState?(): Uint8Array | undefined;
  /**
   * The "cuda-ipc" transport: the executor's opaque descriptor of this KV in device memory (valid until
   * `release()`), or undefined when it has none. Asked once, at offer time; used only together with `deviceUuid`.
   * The segments must still hold the same KV (host-staged when asked): they serve the other transports and fallbacks.
   */
  deviceDescriptor?(): Uint8Array | undefined;
  /** The device holding that KV ("GPU-" + UUID for CUDA). */
  readonly deviceUuid?: string;
}

/**
 * The pulling side's destination: what `Executor.reserveKvImport(numTokens)` returns satisfies it.
 * `pull()` aborts it on failure; on success the caller hands it to the executor (which consumes it).
 */
export interface KvSink {
  readonly numTokens: number;
  readonly bytes: number;
  /** Writable zero-copy views, in order, same shapes as the source's for the same layout. */
  segments(): Uint8Array[];
  abort(): void;
  /** Accepts engine-native state for the "engine" transport (the engine moves the bytes itself). */
  importEngineState?(state: Uint8Array): void | Promise<void>;
  /**
   * The "cuda-ipc" transport: copies the KV that an offering executor's device descriptor names into this import,
   * device to device, verifies it (the executor's own checksum) and returns when the copy is complete. Throws when
   * it cannot (e.g. the executor's UNSUPPORTED: this device cannot reach the exporter's memory); the import must
   * then still be usable, because the puller falls back to another transport that fills `segments()`.
   */
  importDevice?(descriptor: Uint8Array): void | Promise<void>;
  /** The device this import lives on; "cuda-ipc" is chosen only when it can reach the offer's device. */
  readonly deviceUuid?: string;
}

/** Maps byte ranges of the logical KV stream onto the segments (no copies). */
export class SegmentMap {
  readonly segments: Uint8Array[];
  readonly bytes: number;
  private readonly starts: number[];

  constructor(segments: Uint8Array[]) {
    this.segments = segments;
    this.starts = [];
    let total = 0;
    for (const s of segments) {
      this.starts.push(total);
      total += s.byteLength;
    }
    this.bytes = total;
  }

  /** Index of the segment holding byte `offset` (binary search). */
  private indexOf(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Views covering [offset, offset + length), in order. */
  slices(offset: number, length: number): Uint8Array[] {
    if (offset < 0 || length < 0 || offset + length > this.bytes) {
      throw new RangeError(`range ${offset}+${length} outside KV of ${this.bytes} bytes`);
    }
    const out: Uint8Array[] = [];
    if (length === 0) return out;
    let i = this.indexOf(offset);
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const seg = this.segments[i]!;
      const segStart = this.starts[i]!;
      const from = pos - segStart;
      const to = Math.min(seg.byteLength, end - segStart);
      if (to > from) out.push(seg.subarray(from, to));
      pos = segStart + to;
      i++;
    }
    return out;
  }

  /** One view starting at `offset`, at most `maxLength` bytes, not crossing a segment boundary. */
  sliceAt(offset: number, maxLength: number): Uint8Array {
    const i = this.indexOf(offset);
    const seg = this.segments[i]!;
    const from = offset - this.starts[i]!;
    return seg.subarray(from, Math.min(seg.byteLength, from + maxLength));
  }
}

/** Builds the segment map of a source or sink and checks its size. */
export function mapSegments(what: string, kv: { bytes: number; segments(): Uint8Array[] }, expected?: number): SegmentMap {
  const map = new SegmentMap(kv.segments());
  if (map.bytes !== kv.bytes) {
    throw new KvSizeMismatchError(`${what}: segments hold ${map.bytes} bytes but it declares ${kv.bytes}`);
  }
  if (expected !== undefined && map.bytes !== expected) {
    throw new KvSizeMismatchError(`${what}: holds ${map.bytes} bytes, the handle announces ${expected}`);
  }
  return map;
}

/** A KvSource over plain memory (tests, benchmarks, KV that is not in an executor). */
export class BufferKvSource implements KvSource {
  readonly numTokens: number;
  readonly bytes: number;
  private segs: Uint8Array[] | null;
  private readonly onRelease?: () => void;
  constructor(segments: Uint8Array[], numTokens: number, onRelease?: () => void) {
    this.segs = segments;
    this.numTokens = numTokens;
    this.bytes = segments.reduce((n, s) => n + s.byteLength, 0);
    this.onRelease = onRelease;
  }
  get released(): boolean {
    return this.segs === null;
  }
  segments(): Uint8Array[] {
    if (!this.segs) throw new Error("BufferKvSource: segments() after release()");
    return this.segs;
  }
  release(): void {
    if (!this.segs) return;
    this.segs = null;
    this.onRelease?.();
  }
}

/** A KvSink over freshly allocated memory: `count` segments of `segmentBytes`. */
export class BufferKvSink implements KvSink {
  readonly numTokens: number;
  readonly bytes: number;
  private segs: Uint8Array[] | null;
  aborted = false;
  constructor(numTokens: number, count: number, segmentBytes: number) {
    this.numTokens = numTokens;
    this.segs = Array.from({ length: count }, () => new Uint8Array(segmentBytes));
    this.bytes = count * segmentBytes;
  }
  segments(): Uint8Array[] {
    if (!this.segs) throw new Error("BufferKvSink: segments() after abort()");
    return this.segs;
  }
  abort(): void {
    this.aborted = true;
    this.segs = null;
  }
}
