// nats-server restarted mid-load (real processes: 1 prefill + 1 decode worker and the api): every component
// reconnects; streams in flight complete or end with a clear error, none hangs; new requests succeed within
// 5 s of the restart, and then a batch of 8 all complete; nothing is left in the executors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, eventually, startApp, startNats, stopAll, waitForWorkers, workerArgs, workersIdle, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";

const NS = "rel-nats";
let nats: NatsServerHandle;
let api: AppProcess;

beforeAll(async () => {
  nats = await startNats();
  [, , api] = await Promise.all([
    startApp("prefill", workerArgs(nats.uri, NS)),
    startApp("decode", workerArgs(nats.uri, NS, ["--max-batch-size", "16"])),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"])),
  ]);
  await waitForWorkers(api.url, 1, 1);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

describe("nats-server restart", () => {
  it("in-flight requests complete or fail clearly; new requests succeed within 5 s of the restart, then a batch of 8 all complete", async () => {
    const ps = prompts(4);
    const seen = new Array<number>(ps.length).fill(0);
    let restarted: Promise<number> | undefined;
    const port = nats.port;
    const restart = async () => {
      await nats.stop();
      await new Promise((r) => setTimeout(r, 300));
      nats = await startNats({ port });
      return performance.now();
    };
    const inFlight = await Promise.all(
      ps.map((p, i) =>
        streamCompletion(api.url, { prompt: p, max_tokens: 400, temperature: 0 }, {
          timeoutMs: 30_000,
          onChunk: (n) => {
            seen[i] = n;
            if (!restarted && seen.every((x) => x >= 3)) restarted = restart();
          },
        }),
      ),
    );
    expect(restarted).toBeDefined();
    // The restart happened under load: every stream had its first tokens before it.
    expect(seen.every((n) => n >= 3)).toBe(true);
    const upAt = await restarted!;
    for (const r of inFlight) {
      // Either the whole answer, or a clear error event - never a silent cut or a hang.
      if (r.error) expect(["worker_gone", "worker_failed", "no_workers_available", "deadline_exceeded"]).toContain(r.error.code);
      else expect(r.finishReason).toBe("length");
      expect(r.sawDone || !!r.error).toBe(true);
      expect(r.totalMs).toBeLessThan(20_000);
    }
    // New requests: the first full success counts, within 5 s of the server being back.
    const tookMs = await eventually(
      async () => {
        const r = await streamCompletion(api.url, { prompt: ps[0], max_tokens: 8, temperature: 0 }, { timeoutMs: 4000 });
        return r.finishReason === "length";
      },
      5000,
      "a request to succeed after the restart",
    );
    const sinceUp = performance.now() - upAt;
    expect(sinceUp).toBeLessThan(5000);
    // Then a full batch, all of which must complete: a minimum of AFTER completions, not just the first one
    // (the in-flight streams may all have ended with clear errors, which the checks above allow).
    const AFTER = 8;
    const after = await Promise.all(prompts(AFTER).map((p) => streamCompletion(api.url, { prompt: p, max_tokens: 16, temperature: 0 }, { timeoutMs: 20_000 })));
    const completed = after.filter((r) => !r.error && r.finishReason === "length" && r.sawDone && r.chunks > 0);
    expect(completed.map((r) => r.status)).toEqual(Array(AFTER).fill(200));
    expect(completed).toHaveLength(AFTER);
    console.log(`nats restart: ${inFlight.filter((r) => !r.error).length}/${inFlight.length} in-flight completed, ${inFlight.filter((r) => r.error).length} failed clearly (${[...new Set(inFlight.map((r) => r.error?.code).filter(Boolean))].join(", ")}); new requests ok ${Math.round(sinceUp)} ms after the restart (polled ${tookMs} ms), then ${completed.length}/${AFTER} completed`);
    await waitForWorkers(api.url, 1, 1, 10_000);
    await eventually(() => workersIdle(api.url), 5000, "idle executors after the restart");
  });
});
