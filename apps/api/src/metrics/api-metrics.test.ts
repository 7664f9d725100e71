// /metrics shows a decode worker's failed KV pulls by reason, apart from the prefill's secret refusals.
import { describe, expect, it } from "vitest";
import { createApiMetrics } from "./api-metrics.js";

const base = { activeRequests: 0, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 8, generatedTokens: 0, pinnedExports: 0, draining: false };

describe("api metrics", () => {
  it("trtd_kv_pull_failures_total separates lease expiries from transport failures, per decode instance", () => {
    const m = createApiMetrics(() => [
      { component: "decode", instance: "d1", load: { ...base, kvPullFailures: { lease_expired: 3, transport: 2, unauthorized: 0 } } },
      { component: "prefill", instance: "p1", load: { ...base, kvPullsRefused: { bad_secret: 1 } } },
    ]);
    const text = m.registry.render();
    expect(text).toContain('trtd_kv_pull_failures_total{component="decode",instance="d1",reason="lease_expired"} 3');
    expect(text).toContain('trtd_kv_pull_failures_total{component="decode",instance="d1",reason="transport"} 2');
    expect(text).toContain('trtd_kv_pull_refused_total{component="prefill",instance="p1",reason="bad_secret"} 1');
    expect(text).not.toMatch(/trtd_kv_pull_failures_total\{[^}]*instance="p1"/);
  });
});
