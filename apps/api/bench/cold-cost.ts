// What the api's own per-request work costs hot and after an idle gap, on this machine (issues 16 and 19).
//
//   node --import tsx --conditions=source apps/api/bench/cold-cost.ts [--model-dir DIR] [--reps N]
//
// The work before a request leaves the api, in this process, on one small chat request: the body's JSON parsed and
// checked (parseChatCompletion), the chat template rendered and the prompt encoded (the model's tokenizer). Timed
// (1) back to back, after thousands of calls (hot: what a profile of a loaded api sees), and (2) after a gap of
// 1 or 20 ms spent sleeping, or 20 ms spent in an arithmetic loop that touches no memory, as one request at a time on
// an idle stack has. If (2) costs many times (1) even after the arithmetic loop, the caches were emptied by other
// tenants of the machine during the gap (a shared VM), not by this process: cutting the api's instructions then saves
// little per request, and the time is the machine's. The last line is one JSON object.
import { resolve } from "node:path";
import { cpus, loadavg } from "node:os";
import { DEFAULT_MODEL_DIR, intFlag, parseFlags, stringFlag, UsageError, valueFlags } from "@trtd/apps-common";
import { describe } from "@trtd/bench";
import { Tokenizer } from "@trtd/tokenizer";
import { parseChatCompletion } from "../src/openai/chat-completions.js";

const opts = (() => {
  try {
    const f = parseFlags(process.argv.slice(2), valueFlags("model-dir", "reps"));
    return { modelDir: resolve(stringFlag(f, "model-dir") ?? DEFAULT_MODEL_DIR), reps: intFlag(f.reps, "reps", { min: 20, fallback: 300 }) };
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`cold cost: ${err.message}`);
    process.exit(2);
  }
})();

const BODY = JSON.stringify({
  model: "m",
  messages: [{ role: "user", content: "the quick brown fox jumps over a lazy dog while seven clever engineers measure latency on small machines" }],
  max_tokens: 2,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});

const tok = Tokenizer.fromModelDir(opts.modelDir);
let sink = 0;
/** The api's work before dispatch, on BODY; returns µs. */
function work(): number {
  const t0 = performance.now();
  const p = parseChatCompletion(JSON.parse(BODY), "m");
  sink += tok.encodeChat(p.messages as unknown as Parameters<Tokenizer["encodeChat"]>[0]).length;
  return (performance.now() - t0) * 1000;
}

function arithmetic(ms: number): void {
  const end = performance.now() + ms;
  let x = 1;
  while (performance.now() < end) for (let k = 0; k < 1000; k++) x = (x * 1.0000001 + k) % 1e9;
  sink += x;
}

const round = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 10) / 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

try {
  for (let i = 0; i < 20_000; i++) work(); // every function optimised by V8
  const hot: number[] = [];
  for (let i = 0; i < opts.reps * 10; i++) hot.push(work());
  const out: Record<string, unknown> = { machine: { cpus: cpus().length, cpu: cpus()[0]?.model, loadavg1m: loadavg()[0] }, reps: opts.reps, modelDir: opts.modelDir };
  const hotP50 = describe(hot).p50!;
  out.hotP50Us = round(hotP50);
  console.log(`hot (back to back): p50 ${round(hotP50)} us`);
  for (const [label, gap] of [
    ["sleep1ms", () => sleep(1)],
    ["sleep20ms", () => sleep(20)],
    ["arithmetic20ms", async () => arithmetic(20)],
  ] as const) {
    const xs: number[] = [];
    for (let i = 0; i < opts.reps; i++) {
      await gap();
      xs.push(work());
    }
    const p50 = describe(xs).p50!;
    out[label] = { p50Us: round(p50), overHot: round(p50 / hotP50) };
    console.log(`after ${label}: p50 ${round(p50)} us (${round(p50 / hotP50)}x hot)`);
  }
  console.log(JSON.stringify(out));
} finally {
  tok.free();
}
if (sink < 0) console.log(sink); // keeps the work from being optimised away
