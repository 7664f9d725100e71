import type { Codec } from "./codec.js";
import { CodecError } from "./errors.js";

/*
 * A small tagged binary encoding (MessagePack-like, little-endian). Its point is arrays of int32
 * (token ids): they are packed as raw 4-byte integers after one scan proves every element is an int32,
 * and `Uint8Array` payloads travel as raw bytes instead of base64.
 */
const T_NULL = 0, T_FALSE = 2, T_TRUE = 3, T_I32 = 4, T_F64 = 5, T_STR = 6, T_ARR = 7, T_OBJ = 8, T_BYTES = 9, T_I32ARR = 10, T_U8 = 11;
/** Format marker and version (lengths and counts are LEB128 varints). */
const MAGIC = 0xb2;

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

class Writer {
  buf = new Uint8Array(64 * 1024);
  view = new DataView(this.buf.buffer);
  pos = 0;
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  /** Unsigned LEB128: 1 byte below 128, at most 5 for 32 bits. */
  varint(v: number): void {
    this.ensure(5);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }
  str(s: string): void {
    const n = s.length;
    if (n <= 32) {
      // short keys and codes: a plain loop beats TextEncoder's call overhead
      let ascii = true;
      for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
      if (ascii) {
        this.ensure(1 + n);
        this.buf[this.pos++] = n;
        for (let i = 0; i < n; i++) this.buf[this.pos++] = s.charCodeAt(i);
        return;
      }
    }
    const bytes = n < 43 ? -1 : Buffer.byteLength(s, "utf8");
    if (bytes < 0) {
      // at most 3 bytes per UTF-16 unit < 128: a one-byte length fits
      this.ensure(1 + n * 3);
      const { written } = te.encodeInto(s, this.buf.subarray(this.pos + 1));
      this.buf[this.pos] = written;
      this.pos += 1 + written;
      return;
    }
    this.varint(bytes);
    this.ensure(bytes);
    this.pos += te.encodeInto(s, this.buf.subarray(this.pos)).written;
  }
}

function isInt32Array(a: unknown[]): boolean {
  if (a.length === 0) return false;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (typeof v !== "number" || (v | 0) !== v || Object.is(v, -0)) return false;
  }
  return true;
}

function write(w: Writer, v: unknown, depth: number): void {
  if (depth > 64) throw new CodecError("binary encode: nesting deeper than 64");
  if (v === null || v === undefined) return w.u8(T_NULL);
  switch (typeof v) {
    case "boolean":
      return w.u8(v ? T_TRUE : T_FALSE);
    case "number":
      if ((v & 0xff) === v && !Object.is(v, -0)) {
        w.ensure(2);
        w.buf[w.pos++] = T_U8;
        w.buf[w.pos++] = v;
      } else if ((v | 0) === v && !Object.is(v, -0)) {
        w.ensure(5);
        w.buf[w.pos++] = T_I32;
        w.view.setInt32(w.pos, v, true);
        w.pos += 4;
      } else {
        w.ensure(9);
        w.buf[w.pos++] = T_F64;
        w.view.setFloat64(w.pos, v, true);
        w.pos += 8;
      }
      return;
    case "string":
      w.u8(T_STR);
      return w.str(v);
    case "object": {
      if (v instanceof Uint8Array) {
        w.u8(T_BYTES);
        w.varint(v.byteLength);
        w.ensure(v.byteLength);
        w.buf.set(v, w.pos);
        w.pos += v.byteLength;
        return;
      }
      if (Array.isArray(v)) {
        if (isInt32Array(v)) {
          w.u8(T_I32ARR);
          w.varint(v.length);
          w.ensure(v.length * 4);
          for (let i = 0; i < v.length; i++) {
            w.view.setInt32(w.pos, v[i] as number, true);
            w.pos += 4;
          }
          return;
        }
        w.u8(T_ARR);
        w.varint(v.length);
        for (let i = 0; i < v.length; i++) write(w, v[i], depth + 1);
        return;
      }
      const keys = Object.keys(v);
      let n = 0;
      for (const k of keys) if ((v as Record<string, unknown>)[k] !== undefined) n++;
      w.u8(T_OBJ);
      w.varint(n);
      for (const k of keys) {
        const x = (v as Record<string, unknown>)[k];
        if (x === undefined) continue;
        w.str(k);
        write(w, x, depth + 1);
      }
      return;
    }
    default:
      throw new CodecError(`binary encode: unsupported type ${typeof v}`);
  }
}

class Reader {
  pos = 0;
  readonly view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new CodecError("binary decode: truncated message");
  }
  varint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      this.need(1);
      const b = this.buf[this.pos++];
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
    throw new CodecError("binary decode: varint too long");
  }
  str(): string {
    const n = this.varint();
    this.need(n);
    const b = this.buf;
    const start = this.pos;
    this.pos += n;
    if (n <= 32) {
      let ascii = true;
      for (let i = start; i < start + n; i++) if (b[i] > 0x7f) ascii = false;
      if (ascii) {
        let out = "";
        for (let i = start; i < start + n; i++) out += String.fromCharCode(b[i]);
        return out;
      }
    }
    return td.decode(b.subarray(start, start + n));
  }
}

function read(r: Reader, depth: number): unknown {
  if (depth > 64) throw new CodecError("binary decode: nesting deeper than 64");
  r.need(1);
  const tag = r.buf[r.pos++];
  switch (tag) {
    case T_NULL:
      return null;
    case T_FALSE:
      return false;
    case T_TRUE:
      return true;
    case T_U8:
      r.need(1);
      return r.buf[r.pos++];
    case T_I32: {
      r.need(4);
      const v = r.view.getInt32(r.pos, true);
      r.pos += 4;
      return v;
    }
    case T_F64: {
      r.need(8);
      const v = r.view.getFloat64(r.pos, true);
      r.pos += 8;
      return v;
    }
    case T_STR:
      return r.str();
    case T_BYTES: {
      const n = r.varint();
      r.need(n);
      const out = r.buf.slice(r.pos, r.pos + n); // copy: the message buffer may be reused by the transport
      r.pos += n;
      return out;
    }
    case T_I32ARR: {
      const n = r.varint();
      r.need(n * 4);
      const out = new Array<number>(n);
      for (let i = 0; i < n; i++) out[i] = r.view.getInt32(r.pos + i * 4, true);
      r.pos += n * 4;
      return out;
    }
    case T_ARR: {
      const n = r.varint();
      if (n > r.buf.length) throw new CodecError("binary decode: bad array length");
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) out[i] = read(r, depth + 1);
      return out;
    }
    case T_OBJ: {
      const n = r.varint();
      if (n > r.buf.length) throw new CodecError("binary decode: bad object size");
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const k = r.str();
        out[k] = read(r, depth + 1);
      }
      return out;
    }
    default:
      throw new CodecError(`binary decode: unknown tag ${tag}`);
  }
}

let scratch = new Writer();

/** Tagged binary codec with packed int32 arrays and raw bytes. */
export const binaryCodec: Codec = {
  name: "binary",
  encode(value) {
    // one scratch buffer, reused (encode is synchronous); the result is a right-sized copy
    const w = scratch;
    w.pos = 0;
    try {
      w.u8(MAGIC);
      write(w, value, 0);
      return w.buf.slice(0, w.pos);
    } finally {
      if (w.buf.length > 4 * 1024 * 1024) scratch = new Writer(); // do not pin a huge buffer forever
    }
  },
  decode(bytes) {
    if (bytes.length < 2 || bytes[0] !== MAGIC) throw new CodecError("binary decode: not a binary-codec message");
    const r = new Reader(bytes);
    r.pos = 1;
    const v = read(r, 0);
    if (r.pos !== bytes.length) throw new CodecError("binary decode: trailing bytes");
    return v;
  },
};
