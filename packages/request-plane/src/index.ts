/**
 * @trtd/request-plane — the NATS request plane: namespace/component/endpoint, discovery with leases and load
 * metrics, streaming replies with heartbeats and credit-based flow control, cancellation, deadlines, typed
 * errors; an in-process transport with the same API; a nats-server launcher.
 */
export type { Codec } from "./codec.js";
export type { InstanceInfo } from "./discovery.js";
export type { EndpointId, PlaneRole, SubjectPermissions } from "./names.js";
export type { CarrierCounts, ClientOptions, RequestOptions, WaitForInstancesOptions } from "./client.js";
export type { DirectLinkOptions } from "./link-listener.js";
export type { ConnectOptions, InProcessOptions } from "./connect.js";
export type { NatsServerHandle, NatsServerInfo, NatsServerOptions, NatsServerUser } from "./nats-server.js";
export type { NatsTransportOptions } from "./nats-transport.js";
export type { EndpointRef, PlaneOptions, RawRequestOptions } from "./plane.js";
export type { Handler, RequestContext, ServeOptions, ServedEndpoint, StopOptions } from "./server.js";
export type { InstanceChooser, RouterMode } from "./routers.js";
export type {
  Transport,
  TransportMsg,
  TransportPublishOptions,
  TransportService,
  TransportServiceRegistration,
  TransportStatus,
  TransportSubscribeOptions,
  TransportSubscription,
} from "./transport.js";

export { connect, createInProcessPlane } from "./connect.js";
export { RequestPlane, Namespace, Component, Endpoint } from "./plane.js";
export { EndpointClient } from "./client.js";
export { ReplyStream } from "./reply-stream.js";
export { leastLoaded, random, roundRobin } from "./routers.js";
export { endpointId, endpointPath, instancePath, newInstanceId, planePermissions, subjects, validateName } from "./names.js";
export { jsonCodec } from "./codec.js";
export { binaryCodec } from "./codec-binary.js";
export { NatsTransport } from "./nats-transport.js";
export { InProcessTransport } from "./inprocess-transport.js";
export { findNatsServer, probeNatsServer, startNatsServer } from "./nats-server.js";
export {
  CancelledError,
  ClosedError,
  CodecError,
  ConnectionError,
  InvalidNameError,
  NatsServerNotFoundError,
  NatsServerStartError,
  NoRespondersError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RemoteError,
  RequestPlaneError,
  RequestPlaneErrorCode,
  ServerGoneError,
  StreamBrokenError,
  TimeoutError,
} from "./errors.js";
