// Loads @mlc-ai/web-xgrammar (xgrammar compiled to WASM) in Node. The package ships one UMD bundle (wasm embedded)
// under "type": "module", which neither Node's ESM loader (no `require`/`__filename` in module scope) nor
// `require` (an ES module by its package.json) can run as is; so it is evaluated here as the CommonJS script it
// is. xgrammar's C++ reports bad input by printing "[FATAL] file:line: message" and aborting (a RuntimeError
// "Aborted()"): `xgrammarCall` turns that into an error carrying the message.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import type * as Xgr from "@mlc-ai/web-xgrammar";

export type XgrammarModule = typeof Xgr;

let loaded: XgrammarModule | undefined;

/** The xgrammar module, loaded once per process. */
export function xgrammar(): XgrammarModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve("@mlc-ai/web-xgrammar/lib/index.js");
  const module = { exports: {} as XgrammarModule };
  // Emscripten's Node path loads node:module with a dynamic import(), which code made by new Function cannot run
  // inside a VM context (vitest): it gets the builtin through require instead.
  const source = readFileSync(file, "utf8").replace(/\bimport\((['"])([\w:]+)\1\)/g, '__builtin("$2")');
  const builtin = async (name: string): Promise<unknown> => require(name);
  const run = new Function("exports", "module", "require", "__filename", "__dirname", "__builtin", source);
  run.call(globalThis, module.exports, module, require, file, dirname(file), builtin);
  loaded = module.exports;
  return loaded;
}

/**
 * Runs an xgrammar call; when it aborts, throws an Error whose message is xgrammar's own ("[FATAL] …" line, the
 * file:line prefix dropped). One call at a time: xgrammar's WASM module is single-threaded and so is this capture.
 * An abort does not unwind the C++ stack, so the few allocations of that call stay in the WASM heap.
 */
export async function xgrammarCall<T>(fn: () => Promise<T> | T): Promise<T> {
  const printed: string[] = [];
  const original = console.error;
  const originalWarn = console.warn;
  const capture = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  console.error = capture;
  console.warn = capture;
  try {
    return await fn();
  } catch (cause) {
    const fatal = printed.find((l) => l.includes("[FATAL]")) ?? printed.find((l) => l.trim() !== "" && !/^Aborted\(/.test(l));
    const message = fatal ? fatal.replace(/^.*\[FATAL\]\s*(\S+:\d+:\s*)?/, "").trim() : (cause as Error)?.message ?? String(cause);
    throw new Error(message, { cause });
  } finally {
    console.error = original;
    console.warn = originalWarn;
  }
}
