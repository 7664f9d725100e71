// The native BPE encoder (build/libtrtd_bpe.so, from native/; header native/include/trtd_bpe.h) through koffi.
// Optional: without the library, or for a split pattern it does not implement, the tokenizer encodes with the
// tiktoken WASM package (same ids, slower).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import koffi from "koffi";
import { LLAMA3_PATTERN } from "./encodings.js";
import { GPT2_PATTERN } from "./tokenizer-json.js";

const require = createRequire(import.meta.url);

/** TRTD_BPE_ABI_VERSION this binding was written for. */
export const BPE_ABI_VERSION = 1;

/** Qwen2's tokenizer.json split regex: Llama 3's with single digits. */
export const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * The split patterns the native scanner implements, by their exact text (TRTD_BPE_PATTERN_* of the header).
 * Any other pattern (o200k_base's, a custom tiktoken_pattern) is encoded with WASM.
 */
const NATIVE_PATTERNS = new Map<string, number>([
  [LLAMA3_PATTERN, 1], // cl100k_base, Llama 3
  [QWEN2_PATTERN, 2],
  [GPT2_PATTERN, 3], // gpt2, r50k_base, p50k_base, tokenizer.json ByteLevel
]);

export function nativePatternId(pattern: string): number | undefined {
  return NATIVE_PATTERNS.get(pattern);
}

/** C declarations, shared with the encode worker (which binds its own copy of the library). */
export const NATIVE_SIGNATURES = {
  abi: "int32_t trtd_bpe_abi_version(void)",
  create: "void *trtd_bpe_create(const void *ranks_text, uint64_t ranks_len, int32_t pattern)",
  free: "void trtd_bpe_free(void *bpe)",
  encode: "int64_t trtd_bpe_encode(void *bpe, const void *text, uint64_t len, void *ids_out, uint64_t capacity)",
} as const;

interface Lib {
  create: (ranks: Buffer, len: number, pattern: number) => unknown;
  free: (ptr: unknown) => void;
  encode: (ptr: unknown, text: Uint8Array, len: number, ids: Uint32Array, cap: number) => number;
  path: string;
}

/** Where the library is looked for: $TRTD_BPE_LIBRARY, else build/libtrtd_bpe.so of this package (from src/ or dist/). */
export function bpeLibraryPath(): string {
  return process.env.TRTD_BPE_LIBRARY ?? fileURLToPath(new URL("../build/libtrtd_bpe.so", import.meta.url));
}

/** Whether the native encoder is switched off ($TRTD_TOKENIZER_NATIVE=0). */
export function nativeDisabled(): boolean {
  return process.env.TRTD_TOKENIZER_NATIVE === "0";
}

let lib: Lib | null | undefined;
let loadError: string | undefined;

/** The loaded library, or null (not built, wrong ABI, or disabled). */
export function loadBpeLibrary(): Lib | null {
  if (lib !== undefined) return lib;
  lib = null;
  const path = bpeLibraryPath();
  if (!existsSync(path)) {
    loadError = `${path} not found (npm run build:native builds it)`;
    return lib;
  }
  try {
    const l = koffi.load(path);
    const abi = (l.func(NATIVE_SIGNATURES.abi) as () => number)();
    if (abi !== BPE_ABI_VERSION) {
      loadError = `${path}: ABI version ${abi}, this binding needs ${BPE_ABI_VERSION} (rebuild it)`;
      return lib;
    }
    lib = {
      create: l.func(NATIVE_SIGNATURES.create) as Lib["create"],
      free: l.func(NATIVE_SIGNATURES.free) as Lib["free"],
      encode: l.func(NATIVE_SIGNATURES.encode) as Lib["encode"],
      path,
    };
  } catch (e) {
    loadError = `${path}: ${(e as Error).message}`;
  }
  return lib;
}

/** Why loadBpeLibrary() returned null, for logs. */
export function bpeLibraryError(): string | undefined {
  return loadError;
}

/** Absolute path of koffi's entry (for the worker thread). */
export function koffiModulePath(): string {
  return require.resolve("koffi");
}

// Safety net for encoders dropped without free(): the handle is released when the object is collected.
const registry = new FinalizationRegistry<{ lib: Lib; ptr: unknown }>((h) => h.lib.free(h.ptr));

/** Scratch buffers above this size are not kept between calls. */
const KEEP_SCRATCH_BYTES = 1 << 20;

/**
 * One native encoder (ranks + pattern). Encodes ordinary text only: the caller splits out special tokens.
 * Holds native memory: call `free()` (a FinalizationRegistry frees it if the object is dropped).
 */
export class NativeBpe {
  readonly #lib: Lib;
  #ptr: unknown;
  #text = Buffer.allocUnsafe(0);
  #ids = new Uint32Array(0);

  private constructor(l: Lib, ptr: unknown) {
    this.#lib = l;
    this.#ptr = ptr;
    registry.register(this, { lib: l, ptr }, this);
  }

  /** A native encoder for these ranks, or undefined when the pattern is not one the scanner implements, the library is absent or disabled, or it refuses the ranks. */
  static create(ranksText: string, pattern: string): NativeBpe | undefined {
    const id = nativePatternId(pattern);
    if (id === undefined || nativeDisabled()) return undefined;
    const l = loadBpeLibrary();
    if (!l) return undefined;
    const bytes = Buffer.from(ranksText, "utf8");
    const ptr = l.create(bytes, bytes.length, id);
    if (ptr === null) return undefined;
    return new NativeBpe(l, ptr);
  }

  /** The library file this encoder came from. */
  get libraryPath(): string {
    return this.#lib.path;
  }

  /** Ids of `text` (no special tokens). The returned array is a view of a scratch buffer: valid until the next call. */
  encode(text: string): Uint32Array {
    if (this.#ptr === null) throw new Error("native encoder used after free()");
    const max = text.length * 3; // UTF-8 bytes per UTF-16 code unit, at most
    let buf = this.#text;
    if (buf.length < max) {
      buf = Buffer.allocUnsafe(Math.max(max, 4096));
      if (buf.length <= KEEP_SCRATCH_BYTES) this.#text = buf;
    }
    const len = buf.write(text, 0, "utf8"); // lone surrogates become U+FFFD, as wasm-bindgen's encoding does
    let ids = this.#ids;
    if (ids.length < len) {
      ids = new Uint32Array(Math.max(len, 1024));
      if (ids.byteLength <= KEEP_SCRATCH_BYTES * 4) this.#ids = ids;
    }
    const n = Number(this.#lib.encode(this.#ptr, buf, len, ids, ids.length));
    if (n < 0) throw new Error(`trtd_bpe_encode failed (${n})`);
    return ids.subarray(0, n);
  }

  /** Releases the native encoder. Idempotent. */
  free(): void {
    if (this.#ptr === null) return;
    registry.unregister(this);
    this.#lib.free(this.#ptr);
    this.#ptr = null;
    this.#text = Buffer.allocUnsafe(0);
    this.#ids = new Uint32Array(0);
  }
}
