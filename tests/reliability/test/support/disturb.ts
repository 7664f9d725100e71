// Streams disturbed mid-flight (wedged-workers and wedged-restart tests): 4 greedy streams, a disturbance once each
// has 3 chunks, and the undisturbed reference of the same prompts.
import { expect } from "vitest";
import { metricValue } from "./processes.js";
import { prompts, streamCompletion, type StreamResult } from "./http.js";

export const greedy = (prompt: string) => ({ prompt, max_tokens: 200, temperature: 0 });

/** Streams 4 prompts through the api at `url` (two land on each worker: least loaded), runs `disturb` once each has 3 chunks. */
export async function disturbedStreams(url: string, disturb: () => void): Promise<{ results: StreamResult[]; reference: StreamResult[]; migrated: number }> {
  const ps = prompts(4);
  const reference = await Promise.all(ps.map((p) => streamCompletion(url, greedy(p))));
  const before = await metricValue(url, "trtd_migrated_requests_total");
  const seen = new Array<number>(ps.length).fill(0);
  let done = false;
  const results = await Promise.all(
    ps.map((p, i) =>
      streamCompletion(url, greedy(p), {
        timeoutMs: 30_000,
        onChunk: (n) => {
          seen[i] = n;
          if (!done && seen.every((k) => k >= 3)) {
            done = true;
            disturb();
          }
        },
      }),
    ),
  );
  expect(done).toBe(true);
  return { results, reference, migrated: (await metricValue(url, "trtd_migrated_requests_total")) - before };
}

/**
 * Every disturbed stream ended without an error, with the undisturbed run's text (`stream i` named in a failure), and
 * no gap between its chunks of `maxGapMs` or more; with `atLength`, each also ended at its token limit.
 */
export function expectStreamsIntact(run: { results: StreamResult[]; reference: StreamResult[] }, maxGapMs: number, opts: { atLength?: boolean } = {}): void {
  const { results, reference } = run;
  for (let i = 0; i < results.length; i++) {
    expect(results[i].error).toBeUndefined();
    if (opts.atLength) expect(results[i].finishReason).toBe("length");
    expect(results[i].text, `stream ${i}`).toBe(reference[i].text);
    expect(results[i].maxGapMs).toBeLessThan(maxGapMs);
  }
}
