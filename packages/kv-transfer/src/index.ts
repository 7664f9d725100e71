/**
 * @trtd/kv-transfer: moving a request's KV cache from the prefill worker to the decode worker.
 * Offering side: KvOfferServer (offer → KvHandle). Pulling side: KvPuller (pull(handle, sink)). A party that only
 * passes handles on (the api's router) releases one nobody took with declineKvOffer.
 */
export { describeKvLayout, layoutFromExecutor, assertLayoutCompatible } from "./layout.js";
export { parseKvHandle, serializeKvHandle, TRANSPORT_PREFERENCE, MAX_DEVICE_DESCRIPTOR_BYTES } from "./handle.js";
export { KvOfferServer } from "./offer-server.js";
export { KvPuller, declineKvOffer } from "./puller.js";
export { BufferKvSource, BufferKvSink } from "./segments.js";
export { executorKvSource, executorKvSink } from "./executor-source.js";
export { transferTimeoutMs } from "./limits.js";
export { CHECKSUM_ALGORITHM, checksumImplementation } from "./checksum.js";
export { DEFAULT_NATS_MAX_BYTES, kvNatsSubjects } from "./nats-transport.js";
export { localHostId, sweepStaleRings, ringFilesOf } from "./shm.js";
export { shmStagingAvailable } from "./shm-staging.js";
export {
  KvErrorCodes,
  KvTransferError,
  KvLayoutMismatchError,
  KvChecksumError,
  KvOfferNotFoundError,
  KvOfferExpiredError,
  KvTimeoutError,
  KvPeerLostError,
  KvPayloadTooLargeError,
  KvNoTransportError,
  KvAbortedError,
  KvProtocolError,
  KvSizeMismatchError,
  KvInvalidHandleError,
  KvClosedError,
  KvTransportError,
  KvUnauthorizedError,
  KvPullRefusalReasons,
  KvLeaseExpiredError,
  KvPullFailureReasons,
  kvPullFailureReason,
} from "./errors.js";

export type { KvErrorCode, KvPullRefusalReason, KvPullFailureReason } from "./errors.js";
export type { KvHandle, KvEndpoint, KvTransportName, TcpEndpoint, ShmEndpoint, NatsEndpoint, EngineEndpoint, CudaIpcEndpoint } from "./handle.js";
export type { KvSource, KvSink } from "./segments.js";
export type { ExportingExecutor, ExecutorKvExport, ExecutorKvImport, ImportingExecutor } from "./executor-source.js";
export type { KvTransportStats, KvTransportStatsByName } from "./transport-stats.js";
export type { KvOfferServerOptions, OfferOptions, KvOfferServerStats } from "./offer-server.js";
export type { KvPullerOptions, PullOptions, PullResult, KvPullerStats } from "./puller.js";
export type { OfferReleaseReason, OfferRegistryStats } from "./offer-registry.js";
export type { TransferTimeoutOptions } from "./limits.js";
export type { ShmSegmentRef, StagingPoolStats } from "./shm-staging.js";
