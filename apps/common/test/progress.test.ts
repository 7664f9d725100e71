import { describe, expect, it } from "vitest";
import { ProgressWatchdog, type EngineProgressSample } from "../src/index.js";

describe("ProgressWatchdog", () => {
  it("stalled = running requests and no iteration for the bound; progress or an idle engine clears it", () => {
    let t = 0;
    const s: EngineProgressSample = { iterations: 0, activeRequests: 0 };
    const flips: Array<[boolean, number]> = [];
    const w = new ProgressWatchdog(() => ({ ...s }), 1000, (stalled, ms) => flips.push([stalled, ms]), () => t);
    // Idle for long: not stalled.
    t = 5000;
    expect(w.check()).toBe(false);
    // Work and iterations advancing: not stalled.
    s.activeRequests = 2;
    for (let i = 0; i < 10; i++) {
      t += 400;
      s.iterations++;
      expect(w.check()).toBe(false);
    }
    // Work and no iteration: stalled once the bound has passed, reported once.
    t += 999;
    expect(w.check()).toBe(false);
    t += 1;
    expect(w.check()).toBe(true);
    t += 500;
    expect(w.check()).toBe(true);
    expect(flips).toEqual([[true, 1000]]);
    // One iteration: healthy again.
    s.iterations++;
    expect(w.check()).toBe(false);
    expect(flips).toEqual([[true, 1000], [false, 0]]);
    // Stalled again, then the work goes away (cancelled): healthy.
    t += 1500;
    expect(w.check()).toBe(true);
    s.activeRequests = 0;
    expect(w.check()).toBe(false);
    expect(w.stalled).toBe(false);
  });
});
