import { createServer, type Server as NetServer, type Socket } from "node:net";
import { hostname } from "node:os";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { ConnectionError } from "./errors.js";
import { LinkFrameType, LinkSocket } from "./link-socket.js";

/** Options of the direct api↔worker data path (README, "Direct data path"). */
export interface DirectLinkOptions {
  /** Default: true on a NATS plane, false on an in-process one (where it would add nothing). */
  enabled?: boolean;
  /** Address a serving plane's link listener binds (default `127.0.0.1`). */
  bindHost?: string;
  /** Host announced to clients (default: `bindHost`, or the machine's hostname when that is a wildcard address). */
  advertiseHost?: string;
  /** Port of the listener (default 0: the OS picks one). */
  port?: number;
  /** Bound on opening a link (TCP connect and the hello's answer), ms (default 1000); past it the request goes over NATS. */
  connectTimeoutMs?: number;
  /** After a link failed to open, requests to that instance use NATS for this long before trying again, ms (default 5000). */
  retryAfterMs?: number;
}

export type ResolvedLinkOptions = Required<Omit<DirectLinkOptions, "advertiseHost">> & { advertiseHost: string };

export function resolveLinkOptions(option: boolean | DirectLinkOptions | undefined, transportKind: string): ResolvedLinkOptions {
  const o: DirectLinkOptions = typeof option === "object" ? option : option === undefined ? {} : { enabled: option };
  const bindHost = o.bindHost ?? "127.0.0.1";
  const wildcard = bindHost === "0.0.0.0" || bindHost === "::" || bindHost === "";
  return {
    enabled: o.enabled ?? (typeof option === "boolean" ? option : transportKind === "nats"),
    bindHost,
    advertiseHost: o.advertiseHost ?? (wildcard ? hostname() : bindHost),
    port: o.port ?? 0,
    connectTimeoutMs: o.connectTimeoutMs ?? 1000,
    retryAfterMs: o.retryAfterMs ?? 5000,
  };
}

/** Where clients reach an instance's link, as announced in discovery (`up.l`). */
export interface LinkAddress {
  host: string;
  port: number;
  /** The instance's random secret: whoever may read its announcements (NATS permissions) may call it directly. */
  secret: string;
}

/** What a served instance gives the listener: the messages of links opened with its secret are its own. */
export interface LinkServed {
  readonly instanceId: string;
  /** A `msg` frame from a client bound to this instance (`link` is where its answers go). */
  onLinkMessage(subject: string, reply: string | undefined, data: Uint8Array, link: LinkSocket): void;
  /** A client's link is gone: requests that came over it have lost their client. */
  onLinkClosed(link: LinkSocket): void;
}

/** A connection that has not said hello within this is dropped (a port scanner, a stuck peer). */
const HELLO_TIMEOUT_MS = 5000;

/**
 * The serving side of direct links: one TCP listener per plane, shared by the instances it serves. A client opens
 * one connection per instance and names the instance and its secret in its first frame; the connection then carries
 * that instance's requests and control messages, and nothing else (see `LinkServed`).
 */
export class LinkListener {
  private readonly served = new Map<string, { target: LinkServed; secret: Buffer; links: Set<LinkSocket> }>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: NetServer,
    readonly host: string,
    readonly port: number,
    private readonly maxPayload: number,
  ) {
    server.on("connection", (s) => this.accept(s));
  }

  /** Listens on `bindHost:port`; rejects with ConnectionError naming the address when it cannot. */
  static open(options: ResolvedLinkOptions, maxPayload: number): Promise<LinkListener> {
    const server = createServer();
    return new Promise((resolve, reject) => {
      server.once("error", (err) =>
        reject(new ConnectionError(`direct link: cannot listen on ${options.bindHost}:${options.port} (directLink.bindHost / --advertise-host): ${err.message}`, { cause: err })),
      );
      server.listen({ host: options.bindHost, port: options.port }, () => {
        const addr = server.address();
        const port = typeof addr === "object" && addr ? addr.port : options.port;
        resolve(new LinkListener(server, options.advertiseHost, port, maxPayload));
      });
    });
  }

  /** Lets clients reach `target` with a fresh random secret; `unregister` ends its links. */
  register(target: LinkServed): { address: LinkAddress; unregister: () => void } {
    const secret = randomBytes(18).toString("base64url");
    const entry = { target, secret: Buffer.from(secret), links: new Set<LinkSocket>() };
    this.served.set(target.instanceId, entry);
    return {
      address: { host: this.host, port: this.port, secret },
      unregister: () => {
        if (this.served.get(target.instanceId) === entry) this.served.delete(target.instanceId);
        for (const l of entry.links) l.end();
      },
    };
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    let bound: { target: LinkServed; links: Set<LinkSocket> } | undefined;
    const helloTimer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    helloTimer.unref();
    const link: LinkSocket = new LinkSocket(
      socket,
      this.maxPayload,
      (type, subject, reply, data) => {
        if (bound) {
          if (type === LinkFrameType.Msg) bound.target.onLinkMessage(subject, reply, data, link);
          return;
        }
        clearTimeout(helloTimer);
        const entry = type === LinkFrameType.Hello ? this.served.get(subject) : undefined;
        const given = Buffer.from(data);
        if (!entry || given.length !== entry.secret.length || !timingSafeEqual(given, entry.secret)) {
          // one answer whatever was wrong (no instance, wrong secret, no hello): nothing to probe for
          link.write(LinkFrameType.Refused, "", undefined, Buffer.from("direct link refused: unknown instance or wrong secret"));
          link.end();
          return;
        }
        bound = entry;
        entry.links.add(link);
        link.write(LinkFrameType.Welcome, "", undefined);
      },
      () => {
        clearTimeout(helloTimer);
        if (!bound) return;
        bound.links.delete(link);
        bound.target.onLinkClosed(link);
      },
    );
  }

  /** Stops listening and closes every connection (instances unregister first, so theirs are already ending). */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
