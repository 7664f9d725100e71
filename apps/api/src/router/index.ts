export type { Workers, WorkerInstance, WorkerRole } from "./workers.js";
export type { DecodeSelector } from "./decode-selector.js";
export type { PrefillPolicyOptions, PrefillDecision } from "./prefill-policy.js";
export type { RouterOptions } from "./router.js";
export { Router, DEFAULT_MAX_REQUESTS_PER_WORKER } from "./router.js";
export { RequestPlaneWorkers } from "./request-plane-workers.js";
export { LeastLoadedSelector, estimatedLoad } from "./decode-selector.js";
export { PrefillPolicy, PREFILL_POLICY_DEFAULTS } from "./prefill-policy.js";
