import { CodecError } from "./errors.js";

/** Turns protocol messages (plain JS values) into bytes and back. */
export interface Codec {
  readonly name: string;
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/**
 * JSON codec. `Uint8Array` values are not JSON: they are carried as `{"$b": "<base64>"}` and restored
 * on decode, so both codecs accept the same values.
 */
export const jsonCodec: Codec = {
  name: "json",
  encode(value) {
    try {
      return te.encode(JSON.stringify(value, jsonReplacer));
    } catch (err) {
      throw new CodecError(`json encode failed: ${(err as Error).message}`, { cause: err });
    }
  },
  decode(bytes) {
    try {
      return JSON.parse(td.decode(bytes), jsonReviver);
    } catch (err) {
      throw new CodecError(`json decode failed: ${(err as Error).message}`, { cause: err });
    }
  },
};

function jsonReplacer(this: unknown, _key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return { $b: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  return value;
}
function jsonReviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const b = (value as { $b?: unknown }).$b;
    if (typeof b === "string" && Object.keys(value).length === 1) return new Uint8Array(Buffer.from(b, "base64"));
  }
  return value;
}
