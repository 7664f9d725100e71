import { randomBytes } from "node:crypto";
import type { KvSink, KvSource } from "../src/index.js";

/**
 * DeviceKvTestDouble: stands in for a CUDA executor's device memory and its device KV path (ABI 3), which cannot
 * run here (no GPU). Not a transport implementation: only the executor calls behind `deviceDescriptor()` and
 * `importDevice()` are faked. Exporting copies the KV bytes into `memory`, a Map keyed by the descriptor (random
 * bytes, as base64), and returns the descriptor; releasing the export frees that entry (as releasing pinned device
 * blocks would). Importing looks the descriptor up and copies the bytes into the sink's segments. Both sides must
 * live in this process (the Map is the "device"). The exported source's `segments()` stands for the CUDA executor's
 * host staging (device → pinned host copy): `hostStagings` counts its calls and `stagingFailure` makes it throw.
 */
export class DeviceKvTestDouble {
  /** "Device memory": descriptor (base64) → the exported KV bytes. */
  readonly memory = new Map<string, Uint8Array>();
  /** When set, importDevice throws it (like the executor's UNSUPPORTED or a CUDA error). */
  failWith: Error | null = null;
  /** Throw synchronously instead of from a promise (a synchronous binding call). */
  failSync = false;
  /** How long an import takes (ms), to hold the lease open. */
  importDelayMs = 0;
  imports = 0;
  /** Set when an import found its descriptor released while it ran (the lease must prevent this). */
  releasedDuringImport = false;
  /** Calls of an exported source's `segments()`: host stagings (a device-to-device pull needs none). */
  hostStagings = 0;
  /** When set, an exported source's `segments()` throws it (a failed device → host copy). */
  stagingFailure: Error | null = null;
  /** Runs inside an exported source's `segments()`, before it returns (e.g. to burn time while a timer is due). */
  duringStaging: (() => void) | null = null;

  constructor(readonly deviceUuid = "GPU-00000000-test-double-0000") {}

  /** `source` plus a device descriptor of its bytes on this double's device. */
  exporting(source: KvSource): KvSource {
    let key: string | undefined;
    return {
      numTokens: source.numTokens,
      bytes: source.bytes,
      segments: () => {
        this.hostStagings++;
        if (this.stagingFailure) throw this.stagingFailure;
        this.duringStaging?.();
        return source.segments();
      },
      engineState: source.engineState?.bind(source),
      deviceUuid: this.deviceUuid,
      deviceDescriptor: () => {
        const descriptor = randomBytes(96);
        key = descriptor.toString("base64");
        this.memory.set(key, new Uint8Array(Buffer.concat(source.segments())));
        return descriptor;
      },
      release: () => {
        if (key) this.memory.delete(key);
        source.release();
      },
    };
  }

  /** `sink` able to import device KV from this double's device. */
  importing(sink: KvSink, deviceUuid = this.deviceUuid): KvSink & { readonly inner: KvSink } {
    const copy = async (descriptor: Uint8Array): Promise<void> => {
      const key = Buffer.from(descriptor).toString("base64");
      if (!this.memory.has(key)) throw new Error("INVALID_ARGUMENT: no such device export (released?)");
      if (this.importDelayMs > 0) await new Promise((r) => setTimeout(r, this.importDelayMs));
      const bytes = this.memory.get(key);
      if (!bytes) {
        this.releasedDuringImport = true;
        throw new Error("INTERNAL: the export was released during the copy");
      }
      if (bytes.byteLength !== sink.bytes) throw new Error(`INVALID_ARGUMENT: export has ${bytes.byteLength} bytes, import ${sink.bytes}`);
      let pos = 0;
      for (const s of sink.segments()) {
        s.set(bytes.subarray(pos, pos + s.byteLength));
        pos += s.byteLength;
      }
      this.imports++;
    };
    return {
      inner: sink,
      numTokens: sink.numTokens,
      bytes: sink.bytes,
      deviceUuid,
      segments: () => sink.segments(),
      abort: () => sink.abort(),
      importDevice: (descriptor: Uint8Array) => {
        if (this.failWith && this.failSync) throw this.failWith;
        if (this.failWith) return Promise.reject(this.failWith);
        return copy(descriptor);
      },
    };
  }
}
