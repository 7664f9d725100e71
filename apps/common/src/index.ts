export type {
  WireSampling,
  WireTokenLogprobs,
  GenerateRequest,
  PrefillResult,
  DecodeRequest,
  DecodeChunk,
  KvTransferFigures,
  FinishReason,
  ExecutionMode,
  WorkerLoad,
} from "./protocol.js";
export type { ExecutorFlags, ExecutorName } from "./cli.js";
export type { ShutdownOptions } from "./lifecycle.js";
export { DECODE_FEATURES, DecodeFeatures, FinishReasons, ExecutionModes, Endpoints, ProtocolError, parseDecodeRequest, workerLoadFromStats } from "./protocol.js";
export type { FlagValues } from "./cli.js";
export {
  DEFAULT_MODEL_DIR,
  UsageError,
  parseFlags,
  valueFlags,
  stringFlag,
  intFlag,
  optionalIntFlag,
  portFlag,
  fractionFlag,
  requestPlaneFlagOptions,
  requestPlaneFlags,
  directDataPathFlags,
  directDataPathArgv,
  DIRECT_DATA_PATH_USAGE,
  natsUriOf,
  namespaceFlag,
  requestPlaneUriFlag,
  executorFlagOptions,
  executorFlags,
  executorArgv,
  EXECUTOR_DEFAULTS,
  EXECUTOR_NAMES,
} from "./cli.js";
export { onShutdownSignal, makeLogger, PARENT_PID_ENV } from "./lifecycle.js";
export type { WorkerRole, WorkerRuntimeOptions, RunningWorker } from "./worker-runtime.js";
export { serveWorker, DEFAULT_NAMESPACE, DEFAULT_GRACE_MS } from "./worker-runtime.js";
export type { KvEventPoll, KvEventReply, KvEventSource, KvEventPublisherOptions } from "./kv-events.js";
export { KvEventPublisher, kvEventSubjects, packHashes, unpackHashes } from "./kv-events.js";
export type { ExecutorFinishReason } from "./executor-mapping.js";
export { finishReasonOf, executorSampling, executorControls, executorOpenOptions, wireLogprobs } from "./executor-mapping.js";
export type { WorkerCli } from "./worker-cli.js";
export { parseWorkerCli, workerUsage, workerFlagOptions, DEFAULT_KV_OFFER_TTL_MS } from "./worker-cli.js";
export type { ReadyApp, WorkerReady, ApiReady, LauncherReady } from "./ready-line.js";
export { READY_PATTERNS, workerReadyLine, parseWorkerReadyLine, apiReadyLine, parseApiReadyLine, launcherReadyLine, parseLauncherReadyLine, launcherChildPids } from "./ready-line.js";
export type { StartWorker } from "./worker-main.js";
export { runWorkerProcess } from "./worker-main.js";
export { checkNatsAuth, checkReadable, natsAuthFromEnv, natsInboxPrefix, readNatsCredentials, NATS_AUTH_ENV } from "./nats-auth.js";
export type { NatsAuthEnv, NatsAuthKey, NatsRole } from "./nats-auth.js";
export { WorkerGrammars } from "./grammars.js";
export type { WorkerGrammarStats } from "./grammars.js";
export type { WorkerIdentity, IdentityMismatch, IdentityMismatchReason } from "./identity.js";
export { DeploymentIdentity, IdentityMismatchReasons, identityMismatch, parseWorkerIdentity, workerIdentity } from "./identity.js";
export type { EngineProgressSample } from "./progress.js";
export { ProgressWatchdog, DEFAULT_STALL_TIMEOUT_MS } from "./progress.js";
export type { WorkerHealthMessage } from "./supervision.js";
export { isWorkerHealthMessage, reportHealthToSupervisor, HEALTH_REPORT_INTERVAL_MS, WORKER_HEALTH_MESSAGE } from "./supervision.js";
// Stage stamps (TRTD_TRACE_STAGES=1) for the api's and the workers' TTFT breakdown (apps/api/bench/stages.ts).
export { traceStage } from "@trtd/process";
