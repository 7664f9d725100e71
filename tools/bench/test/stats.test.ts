import { describe as group, expect, it } from "vitest";
import { computeGoodput, describe, meetsSlo, percentile, summarize, type RequestRecord } from "../src/index.js";

function rec(p: Partial<RequestRecord> & { index: number }): RequestRecord {
  return { scheduledAtMs: 0, sentAtMs: 0, ok: true, itlMs: [], e2eMs: 100, outputTokens: 10, contentDeltas: 10, ...p };
}

group("percentile", () => {
  it("matches hand-computed linear interpolation (numpy default)", () => {
    const v = [15, 20, 35, 40, 50];
    // rank = p/100 * (n-1): p50 -> 2 -> 35; p90 -> 3.6 -> 40 + 0.6*10 = 46; p99 -> 3.96 -> 49.6; p25 -> 1 -> 20
    expect(percentile(v, 50)).toBe(35);
    expect(percentile(v, 90)).toBeCloseTo(46, 10);
    expect(percentile(v, 99)).toBeCloseTo(49.6, 10);
    expect(percentile(v, 25)).toBe(20);
    expect(percentile(v, 0)).toBe(15);
    expect(percentile(v, 100)).toBe(50);
    // unsorted input, even count: p50 of [1,2,3,4] = 2.5
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeUndefined();
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });

  it("describe gives count, mean, percentiles and max", () => {
    const d = describe([1, 2, 3, 4, 10]);
    expect(d).toMatchObject({ count: 5, mean: 4, p50: 3, max: 10 });
    expect(d.p90).toBeCloseTo(7.6, 10); // rank 3.6: 4 + 0.6 * 6
    expect(d.p99).toBeCloseTo(9.76, 10); // rank 3.96: 4 + 0.96 * 6
    expect(describe([])).toEqual({ count: 0 });
  });
});

group("SLO and summaries", () => {
  const slo = { ttftMs: 100, tpotMs: 20 };
  it("meetsSlo needs ok, TTFT and TPOT within limits (limits inclusive)", () => {
    expect(meetsSlo(rec({ index: 0, ttftMs: 100, tpotMs: 20 }), slo)).toBe(true);
    expect(meetsSlo(rec({ index: 0, ttftMs: 101, tpotMs: 5 }), slo)).toBe(false);
    expect(meetsSlo(rec({ index: 0, ttftMs: 5, tpotMs: 21 }), slo)).toBe(false);
    expect(meetsSlo(rec({ index: 0, ttftMs: 5, tpotMs: undefined, outputTokens: 1 }), slo)).toBe(true);
    expect(meetsSlo(rec({ index: 0, ok: false, ttftMs: 5, tpotMs: 5 }), slo)).toBe(false);
    expect(meetsSlo(rec({ index: 0 }), slo)).toBe(false); // no TTFT: never started streaming
  });

  it("summarize counts throughput over first send to last completion; failures miss the SLO", () => {
    const records = [
      rec({ index: 0, sentAtMs: 0, e2eMs: 1000, ttftMs: 50, tpotMs: 10, itlMs: [10, 10], outputTokens: 10, promptTokens: 100 }),
      rec({ index: 1, sentAtMs: 500, e2eMs: 1500, ttftMs: 150, tpotMs: 10, itlMs: [30], outputTokens: 20, promptTokens: 100 }),
      rec({ index: 2, sentAtMs: 1000, e2eMs: 200, ok: false, error: "HTTP 500: boom", outputTokens: 0 }),
      rec({ index: 3, sentAtMs: 1500, e2eMs: 500, ttftMs: 20, tpotMs: 5, outputTokens: 30 }),
    ];
    const s = summarize(records, { slo, notSent: 2 });
    expect(s.sent).toBe(4);
    expect(s.completed).toBe(3);
    expect(s.failed).toBe(1);
    expect(s.notSent).toBe(2);
    expect(s.durationS).toBe(2); // 0 .. max(1000, 2000, 1200, 2000) ms
    expect(s.requestThroughput).toBe(1.5);
    expect(s.outputTokenThroughput).toBe(30); // 60 tokens / 2 s
    expect(s.totalTokenThroughput).toBe(130); // (60 + 200) / 2
    expect(s.meanPromptTokens).toBe(100);
    expect(s.ttftMs.p50).toBe(50);
    expect(s.itlMs.count).toBe(3);
    expect(s.sloAttainment).toBe(0.5); // #0 and #3 of 4 sent
    expect(s.goodRequestThroughput).toBe(1);
    expect(s.errors).toEqual(["HTTP 500: boom"]);
  });
});

group("goodput", () => {
  it("highest swept rate with >= 90% attainment, interpolated to the crossing", () => {
    const g = computeGoodput([
      { rate: 1, attainment: 1 },
      { rate: 2, attainment: 0.95 },
      { rate: 4, attainment: 0.7 },
      { rate: 8, attainment: 0.1 },
    ]);
    expect(g.sweptRate).toBe(2);
    // crossing between (2, 0.95) and (4, 0.7): 2 + (0.05 / 0.25) * 2 = 2.4
    expect(g.interpolatedRate).toBeCloseTo(2.4, 10);
    expect(g.saturated).toBe(false);
    expect(g.target).toBe(0.9);
    expect(g.highestPassingRate).toBe(2);
  });

  it("stops at the first miss even if a higher rate passes again; input order does not matter", () => {
    const g = computeGoodput([
      { rate: 3, attainment: 0.95 },
      { rate: 1, attainment: 0.95 },
      { rate: 2, attainment: 0.5 },
    ]);
    expect(g.sweptRate).toBe(1);
    expect(g.interpolatedRate).toBeCloseTo(1 + (0.05 / 0.45) * 1, 10);
    expect(g.highestPassingRate).toBe(3);
  });

  it("reports 0 when the lowest rate misses, and saturated when every rate passes", () => {
    expect(computeGoodput([{ rate: 1, attainment: 0.89 }])).toMatchObject({ sweptRate: 0, interpolatedRate: 0, saturated: false, highestPassingRate: 0 });
    expect(computeGoodput([{ rate: 1, attainment: 0.5 }, { rate: 2, attainment: 0.95 }])).toMatchObject({ sweptRate: 0, highestPassingRate: 2 });
    expect(computeGoodput([{ rate: 1, attainment: 0.9 }, { rate: 2, attainment: 1 }])).toMatchObject({ sweptRate: 2, interpolatedRate: 2, saturated: true });
    expect(computeGoodput([{ rate: 1, attainment: 0.85 }, { rate: 2, attainment: 0.8 }], 0.8)).toMatchObject({ sweptRate: 2 });
  });
});

import { metricsDelta, parsePrometheusText } from "../src/server-metrics.js";
import { routingText } from "../src/results-page.js";

group("server metrics", () => {
  it("parses counters from the Prometheus text format and reports per-run deltas and routing", () => {
    const before = parsePrometheusText(
      '# HELP trtd_routed_requests_total x\n# TYPE trtd_routed_requests_total counter\ntrtd_routed_requests_total{mode="disaggregated"} 3\ntrtd_requests_total{code="200"} 9\n',
    );
    expect(before).toEqual({ 'trtd_routed_requests_total{mode="disaggregated"}': 3 });
    const after = parsePrometheusText(
      'trtd_routed_requests_total{mode="disaggregated"} 10\ntrtd_routed_requests_total{mode="aggregated"} 2\ntrtd_kv_transfer_seconds_sum 0.5\ntrtd_kv_transfer_seconds_count 7\nbad line\n',
    );
    const d = metricsDelta(before, after)!;
    expect(d).toEqual({
      'trtd_routed_requests_total{mode="disaggregated"}': 7,
      'trtd_routed_requests_total{mode="aggregated"}': 2,
      trtd_kv_transfer_seconds_sum: 0.5,
      trtd_kv_transfer_seconds_count: 7,
    });
    expect(routingText(d)).toBe("disaggregated 7, aggregated 2");
    expect(routingText(undefined)).toBe("–");
    expect(metricsDelta(before, undefined)).toBeUndefined();
  });
});

import { goodputFor, parseSloList, scaledSlo } from "../src/experiment.js";

group("goodput under another SLO", () => {
  it("is recomputed from the records of each rate", () => {
    const pt = (rate: number, ttfts: number[]) => ({
      rate,
      arrival: "poisson" as const,
      maxConcurrency: null,
      summary: {} as never,
      records: ttfts.map((t, i) => rec({ index: i, ttftMs: t, tpotMs: 10 })),
    });
    const sweep = {
      slo: { ttftMs: 1000, tpotMs: 50 },
      goodput: { target: 0.9, sweptRate: 2, interpolatedRate: 2, saturated: true, highestPassingRate: 2 },
      points: [pt(1, [100, 100, 100, 100]), pt(2, [100, 100, 100, 500])],
    };
    expect(goodputFor(sweep, { ttftMs: 1000, tpotMs: 50 })).toMatchObject({ sweptRate: 2, saturated: true });
    // Under 400 ms the second rate meets 75%: goodput 1, interpolated 1 + (1 - 0.9) / (1 - 0.75) = 1.4
    const g = goodputFor(sweep, { ttftMs: 400, tpotMs: 50 });
    expect(g.sweptRate).toBe(1);
    expect(g.interpolatedRate).toBeCloseTo(1.4, 10);
    expect(goodputFor(sweep, { ttftMs: 400, tpotMs: 5 }).sweptRate).toBe(0);
  });

  it("parses TTFT:TPOT pairs and rejects malformed ones", () => {
    expect(parseSloList("400:50, 1000:20")).toEqual([{ ttftMs: 400, tpotMs: 50 }, { ttftMs: 1000, tpotMs: 20 }]);
    expect(parseSloList("")).toEqual([]);
    expect(() => parseSloList("400")).toThrow(/A:B pairs/);
    expect(() => parseSloList("1:2:3", "--slo-scale")).toThrow(/--slo-scale wants A:B pairs/);
  });

  it("scales an SLO from idle latencies, rounding up", () => {
    expect(scaledSlo({ ttftMs: 101.3, tpotMs: 2.34 }, { ttftMs: 5, tpotMs: 3 })).toEqual({ ttftMs: 507, tpotMs: 7.1 });
  });
});

import { missesText } from "../src/results-page.js";

group("results page", () => {
  it("counts SLO misses by cause", () => {
    const slo = { ttftMs: 100, tpotMs: 10 };
    const rs = [
      rec({ index: 0, ttftMs: 50, tpotMs: 5 }),
      rec({ index: 1, ttftMs: 150, tpotMs: 5 }),
      rec({ index: 2, ttftMs: 150, tpotMs: 20 }),
      rec({ index: 3, ttftMs: 50, tpotMs: 20 }),
      rec({ index: 4, ok: false }),
    ];
    expect(missesText(rs, slo)).toBe("2 / 2 / 1");
    expect(missesText([], slo)).toBe("–");
  });
});
