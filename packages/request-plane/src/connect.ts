import { InProcessBus, InProcessTransport } from "./inprocess-transport.js";
import { NatsTransport, type NatsTransportOptions } from "./nats-transport.js";
import { RequestPlane, type PlaneOptions } from "./plane.js";

export interface ConnectOptions extends NatsTransportOptions, PlaneOptions {}

/**
 * Connects to NATS (reconnecting forever by default; auth/TLS options passed through) and returns a
 * {@link RequestPlane}. `uri`: `nats://host:port`, several comma-separated, or an array.
 */
export async function connect(uri: string | string[], options: ConnectOptions = {}): Promise<RequestPlane> {
  const transport = await NatsTransport.connect(uri, options);
  return new RequestPlane(transport, options);
}

export interface InProcessOptions extends PlaneOptions {
  /** Share a bus to put several planes (like several processes) on one in-process "server". */
  bus?: InProcessBus;
  /** Max message size of a new bus (default 1 MiB, as NATS). */
  maxPayload?: number;
}

/** A request plane inside this process, same API as `connect()`: single-process mode and unit tests. */
export function createInProcessPlane(options: InProcessOptions = {}): RequestPlane {
  const bus = options.bus ?? new InProcessBus(options.maxPayload);
  return new RequestPlane(new InProcessTransport(bus), options);
}
