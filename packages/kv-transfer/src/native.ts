// The optional native helper (build/libkvx.so, from native/kvx.c) and libc's mmap, through koffi.
// Everything here has a JavaScript fallback: without the helper the results are the same, only slower.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import koffi from "koffi";

type CrcFn = (prev: number, data: Uint8Array, n: number) => number;
type CopyCrcFn = (dst: Uint8Array, src: Uint8Array, n: number, prev: number) => number;

export interface KvxNative {
  crc32c: CrcFn;
  copyCrc32c: CopyCrcFn;
  hardware: boolean;
  path: string;
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
  if ((lib.func("int kvx_abi_version(void)") as () => number)() !== 1) return native;
  const crc = lib.func("uint32_t kvx_crc32c(uint32_t prev, const void *data, size_t n)") as CrcFn;
  const copy = lib.func("uint32_t kvx_copy_crc32c(void *dst, const void *src, size_t n, uint32_t prev)") as CopyCrcFn;
  const hw = (lib.func("int kvx_crc32c_hardware(void)") as () => number)() === 1;
  native = { crc32c: crc, copyCrc32c: copy, hardware: hw, path };
  return native;
}

// ---- libc mmap (shared-memory ring) ----

interface Libc {
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown;
  munmap: (addr: unknown, len: number) => number;
}
let libc: Libc | null | undefined;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== "linux") return libc;
  try {
    const l = koffi.load("libc.so.6");
    libc = {
      mmap: l.func("void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)") as Libc["mmap"],
      munmap: l.func("int munmap(void *addr, size_t len)") as Libc["munmap"],
    };
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

/** mmap(fd) shared, read-only or read-write; null when mmap is not available here. */
export function mapFile(fd: number, length: number, writable: boolean): Mapping | null {
  const c = loadLibc();
  if (!c) return null;
  const ptr = c.mmap(null, length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
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
