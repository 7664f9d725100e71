// The safetensors format: 8-byte little-endian header length N, N bytes of JSON header (padded with spaces so
// the data starts 8-byte aligned), then the raw little-endian tensor data. Offsets in the header are relative
// to the start of the data section. See https://github.com/huggingface/safetensors (format section).
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { MalformedSafetensorsError, UnsupportedDtypeError } from "./errors.js";
import { DTYPE_BYTES, bytesToFloat32, float32ToBytes, isSafetensorsDtype, type SafetensorsDtype } from "./dtype.js";

/** Largest header we accept; real checkpoints have headers of well under 1 MiB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range inside the data section, [begin, end). */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** Bytes of JSON header (including padding). */
  headerBytes: number;
  /** Absolute file offset of the data section: 8 + headerBytes. */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** A tensor decoded to float32; `dtype` tells what the file stored. */
export interface Tensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array;
}

/** What the writer takes: float32 data plus its shape, and optionally its own stored dtype. */
export interface TensorInput {
  shape: readonly number[];
  data: Float32Array;
  /** Stored element type of this tensor (default: the writer's `dtype`), e.g. F8_E4M3 weights beside F32 scales. */
  dtype?: SafetensorsDtype;
}

export interface WriteSafetensorsOptions {
  /** Element type to store (default F32); a tensor's own `dtype` wins. */
  dtype?: SafetensorsDtype;
  /** String metadata for the header's `__metadata__` entry. */
  metadata?: Record<string, string>;
  /** Called after each tensor is written, with bytes written so far and the total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parses a header from the first bytes of a file. `fileSize`, when given, is used to check that every tensor's
 * data lies inside the file. `bytes` must hold at least 8 + header length bytes.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize?: number, path?: string): SafetensorsHeader {
  const fail = (msg: string, cause?: unknown): never => {
    throw new MalformedSafetensorsError(msg, { path, cause });
  };
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} is larger than ${MAX_HEADER_BYTES} bytes`);
  const headerBytes = Number(n64);
  if (fileSize !== undefined && 8 + headerBytes > fileSize) fail(`header length ${headerBytes} runs past the end of the file (${fileSize} bytes)`);
  if (bytes.byteLength < 8 + headerBytes) fail(`header length ${headerBytes} runs past the end of the data (${bytes.byteLength} bytes)`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerBytes)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`, e);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) fail("header is not a JSON object");
  const dataStart = 8 + headerBytes;
  const dataSize = fileSize === undefined ? undefined : fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) fail("__metadata__ is not an object");
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (entry === null || typeof entry !== "object") fail(`tensor ${name}: entry is not an object`);
    const { dtype, shape, data_offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== "string") fail(`tensor ${name}: dtype missing`);
    if (!isSafetensorsDtype(dtype)) {
      throw new UnsupportedDtypeError(String(dtype), `${path ? path + ": " : ""}tensor ${name} has dtype ${String(dtype)}; only F32, F16, BF16 and F8_E4M3 are supported`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(data_offsets) ||
      data_offsets.length !== 2 ||
      !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      data_offsets[1] < data_offsets[0]
    ) {
      fail(`tensor ${name}: data_offsets ${JSON.stringify(data_offsets)} is not [begin, end]`);
    }
    const [begin, end] = data_offsets as [number, number];
    const want = numel(shape as number[]) * DTYPE_BYTES[dtype as SafetensorsDtype];
    if (end - begin !== want) fail(`tensor ${name}: data_offsets span ${end - begin} bytes, shape ${JSON.stringify(shape)} of ${dtype} needs ${want}`);
    if (dataSize !== undefined && end > dataSize) fail(`tensor ${name}: data ends at ${end}, past the data section of ${dataSize} bytes`);
    tensors.set(name, { name, dtype: dtype as SafetensorsDtype, shape: shape as number[], dataOffsets: [begin, end] });
  }
  // Tensors must not overlap (the format also forbids holes; we only insist on what matters for reading).
  const sorted = [...tensors.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].dataOffsets[0] < sorted[i - 1].dataOffsets[1]) fail(`tensors ${sorted[i - 1].name} and ${sorted[i].name} overlap`);
  }
  return { headerBytes, dataStart, tensors, metadata };
}

function readExactly(fd: number, length: number, position: number, path: string): Uint8Array {
  const buf = new Uint8Array(length);
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, off, length - off, position + off);
    if (n === 0) throw new MalformedSafetensorsError(`unexpected end of file at byte ${position + off}`, { path });
    off += n;
  }
  return buf;
}

/**
 * An open .safetensors file: the header is parsed on open, tensors are read one at a time with positioned reads
 * (so shards larger than 2 GiB work and nothing is mapped). Call close() when done.
 */
export class SafetensorsFile {
  readonly path: string;
  readonly header: SafetensorsHeader;
  readonly size: number;
  #fd: number | undefined;

  private constructor(path: string, fd: number, size: number, header: SafetensorsHeader) {
    this.path = path;
    this.#fd = fd;
    this.size = size;
    this.header = header;
  }

  static open(path: string): SafetensorsFile {
    const fd = openSync(path, "r");
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new MalformedSafetensorsError(`file is ${size} bytes, too short for a safetensors header`, { path });
      const lenBytes = readExactly(fd, 8, 0, path);
      const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (n > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
        throw new MalformedSafetensorsError(`header length ${n} does not fit in the file (${size} bytes)`, { path });
      }
      const head = readExactly(fd, 8 + Number(n), 0, path);
      return new SafetensorsFile(path, fd, size, parseSafetensorsHeader(head, size, path));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get tensorNames(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): TensorInfo | undefined {
    return this.header.tensors.get(name);
  }

  /** The tensor's raw little-endian bytes. */
  readBytes(name: string): Uint8Array {
    if (this.#fd === undefined) throw new Error(`${this.path} is closed`);
    const info = this.header.tensors.get(name);
    if (!info) throw new RangeError(`${this.path} has no tensor ${name}`);
    const [b, e] = info.dataOffsets;
    return readExactly(this.#fd, e - b, this.header.dataStart + b, this.path);
  }

  /** The tensor decoded to float32. */
  read(name: string): Tensor {
    const info = this.header.tensors.get(name);
    if (!info) throw new RangeError(`${this.path} has no tensor ${name}`);
    return { dtype: info.dtype, shape: [...info.shape], data: bytesToFloat32(this.readBytes(name), info.dtype) };
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** Reads the header of a .safetensors file without reading tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const f = SafetensorsFile.open(path);
  f.close();
  return f.header;
}

/** Reads every tensor of one .safetensors file, decoded to float32. */
export function readSafetensors(path: string): Map<string, Tensor> {
  const f = SafetensorsFile.open(path);
  try {
    const out = new Map<string, Tensor>();
    for (const name of f.tensorNames) out.set(name, f.read(name));
    return out;
  } finally {
    f.close();
  }
}

/** Decodes an in-memory .safetensors image. */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength);
  const tensors = new Map<string, Tensor>();
  for (const info of header.tensors.values()) {
    const [b, e] = info.dataOffsets;
    const slice = bytes.subarray(header.dataStart + b, header.dataStart + e);
    tensors.set(info.name, { dtype: info.dtype, shape: [...info.shape], data: bytesToFloat32(slice, info.dtype).slice() });
  }
  return { tensors, metadata: header.metadata };
}

function toEntries(tensors: Map<string, TensorInput> | Record<string, TensorInput>): [string, TensorInput][] {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new RangeError("a tensor may not be named __metadata__");
    if (numel(t.shape) !== t.data.length) throw new RangeError(`tensor ${name}: shape [${t.shape.join(", ")}] has ${numel(t.shape)} elements, data has ${t.data.length}`);
  }
  // Sorted by name: the header and the data order do not depend on insertion order, so output is reproducible.
  return entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Builds the header bytes (length prefix + space-padded JSON) for the given tensors, in data order. */
function buildHeader(entries: [string, TensorInput][], dtype: SafetensorsDtype, metadata: Record<string, string> | undefined): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.data.length * DTYPE_BYTES[t.dtype ?? dtype];
    header[name] = { dtype: t.dtype ?? dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/** Encodes tensors into an in-memory .safetensors image (tensors sorted by name). */
export function encodeSafetensors(tensors: Map<string, TensorInput> | Record<string, TensorInput>, options: WriteSafetensorsOptions = {}): Uint8Array {
  const dtype = options.dtype ?? "F32";
  const entries = toEntries(tensors);
  const head = buildHeader(entries, dtype, options.metadata);
  const total = head.length + entries.reduce((s, [, t]) => s + t.data.length * DTYPE_BYTES[t.dtype ?? dtype], 0);
  const out = new Uint8Array(total);
  out.set(head, 0);
  let pos = head.length;
  for (const [, t] of entries) {
    const b = float32ToBytes(t.data, t.dtype ?? dtype);
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

/** Writes a .safetensors file tensor by tensor (never holds the whole file in memory). Returns bytes written. */
export function writeSafetensors(path: string, tensors: Map<string, TensorInput> | Record<string, TensorInput>, options: WriteSafetensorsOptions = {}): number {
  const dtype = options.dtype ?? "F32";
  const entries = toEntries(tensors);
  const head = buildHeader(entries, dtype, options.metadata);
  const total = head.length + entries.reduce((s, [, t]) => s + t.data.length * DTYPE_BYTES[t.dtype ?? dtype], 0);
  const fd = openSync(path, "w");
  try {
    writeAll(fd, head);
    let done = head.length;
    for (const [name, t] of entries) {
      const b = float32ToBytes(t.data, t.dtype ?? dtype);
      writeAll(fd, b);
      done += b.length;
      options.onProgress?.(done, total, name);
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
}
