import type { SweepResult } from "./sweep.js";
import { lineChart, type Series } from "./svg-chart.js";

/** A sweep with the name it gets in legends (e.g. an arrangement: "1 prefill + 1 decode"). */
export interface NamedSweep {
  name: string;
  /** Short name for chart legends (default: name). */
  legend?: string;
  sweep: SweepResult;
}

/** The charts of one or more sweeps, by file name: latency, SLO attainment and throughput against the rate. */
export function sweepCharts(sweeps: readonly NamedSweep[]): Record<string, string> {
  const slo = sweeps[0]?.sweep.slo;
  const series = (metric: (p: SweepResult["points"][number]) => number | undefined, suffix: string, dashed = false): Series[] =>
    sweeps.map(({ name, legend, sweep }, i) => ({
      name: `${legend ?? name}${suffix}`,
      dashed,
      colorIndex: i,
      points: sweep.points.flatMap((p) => {
        const v = metric(p);
        return v === undefined ? [] : [[p.rate, v] as const];
      }),
    }));
  return {
    "ttft.svg": lineChart({
      title: "Time to first token",
      xLabel: "request rate (req/s)",
      yLabel: "TTFT (ms)",
      series: [...series((p) => p.summary.ttftMs.p50, " p50"), ...series((p) => p.summary.ttftMs.p90, " p90", true)],
      guides: slo ? [{ y: slo.ttftMs, label: `SLO ${slo.ttftMs} ms` }] : [],
    }),
    "tpot.svg": lineChart({
      title: "Time per output token",
      xLabel: "request rate (req/s)",
      yLabel: "TPOT (ms)",
      series: [...series((p) => p.summary.tpotMs.p50, " p50"), ...series((p) => p.summary.tpotMs.p90, " p90", true)],
      guides: slo ? [{ y: slo.tpotMs, label: `SLO ${slo.tpotMs} ms` }] : [],
    }),
    "attainment.svg": lineChart({
      title: "Requests meeting both SLOs",
      xLabel: "request rate (req/s)",
      yLabel: "SLO attainment (%)",
      series: series((p) => (p.summary.sloAttainment === undefined ? undefined : p.summary.sloAttainment * 100), ""),
      guides: [{ y: (sweeps[0]?.sweep.goodput.target ?? 0.9) * 100, label: "goodput target" }],
    }),
    "throughput.svg": lineChart({
      title: "Output token throughput",
      xLabel: "request rate (req/s)",
      yLabel: "output tokens/s",
      series: series((p) => p.summary.outputTokenThroughput, ""),
    }),
  };
}
