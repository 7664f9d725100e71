// The bench CLI: `run` (one rate or a sweep against any OpenAI-compatible server), `plot` (charts from a
// results.json), `experiment` (disaggregated vs aggregated on the trtd stack). Progress goes to stderr; the last
// stdout line is one JSON object with the figures.
//   node --import tsx --conditions=source tools/bench/src/cli.ts run --base-url http://127.0.0.1:8000 --model tiny --rates 1,2,4
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { BenchError, InvalidOptionError } from "./errors.js";
import { parseFlags, parseRates, stringFlag, workloadFlagOptions, workloadFromFlags } from "./cli-options.js";
import { sweepCharts, type NamedSweep } from "./plots.js";
import { stderrProgress } from "./progress.js";
import { writeReport } from "./report-files.js";
import { runSweep } from "./sweep.js";


const USAGE = `usage: cli.ts <command> [flags]

  run         --base-url URL --model NAME [--api-key KEY] (--rate R | --rates R1,R2,...)
              [--num-requests 40] [--input-len uniform:200:400] [--output-len 64] [--prompts-file FILE]
              [--arrival poisson|fixed] [--max-concurrency N] [--seed 0] [--time-limit 120] [--request-timeout 60]
              [--slo-ttft-ms 1000] [--slo-tpot-ms 100] [--goodput-target 0.9] [--endpoint chat|completions]
              [--extra-body JSON] [--out DIR]
  plot        --in results.json [--out DIR]
  experiment  see \`cli.ts experiment --help\`

Length distributions: N | fixed:N | uniform:MIN:MAX | normal:MEAN:STD | lognormal:MEDIAN:SIGMA.
Rates are requests/s; "inf" sends all at once (bounded by --max-concurrency).`;

async function runCommand(argv: string[]): Promise<Record<string, unknown>> {
  const flags = parseFlags(argv, {
    ...workloadFlagOptions,
    "base-url": { type: "string" },
    model: { type: "string" },
    "api-key": { type: "string" },
    rate: { type: "string" },
    rates: { type: "string" },
  });
  const baseUrl = stringFlag(flags, "base-url");
  const model = stringFlag(flags, "model");
  if (flags.rate !== undefined && flags.rates !== undefined) throw new InvalidOptionError("give --rate or --rates, not both");
  const rates = parseRates(stringFlag(flags, "rates", typeof flags.rate === "string" ? flags.rate : "1"));
  const w = workloadFromFlags(flags, { numRequests: 40, inputLen: "uniform:200:400", outputLen: "64", sloTtftMs: 1000, sloTpotMs: 100, timeLimitS: 120 });
  const progress = stderrProgress();
  const sweep = await runSweep({
    baseUrl,
    model,
    apiKey: flags["api-key"] as string | undefined,
    endpoint: w.endpoint,
    extraBody: w.extraBody,
    requestTimeoutMs: w.requestTimeoutMs,
    requests: w.requests,
    rates,
    arrival: w.arrival,
    seed: w.seed,
    maxConcurrency: w.maxConcurrency,
    timeLimitS: w.timeLimitS,
    slo: w.slo,
    target: w.target,
    progress,
  });
  const named: NamedSweep[] = [{ name: model, sweep }];
  const meta = { tool: "@trtd/bench run", date: new Date().toISOString(), baseUrl, model, workload: w.description, slo: w.slo };
  if (typeof flags.out === "string") {
    const files = writeReport(flags.out, named, meta);
    process.stderr.write(`wrote ${files.join(", ")}\n`);
  }
  return {
    goodput: sweep.goodput,
    points: sweep.points.map((p) => ({
      rate: p.rate,
      completed: p.summary.completed,
      failed: p.summary.failed,
      ttftP50Ms: p.summary.ttftMs.p50,
      ttftP90Ms: p.summary.ttftMs.p90,
      tpotP50Ms: p.summary.tpotMs.p50,
      tpotP90Ms: p.summary.tpotMs.p90,
      outputTokPerS: p.summary.outputTokenThroughput,
      sloAttainment: p.summary.sloAttainment,
    })),
  };
}

/** Rebuilds sweeps (without per-request records) from a results.json written by writeReport. */
export function sweepsFromResults(json: { sweeps?: { name: string; legend?: string; slo: NamedSweep["sweep"]["slo"]; goodput: NamedSweep["sweep"]["goodput"]; points: Record<string, unknown>[] }[] }): NamedSweep[] {
  if (!Array.isArray(json.sweeps)) throw new InvalidOptionError("results file has no 'sweeps' array");
  return json.sweeps.map((s) => ({
    name: s.name,
    legend: s.legend,
    sweep: {
      slo: s.slo,
      goodput: s.goodput,
      points: s.points.map(({ rate, arrival, maxConcurrency, serverMetrics, ...summary }) => ({
        rate: rate as number,
        arrival: arrival as "poisson" | "fixed",
        maxConcurrency: maxConcurrency as number | null,
        summary: summary as never,
        serverMetrics: serverMetrics as Record<string, number> | undefined,
        records: [],
      })),
    },
  }));
}

function plotCommand(argv: string[]): Record<string, unknown> {
  const flags = parseFlags(argv, { in: { type: "string" }, out: { type: "string" } });
  const input = stringFlag(flags, "in");
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(input, "utf8"));
  } catch (cause) {
    throw new InvalidOptionError(`cannot read ${input} as JSON`, { cause });
  }
  const out = stringFlag(flags, "out", join(input, ".."));
  mkdirSync(out, { recursive: true });
  const written: string[] = [];
  for (const [file, svg] of Object.entries(sweepCharts(sweepsFromResults(json as never)))) {
    writeFileSync(join(out, file), svg);
    written.push(join(out, file));
  }
  return { written };
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (!command || command === "--help" || command === "-h" || rest.includes("--help")) {
      if (command === "experiment") {
        const { EXPERIMENT_USAGE } = await import("./experiment.js");
        process.stdout.write(EXPERIMENT_USAGE + "\n");
      } else process.stdout.write(USAGE + "\n");
      return command ? 0 : 2;
    }
    let result: Record<string, unknown>;
    if (command === "run") result = await runCommand(rest);
    else if (command === "plot") result = plotCommand(rest);
    else if (command === "experiment") {
      const { experimentCommand } = await import("./experiment.js");
      result = await experimentCommand(rest);
    } else throw new InvalidOptionError(`unknown command "${command}"\n${USAGE}`);
    process.stdout.write(JSON.stringify(result) + "\n");
    return 0;
  } catch (err) {
    if (err instanceof BenchError) {
      process.stderr.write(`${err.name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
