import { readFile } from "node:fs/promises";
import {
  connect as natsConnect,
  credsAuthenticator,
  nkeyAuthenticator,
  createInbox,
  type NatsConnection,
  type NodeConnectionOptions,
  type Authenticator,
} from "@nats-io/transport-node";
import { Svcm } from "@nats-io/services";
import { ConnectionError, PermissionDeniedError } from "./errors.js";
import type {
  Transport,
  TransportMsg,
  TransportPublishOptions,
  TransportService,
  TransportServiceRegistration,
  TransportStatus,
  TransportSubscribeOptions,
  TransportSubscription,
} from "./transport.js";

/** NATS connection options; the auth and TLS fields are passed through to nats.js. */
export interface NatsTransportOptions {
  /** Connection name shown by `nats server report connections`. */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** NKey seed (`SU...`) for nkey auth. */
  nkeySeed?: string;
  /** Path of a `.creds` file (JWT + nkey seed). */
  credsFile?: string;
  /**
   * Prefix of this connection's reply and control inboxes (default `_INBOX`). A NATS account whose permissions
   * allow only its own inboxes (see `planePermissions`) must connect with that prefix.
   */
  inboxPrefix?: string;
  /** TLS: file paths or PEM strings (nats.js `TlsOptions`). */
  tls?: { caFile?: string; ca?: string; certFile?: string; cert?: string; keyFile?: string; key?: string; handshakeFirst?: boolean };
  /** Keep reconnecting; -1 (default) = forever. */
  maxReconnectAttempts?: number;
  /** Wait between reconnect attempts to the same server, ms (default 500). */
  reconnectTimeWaitMs?: number;
  /** Bound on the first connect, ms (default 5000). */
  connectTimeoutMs?: number;
  /** NATS client ping interval, ms (default 10000): how fast a silent server link is noticed. */
  pingIntervalMs?: number;
  /** Anything else for nats.js, merged last. */
  nats?: Partial<NodeConnectionOptions>;
}

/** nats.js's permission violation as this package's typed error; anything else passes through. */
function asPermissionError(err: Error): Error {
  if (err?.name !== "PermissionViolationError" && !/permissions violation/i.test(err?.message ?? "")) return err;
  return new PermissionDeniedError(`NATS refused this account: ${err.message}`, { cause: err });
}

/** Request-plane transport over one NATS connection (nats.js v3, `@nats-io/transport-node`). */
export class NatsTransport implements Transport {
  readonly kind = "nats" as const;
  private readonly listeners = new Set<(s: TransportStatus) => void>();
  private closing: Promise<void> | undefined;
  private closedEmitted = false;

  private constructor(
    /** The connection stays inside this transport: the plane's users get the Transport interface only. */
    private readonly nc: NatsConnection,
    private readonly inboxPrefix?: string,
  ) {
    void this.watchStatus();
    // closed for good (our close(), or given up reconnecting, or closed by its owner): "closed", once
    void nc.closed().then(() => this.emit("closed"));
  }

  /** Connects to `servers` (`nats://host:port`, comma-separated string or array). */
  static async connect(servers: string | string[], options: NatsTransportOptions = {}): Promise<NatsTransport> {
    const authenticator: Authenticator[] = [];
    try {
      if (options.credsFile) authenticator.push(credsAuthenticator(await readFile(options.credsFile)));
      if (options.nkeySeed) authenticator.push(nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed)));
    } catch (err) {
      throw new ConnectionError(`cannot read NATS credentials: ${(err as Error).message}`, { cause: err });
    }
    const list = Array.isArray(servers) ? servers : servers.split(",").map((s) => s.trim()).filter(Boolean);
    const opts: NodeConnectionOptions = {
      servers: list,
      name: options.name,
      user: options.user,
      pass: options.pass,
      token: options.token,
      tls: options.tls,
      inboxPrefix: options.inboxPrefix,
      authenticator: authenticator.length ? authenticator : undefined,
      maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
      reconnectTimeWait: options.reconnectTimeWaitMs ?? 500,
      timeout: options.connectTimeoutMs ?? 5000,
      pingInterval: options.pingIntervalMs ?? 10_000,
      ...options.nats,
    };
    for (const k of Object.keys(opts) as (keyof NodeConnectionOptions)[]) if (opts[k] === undefined) delete opts[k];
    try {
      return new NatsTransport(await natsConnect(opts), options.inboxPrefix);
    } catch (err) {
      throw new ConnectionError(`cannot connect to NATS at ${list.join(",")}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Wraps a connection you already own (closing the transport drains it). */
  static fromConnection(nc: NatsConnection): NatsTransport {
    return new NatsTransport(nc);
  }

  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  get isClosed(): boolean {
    return this.nc.isClosed() || this.nc.isDraining() || this.closing !== undefined;
  }

  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void {
    this.nc.publish(subject, data, options?.reply ? { reply: options.reply } : undefined);
  }

  subscribe(subject: string, callback: (msg: TransportMsg) => void, options?: TransportSubscribeOptions): TransportSubscription {
    const sub = this.nc.subscribe(subject, {
      queue: options?.queue,
      callback: (err, m) => {
        if (err) {
          // subscription-level errors (permissions) end the subscription; nothing to deliver
          options?.onError?.(asPermissionError(err));
          return;
        }
        const noResponders = m.data.length === 0 && m.headers?.code === 503;
        callback({ subject: m.subject, data: m.data, reply: m.reply || undefined, noResponders });
      },
    });
    return { unsubscribe: () => { if (!sub.isClosed()) sub.unsubscribe(); } };
  }

  /** Registers a NATS micro service (`$SRV.PING|INFO|STATS`), its endpoints carrying the given subjects. */
  async registerService(reg: TransportServiceRegistration): Promise<TransportService> {
    const svc = await new Svcm(this.nc).add({
      name: reg.name,
      version: reg.version,
      description: reg.description,
      metadata: reg.metadata,
      statsHandler: async () => reg.stats(),
    });
    for (const e of reg.endpoints) {
      svc.addEndpoint(e.name, {
        subject: e.subject,
        queue: e.queue ?? "",
        handler: (err, m) => {
          if (err) return;
          e.callback({ subject: m.subject, data: m.data, reply: m.reply || undefined, noResponders: false });
        },
      });
    }
    // A refused subscription (an endpoint or the $SRV verbs) stops the whole service: the server answers the
    // SUB before the flush's PONG, so a service the account may not run fails here rather than staying deaf.
    await this.nc.flush();
    if (svc.isStopped) {
      const err = await svc.stopped;
      throw asPermissionError(err ?? new Error(`NATS service ${reg.name} stopped while starting`));
    }
    return {
      id: svc.info().id,
      stop: async () => {
        if (this.nc.isClosed()) return;
        await svc.stop().catch(() => undefined);
      },
    };
  }

  newInbox(): string {
    return createInbox(this.inboxPrefix);
  }

  async flush(): Promise<void> {
    await this.nc.flush();
  }

  onStatus(listener: (s: TransportStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.nc.isClosed()) {
        try {
          await this.nc.drain();
        } catch {
          await this.nc.close().catch(() => undefined);
        }
      }
      this.emit("closed");
    })();
    return this.closing;
  }

  private emit(s: TransportStatus): void {
    if (s === "closed") {
      if (this.closedEmitted) return;
      this.closedEmitted = true;
    }
    for (const l of this.listeners) l(s);
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") this.emit("disconnected");
      else if (s.type === "reconnecting") this.emit("reconnecting");
      else if (s.type === "reconnect") this.emit("reconnected");
    }
  }
}
