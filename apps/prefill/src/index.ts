// @trtd/prefill: the prefill (context) worker, as a library (the launcher's single-process mode) and a process.
export type { PrefillHandlerDeps } from "./handler.js";
export type { PrefillWorkerOptions, RunningPrefillWorker } from "./worker.js";
export { createPrefillHandler, PrefillFailedError } from "./handler.js";
export { startPrefillWorker } from "./worker.js";
