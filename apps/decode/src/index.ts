// @trtd/decode: the decode (generate) worker, as a library (the launcher's single-process mode) and a process.
export type { DecodeHandlerDeps, KvPullFn, KvDeclineFn, PulledKv } from "./handler.js";
export type { DecodeWorkerOptions, RunningDecodeWorker } from "./worker.js";
export { createDecodeHandler } from "./handler.js";
export { startDecodeWorker } from "./worker.js";
