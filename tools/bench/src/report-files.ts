import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RequestRecord } from "./client.js";
import { sweepCharts, type NamedSweep } from "./plots.js";

/** The JSON form of a sweep without per-request records (those go to records.jsonl). */
export function sweepJson({ name, legend, sweep }: NamedSweep): unknown {
  return {
    name,
    legend,
    slo: sweep.slo,
    goodput: sweep.goodput,
    points: sweep.points.map((p) => ({ rate: p.rate, arrival: p.arrival, maxConcurrency: p.maxConcurrency, ...p.summary, serverMetrics: p.serverMetrics })),
  };
}

/** Rounds every float to 3 decimals so records stay readable and small. */
const round = (_k: string, v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v);

/**
 * Writes `results.json` (config, summaries, goodput), `records.jsonl` (one line per request, with its sweep
 * and rate) and the SVG charts into `dir`. Returns the paths written.
 */
export function writeReport(dir: string, sweeps: readonly NamedSweep[], meta: Record<string, unknown>): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const put = (file: string, text: string) => {
    writeFileSync(join(dir, file), text);
    written.push(join(dir, file));
  };
  put("results.json", JSON.stringify({ ...meta, sweeps: sweeps.map(sweepJson) }, round, 2) + "\n");
  const lines: string[] = [];
  for (const { name, sweep } of sweeps) {
    for (const p of sweep.points) for (const r of p.records) lines.push(JSON.stringify({ sweep: name, rate: p.rate, ...(r as RequestRecord) }, round));
  }
  put("records.jsonl", lines.join("\n") + (lines.length ? "\n" : ""));
  for (const [file, svg] of Object.entries(sweepCharts(sweeps))) put(file, svg);
  return written;
}
