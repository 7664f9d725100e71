// SIGTERM on each app drains: requests already admitted finish completely, then the process exits 0.
// Real processes: nats-server, 1 prefill + 2 decode workers, the api.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { apiArgs, startApp, startNats, stopAll, waitForWorkers, workerArgs, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";

const NS = "rel-drain";
let nats: NatsServerHandle;
let api: AppProcess;
let prefill: AppProcess;
let decodes: AppProcess[];

beforeAll(async () => {
  nats = await startNats();
  const w = () => workerArgs(nats.uri, NS, ["--max-batch-size", "16", "--grace-ms", "20000"]);
  let d1: AppProcess, d2: AppProcess;
  [prefill, d1, d2, api] = await Promise.all([
    startApp("prefill", w()),
    startApp("decode", w()),
    startApp("decode", w()),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1", "--grace-ms", "20000"])),
  ]);
  decodes = [d1, d2];
  await waitForWorkers(api.url, 2, 1);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
});

const greedy = (prompt: string, max_tokens: number) => ({ prompt, max_tokens, temperature: 0 });

/** Streams `ps`, sends `signal` to `target` once every stream has `after` chunks; returns the results. */
async function streamsWithSignal(apiUrl: string, ps: string[], max: number, target: AppProcess, after = 3) {
  const seen = new Array<number>(ps.length).fill(0);
  let sent = false;
  const results = await Promise.all(
    ps.map((p, i) =>
      streamCompletion(apiUrl, greedy(p, max), {
        onChunk: (n) => {
          seen[i] = n;
          if (!sent && seen.every((x) => x >= after)) {
            sent = true;
            target.kill("SIGTERM");
          }
        },
      }),
    ),
  );
  expect(sent).toBe(true);
  return results;
}

describe("SIGTERM drains", () => {
  it("a decode worker finishes the streams it holds, then exits 0; the other takes new work", async () => {
    const ps = prompts(4);
    const reference = await Promise.all(ps.map((p) => streamCompletion(api.url, greedy(p, 120))));
    const results = await streamsWithSignal(api.url, ps, 120, decodes[0]);
    for (let i = 0; i < ps.length; i++) {
      expect(results[i].error).toBeUndefined();
      expect(results[i].finishReason).toBe("length");
      expect(results[i].text).toBe(reference[i].text);
    }
    expect(await decodes[0].exited).toEqual({ code: 0, signal: null });
    const after = await streamCompletion(api.url, greedy(ps[0], 120));
    expect(after.text).toBe(reference[0].text);
  });

  it("a prefill worker finishes the prefills it holds, then exits 0; requests after it run aggregated", async () => {
    await waitForWorkers(api.url, 1, 1);
    const ps = prompts(6).map((p) => `${p} ${"and the story went on, ".repeat(100)}`);
    const reference = await Promise.all(ps.map((p) => streamCompletion(api.url, greedy(p, 8))));
    const running = ps.map((p) => streamCompletion(api.url, greedy(p, 8)));
    await new Promise((r) => setTimeout(r, 20));
    prefill.kill("SIGTERM");
    const results = await Promise.all(running);
    for (let i = 0; i < ps.length; i++) {
      expect(results[i].error).toBeUndefined();
      expect(results[i].text).toBe(reference[i].text);
    }
    expect(await prefill.exited).toEqual({ code: 0, signal: null });
  });

  it("the api finishes the streams it serves, then exits 0 and takes no new connections", async () => {
    const ps = prompts(4);
    const reference = await Promise.all(ps.map((p) => streamCompletion(api.url, greedy(p, 120))));
    const results = await streamsWithSignal(api.url, ps, 120, api);
    for (let i = 0; i < ps.length; i++) {
      expect(results[i].error).toBeUndefined();
      expect(results[i].finishReason).toBe("length");
      expect(results[i].sawDone).toBe(true);
      expect(results[i].text).toBe(reference[i].text);
    }
    expect(await api.exited).toEqual({ code: 0, signal: null });
    await expect(fetch(`${api.url}/health`)).rejects.toThrow();
  });
});
