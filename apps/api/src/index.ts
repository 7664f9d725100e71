// @trtd/api: the OpenAI-compatible HTTP layer and the router, usable as a library (the launcher's
// single-process mode) and as a process (main.ts).
export type { ApiAppOptions } from "./app.js";
export type { GenerationBackend, Readiness } from "./backend.js";
export type { TextCodec, StreamingDetokenizer, ChatMessage, ChatTool, ChatToolCall, ChatEncodeOptions } from "./text-codec.js";
export type { ToolCallFormat, ToolCallParserMode } from "./openai/tool-calls.js";
export { TOOL_CALL_PARSER_MODES } from "./openai/tool-calls.js";
export type { ReasoningParserMode } from "./openai/reasoning.js";
export { REASONING_PARSER_MODES } from "./openai/reasoning.js";
export type { ServerLimits } from "./openai/limits.js";
export type { ApiMetrics } from "./metrics/api-metrics.js";
export type { OpenAIErrorBody, ApiErrorCode, ApiErrorKind, ApiErrorStatus, OpenAIErrorType } from "./errors.js";
export type { Workers, WorkerInstance, WorkerRole, DecodeSelector, PrefillPolicyOptions, PrefillDecision, RouterOptions, RouteDecision } from "./router/index.js";
export { createApiApp } from "./app.js";
export { TokenizerCodec } from "./tokenizer-adapter.js";
export { createApiMetrics } from "./metrics/api-metrics.js";
export { DEFAULT_LIMITS } from "./openai/limits.js";
export {
  ApiError,
  ApiErrorCodes,
  API_ERROR_CATALOGUE,
  InvalidRequestError,
  RequestTooLargeError,
  AuthenticationError,
  NotFoundError,
  NoWorkersError,
  OverloadedError,
  WorkerGoneError,
  WorkerFailedError,
  DeadlineExceededError,
  TokenizerFailedError,
  InternalError,
} from "./errors.js";
export { Router, RequestPlaneWorkers, LeastLoadedSelector, PrefillPolicy, PREFILL_POLICY_DEFAULTS, estimatedLoad } from "./router/index.js";
export { KvIndex, KvAwareSelector, RoundRobinSelector, KV_SELECTOR_DEFAULTS, ROUTER_MODES } from "./router/index.js";
export type { KvIndexOptions, KvSelectorWeights, RouterMode } from "./router/index.js";
export type { ApiServerOptions, RunningApiServer } from "./server.js";
export type { ApiCli } from "./cli.js";
export { startApiServer, contextLengthOf } from "./server.js";
export { parseApiCli, API_USAGE, apiFlagOptions } from "./cli.js";
