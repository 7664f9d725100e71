// ABI conformance of the koffi binding against trtd_executor.h itself: the header is parsed for its structs, enums
// and functions, a C program generated from that list is compiled against the header (the C compiler is the
// authority on sizeof/offsetof and enum values), and its output is compared with what koffi registered
// (src/native.ts) and with the binding's enum tables. Implementation-independent: every library (the reference
// and the CUDA executor, and the TensorRT-LLM shim, which compiles against the same header) is bound through
// these declarations; the behaviour of each is the rest of this folder, run with TRTD_TEST_EXECUTOR.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import koffi from "koffi";
import { KV_DTYPES } from "@trtd/model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ABI_VERSION, NativeStatus } from "../src/index.js";
import { ABI_FUNCTIONS, FINISH_REASONS, KV_EVENT_TYPES, MEMORY_KINDS, REQUEST_TYPES } from "../src/native.js";

const includeDir = join(import.meta.dirname, "../include");
const headerText = readFileSync(join(includeDir, "trtd_executor.h"), "utf8");

interface HeaderAbi {
  structs: Map<string, string[]>;
  enums: Map<string, string[]>;
  /** function name → parameter count */
  functions: Map<string, number>;
}

/** The structs (field names in order), enums (constant names) and functions (parameter counts) the header declares. */
function parseHeader(text: string): HeaderAbi {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
  const structs = new Map<string, string[]>();
  for (const m of code.matchAll(/typedef\s+struct\s+(\w+)\s*\{([\s\S]*?)\}\s*(\w+)\s*;/g)) {
    expect(m[3], `typedef struct ${m[1]} names itself`).toBe(m[1]);
    const fields = m[2]
      .split(";")
      .map((d) => d.trim())
      .filter(Boolean)
      .map((d) => {
        const f = /(\w+)\s*(\[[^\]]*\])?$/.exec(d);
        if (!f) throw new Error(`cannot read the field declaration "${d}" of ${m[1]}`);
        return f[1];
      });
    structs.set(m[1], fields);
  }
  const enums = new Map<string, string[]>();
  for (const m of code.matchAll(/typedef\s+enum\s+(\w+)\s*\{([\s\S]*?)\}\s*(\w+)\s*;/g)) {
    enums.set(m[1], [...m[2].matchAll(/(\w+)\s*=/g)].map((c) => c[1]));
  }
  const functions = new Map<string, number>();
  for (const m of code.matchAll(/TRTD_API\s+[^;{]*?\b(trtd_\w+)\s*\(([^)]*)\)\s*;/g)) {
    const params = m[2].trim();
    functions.set(m[1], params === "void" || params === "" ? 0 : params.split(",").length);
  }
  return { structs, enums, functions };
}

interface CompiledAbi {
  abi: number;
  structs: Record<string, { size: number; fields: Record<string, [offset: number, size: number]> }>;
  enums: Record<string, number>;
}

/** Generates, compiles (cc, C99, warnings as errors) and runs a program that prints the header's layout as JSON. */
function compileAbi(h: HeaderAbi, dir: string): CompiledAbi {
  const lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "trtd_executor.h"', "int main(void) {"];
  const out = (fmt: string, ...args: string[]) => lines.push(`  printf(${JSON.stringify(fmt)}${args.map((a) => `, ${a}`).join("")});`);
  out('{"abi": %d, "structs": {', "(int)TRTD_ABI_VERSION");
  [...h.structs].forEach(([name, fields], i) => {
    out(`${i ? "," : ""}"${name}": {"size": %zu, "fields": {`, `sizeof(${name})`);
    fields.forEach((f, j) => out(`${j ? "," : ""}"${f}": [%zu, %zu]`, `offsetof(${name}, ${f})`, `sizeof(((${name} *)0)->${f})`));
    out("}}");
  });
  out('}, "enums": {');
  [...h.enums.values()].flat().forEach((c, i) => out(`${i ? "," : ""}"${c}": %lld`, `(long long)${c}`));
  out("}}\n");
  lines.push("  return 0;", "}");
  const src = join(dir, "abi_dump.c");
  const bin = join(dir, "abi_dump");
  writeFileSync(src, lines.join("\n") + "\n");
  const cc = spawnSync(process.env.CC ?? "cc", ["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", includeDir, "-o", bin, src], { encoding: "utf8", timeout: 60_000 });
  if (cc.error || cc.status !== 0) throw new Error(`compiling the ABI dump failed (a C compiler is needed: cc, or $CC): ${cc.error ?? cc.stderr}`);
  const run = spawnSync(bin, [], { encoding: "utf8", timeout: 10_000 });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as CompiledAbi;
}

let header: HeaderAbi;
let compiled: CompiledAbi;
const dir = mkdtempSync(join(tmpdir(), "trtd-abi-"));

beforeAll(async () => {
  await import("../src/native.js"); // registers the koffi struct types
  header = parseHeader(headerText);
  compiled = compileAbi(header, dir);
}, 90_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The koffi struct registered under a C name (throws when the binding has none). */
function koffiStruct(name: string): { size: number; members: Record<string, { offset: number; type: unknown }> } {
  return koffi.type(name) as unknown as { size: number; members: Record<string, { offset: number; type: unknown }> };
}

describe("ABI conformance: the koffi binding against trtd_executor.h", () => {
  it("the header parses into every struct, enum and function it declares", () => {
    expect([...header.structs.keys()]).toEqual([
      "trtd_executor_config", "trtd_model_info", "trtd_sampling_params", "trtd_context_phase_params", "trtd_request",
      "trtd_response", "trtd_token_logprobs", "trtd_executor_stats", "trtd_kv_event", "trtd_kv_layout", "trtd_kv_segment",
      "trtd_kv_export_info",
    ]);
    expect([...header.enums.keys()]).toEqual(["trtd_status", "trtd_request_type", "trtd_finish_reason", "trtd_memory_kind", "trtd_kv_dtype", "trtd_kv_event_type"]);
    expect(header.functions.size).toBeGreaterThanOrEqual(25);
    expect(header.functions.get("trtd_executor_await_responses")).toBe(7);
    expect(header.functions.get("trtd_executor_await_responses_ext")).toBe(8);
    expect(compiled.abi).toBe(ABI_VERSION);
  });

  it("every struct: koffi's size, field names, field offsets and field sizes equal the C compiler's", () => {
    for (const [name, fields] of header.structs) {
      const c = compiled.structs[name]!;
      const k = koffiStruct(name);
      expect(k.size, `sizeof(${name})`).toBe(c.size);
      expect(Object.keys(k.members), `fields of ${name}, in order`).toEqual(fields);
      for (const f of fields) {
        const [offset, size] = c.fields[f]!;
        expect(k.members[f]!.offset, `offsetof(${name}, ${f})`).toBe(offset);
        expect(koffi.sizeof(k.members[f]!.type as never), `sizeof(${name}.${f})`).toBe(size);
      }
    }
  });

  it("a struct that differs from the header is caught (the check can fail)", () => {
    const fields = header.structs.get("trtd_kv_segment")!;
    const c = compiled.structs.trtd_kv_segment!;
    // the binding's declaration with two int32 fields swapped: same size, different names at the offsets
    const swapped = koffi.struct({ data: "void *", size: "uint64_t", device_id: "int32_t", memory_kind: "int32_t" });
    const k = koffi.type(swapped as never) as unknown as { size: number; members: Record<string, { offset: number }> };
    expect(k.size).toBe(c.size);
    expect(Object.keys(k.members)).not.toEqual(fields);
    expect(fields.map((f) => k.members[f]!.offset)).not.toEqual(fields.map((f) => c.fields[f]![0]));
  });

  it("every enum: the binding's tables name each constant of the header with its value", () => {
    const fromHeader = (e: string) => Object.fromEntries(header.enums.get(e)!.map((n) => [n, compiled.enums[n]]));
    expect(Object.fromEntries(Object.entries(NativeStatus).map(([k, v]) => [`TRTD_STATUS_${k}`, v]))).toEqual(fromHeader("trtd_status"));
    expect(Object.fromEntries(Object.entries(REQUEST_TYPES).map(([k, v]) => [`TRTD_REQUEST_${k.toUpperCase()}`, v]))).toEqual(fromHeader("trtd_request_type"));
    expect({ TRTD_FINISH_NOT_FINISHED: 0, ...Object.fromEntries(Object.entries(FINISH_REASONS).map(([v, k]) => [`TRTD_FINISH_${k.toUpperCase()}`, Number(v)])) }).toEqual(
      fromHeader("trtd_finish_reason"),
    );
    expect(Object.fromEntries(MEMORY_KINDS.map((k, v) => [`TRTD_MEMORY_${k.toUpperCase()}`, v]))).toEqual(fromHeader("trtd_memory_kind"));
    expect(Object.fromEntries(KV_EVENT_TYPES.map((k, v) => [`TRTD_KV_EVENT_${k.toUpperCase()}`, v]))).toEqual(fromHeader("trtd_kv_event_type"));
    expect(Object.fromEntries(KV_DTYPES.map((k, v) => [`TRTD_KV_${k.toUpperCase()}`, v]))).toEqual(fromHeader("trtd_kv_dtype"));
  });

  it("every function the binding binds is the header's, with as many parameters; the header's others are named", () => {
    const bound = new Map(
      Object.values(ABI_FUNCTIONS).map((sig) => {
        const m = /\b(trtd_\w+)\s*\(([^)]*)\)/.exec(sig)!;
        return [m[1], m[2].trim() === "void" ? 0 : m[2].split(",").length] as const;
      }),
    );
    for (const [name, n] of bound) expect(header.functions.get(name), `${name} in the header`).toBe(n);
    // Not bound, on purpose: the binding fills trtd_sampling_params from GenerateRequest.sampling itself.
    const unbound = [...header.functions.keys()].filter((f) => !bound.has(f));
    expect(unbound).toEqual(["trtd_sampling_default_params"]);
  });
});
