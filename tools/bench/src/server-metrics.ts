/**
 * Optional server-side counters read from a Prometheus `/metrics` endpoint (the trtd api has one): how requests
 * were routed and how much KV moved. Servers without it simply give nothing.
 */

/** Counter series read from /metrics: `name{labels}` → value. */
export type MetricsSnapshot = Record<string, number>;

/** Series names (prefixes) worth reporting beside the latency figures. */
export const REPORTED_SERIES = ["trtd_routed_requests_total", "trtd_prefill_fallbacks_total", "trtd_kv_transfer_bytes_total", "trtd_kv_transfer_seconds_sum", "trtd_kv_transfer_seconds_count"];

/** Parses the text exposition format, keeping only series whose name starts with one of `prefixes`. */
export function parsePrometheusText(text: string, prefixes: readonly string[] = REPORTED_SERIES): MetricsSnapshot {
  const out: MetricsSnapshot = {};
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/);
    if (!m || !prefixes.some((p) => m[1].startsWith(p))) continue;
    const v = Number(m[2]);
    if (Number.isFinite(v)) out[m[1]] = v;
  }
  return out;
}

/** GET {baseUrl}/metrics; undefined when the server has none or does not answer within 3 s. */
export async function scrapeMetrics(baseUrl: string): Promise<MetricsSnapshot | undefined> {
  try {
    const res = await fetch(`${baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "")}/metrics`, { signal: AbortSignal.timeout(3000) });
    const text = await res.text();
    return res.ok ? parsePrometheusText(text) : undefined;
  } catch {
    return undefined;
  }
}

/** after - before for every series in `after` (a series missing before counts from 0); zero deltas dropped. */
export function metricsDelta(before: MetricsSnapshot | undefined, after: MetricsSnapshot | undefined): MetricsSnapshot | undefined {
  if (!after) return undefined;
  const out: MetricsSnapshot = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before?.[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}
