// The optional native helper (build/libkvx.so, from native/kvx.c) and libc's mmap, through koffi.
// Everything here has a JavaScript fallback: without the helper the results are the same, only slower.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import koffi from "koffi";

type CrcFn = (prev: number, data: Uint8Array, n: number) => number;
type CopyCrcFn = (dst: Uint8Array, src: Uint8Array, n: number, prev: number) => number;

/** Sequentially consistent atomics on the first 4 bytes of `word` (shared memory across processes). */
export interface KvxAtomics {
  /** Writes `desired` when the word is `expected`; returns the value found. */
  cas32: (word: Uint8Array, expected: number, desired: number) => number;
  store32: (word: Uint8Array, value: number) => void;
}

export interface KvxNative {
  crc32c: CrcFn;
  copyCrc32c: CopyCrcFn;
  hardware: boolean;
  /** Large buffers are folded with VPCLMULQDQ (AVX-512): the CRC costs about what the copy does. */
  folded: boolean;
  path: string;
  atomics: KvxAtomics;
}

let native: KvxNative | null | undefined;

/** Where the helper is looked for: $KVX_LIBRARY, else build/libkvx.so of this package (from src/ or dist/). */
export function kvxLibraryPath(): string {
  return process.env.KVX_LIBRARY ?? fileURLToPath(new URL("../build/libkvx.so", import.meta.url));
}

/** The loaded helper, or null when it is not built (or KVX_DISABLE=1). */
export function loadKvx(): KvxNative | null {
  if (native !== undefined) return native;
  native = null;
  const path = kvxLibraryPath();
  if (process.env.KVX_DISABLE === "1" || !existsSync(path)) return native;
  const lib = koffi.load(path);
  if ((lib.func("int kvx_abi_version(void)") as () => number)() !== 2) return native;
  const crc = lib.func("uint32_t kvx_crc32c(uint32_t prev, const void *data, size_t n)") as CrcFn;
  const copy = lib.func("uint32_t kvx_copy_crc32c(void *dst, const void *src, size_t n, uint32_t prev)") as CopyCrcFn;
  const level = (lib.func("int kvx_crc32c_hardware(void)") as () => number)(); // 0 table, 1 crc32, 2 + folding
  const hw = level >= 1;
  const atomics: KvxAtomics = {
    cas32: lib.func("int32_t kvx_cas32(void *p, int32_t expected, int32_t desired)") as KvxAtomics["cas32"],
    store32: lib.func("void kvx_store32(void *p, int32_t v)") as KvxAtomics["store32"],
  };
  native = { crc32c: crc, copyCrc32c: copy, hardware: hw, folded: level === 2, path, atomics };
  return native;
}

// ---- libc mmap (shared-memory ring) ----

interface Libc {
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown;
  munmap: (addr: unknown, len: number) => number;
  memfdCreate: ((name: string, flags: number) => number) | null;
}
let libc: Libc | null | undefined;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MAP_POPULATE = 0x8000;
const MFD_CLOEXEC = 1;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux") return libc;
  try {
    const l = koffi.load("libc.so.6");
    libc = {
      mmap: l.func("void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)") as Libc["mmap"],
      munmap: l.func("int munmap(void *addr, size_t len)") as Libc["munmap"],
      memfdCreate: null,
    };
    try {
      libc.memfdCreate = l.func("int memfd_create(const char *name, unsigned int flags)") as (name: string, flags: number) => number;
    } catch {
      libc.memfdCreate = null; // glibc before 2.27
    }
  } catch {
    libc = null;
  }
  return libc;
}

/** A shared mapping of a file; `bytes` views it without copying. Call unmap() exactly once. */
export interface Mapping {
  bytes: Uint8Array;
  unmap(): void;
}

/**
 * mmap(fd) shared, read-only or read-write; null when mmap is not available here. `populate` maps every page
 * now (MAP_POPULATE) instead of faulting them in on first touch.
 */
export function mapFile(fd: number, length: number, writable: boolean, populate = false): Mapping | null {
  const c = loadLibc();
  if (!c) return null;
  const ptr = c.mmap(null, length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  const addr = koffi.address(ptr);
  if (addr === 0n || addr === 0xffffffffffffffffn) throw new Error(`mmap of ${length} bytes failed`);
  const bytes = new Uint8Array(koffi.view(ptr, length));
  let mapped = true;
  return {
    bytes,
    unmap: () => {
      if (!mapped) return;
      mapped = false;
      c.munmap(ptr, length);
    },
  };
}

/**
 * An anonymous shared-memory file (memfd_create, close-on-exec): no name in any directory, so nothing is left
 * behind when the processes holding it exit. Returns its fd, or null when memfd is not available here.
 */
export function createMemfd(name: string): number | null {
  const c = loadLibc();
  if (!c?.memfdCreate) return null;
  const fd = c.memfdCreate(name, MFD_CLOEXEC);
  return fd >= 0 ? fd : null;
}
