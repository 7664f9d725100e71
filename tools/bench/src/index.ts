// @trtd/bench: a load generator for any OpenAI-compatible streaming server, with goodput (DistServe) and SVG plots.
export type { ArrivalOptions, ArrivalProcess } from "./arrivals.js";
export type { ClientOptions, Endpoint, RequestRecord } from "./client.js";
export type { BenchRequest, RandomDatasetOptions } from "./dataset.js";
export type { LengthDistribution } from "./distributions.js";
export type { BenchErrorCode } from "./errors.js";
export type { ExecutorSettings, FrontendOverhead, FrontendOverheadOptions } from "./frontend-overhead.js";
export type { AttainmentPoint, Goodput } from "./goodput.js";
export type { LoadRunOptions, LoadRunResult } from "./load-run.js";
export type { NamedSweep } from "./plots.js";
export type { ProgressSink } from "./progress.js";
export type { Random } from "./random.js";
export type { ManagedProcess } from "./processes.js";
export type { MetricsSnapshot } from "./server-metrics.js";
export type { SseEvent } from "./sse.js";
export type { Distribution, RunSummary, Slo } from "./stats.js";
export type { LineChartOptions, Series } from "./svg-chart.js";
export type { SweepOptions, SweepResult } from "./sweep.js";

export { arrivalTimes } from "./arrivals.js";
export { endpointUrl, requestBody, sendStreamingRequest } from "./client.js";
export { promptsFileDataset, randomDataset, randomText } from "./dataset.js";
export { parseLengthDistribution } from "./distributions.js";
export {
  BenchError,
  BenchErrorCodes,
  InvalidDistributionError,
  InvalidOptionError,
  PromptsFileError,
  ServerStartupError,
  SseProtocolError,
} from "./errors.js";
export { measureFrontendOverhead } from "./frontend-overhead.js";
export { computeGoodput } from "./goodput.js";
export { runLoad } from "./load-run.js";
export { freePort, startProcess } from "./processes.js";
export { sweepCharts } from "./plots.js";
export { silentProgress, stderrProgress } from "./progress.js";
export { createRandom } from "./random.js";
export { writeReport } from "./report-files.js";
export { metricsDelta, parsePrometheusText, scrapeMetrics } from "./server-metrics.js";
export { SseParser } from "./sse.js";
export { describe, meetsSlo, percentile, summarize } from "./stats.js";
export { escapeXml, lineChart, niceTicks } from "./svg-chart.js";
export { runSweep } from "./sweep.js";
export { PROMPT_WORDS } from "./words.js";
