// Test-only helpers shared by the test suites and the benches (see README.md).
export { repoRoot, modelDir, tinyModel, appArgv } from "./paths.js";
export { startApp } from "./start-app.js";
export { workerGauges, metricValue } from "./metrics.js";
export { eventually } from "./eventually.js";
export { mulberry32, pseudoTokens } from "./prng.js";
export { logSoftmax } from "./log-softmax.js";
export { thrownMessage } from "./thrown.js";
export { LLAMA31_CHAT_TEMPLATE, HERMES_TOOLS_TEMPLATE } from "./chat-templates.js";

export type { AppProcess, AppExit, StartAppOptions } from "./start-app.js";
export type { WorkerGauge } from "./metrics.js";
export type { EventuallyOptions } from "./eventually.js";
