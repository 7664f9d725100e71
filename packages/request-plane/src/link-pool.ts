import { connect as netConnect } from "node:net";
import type { LinkAddress, ResolvedLinkOptions } from "./link-listener.js";
import { LinkFrameType, LinkSocket } from "./link-socket.js";
import type { TransportMsg, TransportPublishOptions } from "./transport.js";

/** Where one request's messages go: the plane's transport (NATS) or a direct link. */
export interface Carrier {
  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void;
}

/** A request in flight on a link: told at once when the link drops. */
export interface LinkUser {
  linkLost(reason: string): void;
}

const EMPTY = new Uint8Array(0);

/** An open client link to one instance, and the requests in flight on it. */
export class ClientLink implements Carrier {
  private readonly users = new Set<LinkUser>();
  constructor(
    readonly socket: LinkSocket,
    readonly address: LinkAddress,
  ) {}
  publish(subject: string, data: Uint8Array, options?: TransportPublishOptions): void {
    this.socket.publish(subject, data, options);
  }
  /** Registers a request on this link; the returned function unregisters it. */
  attach(user: LinkUser): () => void {
    this.users.add(user);
    return () => this.users.delete(user);
  }
  get inFlight(): number {
    return this.users.size;
  }
  lost(reason: string): void {
    const users = [...this.users];
    this.users.clear();
    for (const u of users) u.linkLost(reason);
  }
}

type Entry =
  | { state: "open"; address: LinkAddress; link: ClientLink }
  | { state: "opening"; address: LinkAddress; ready: Promise<ClientLink | undefined>; abort: () => void }
  | { state: "failed"; address: LinkAddress; until: number };

const sameAddress = (a: LinkAddress, b: LinkAddress) => a.host === b.host && a.port === b.port && a.secret === b.secret;

/**
 * The client side of direct links: at most one persistent connection per (plane, instance), opened on the first
 * request to that instance, kept until either side closes. A link that cannot be opened within `connectTimeoutMs`
 * (refused, unreachable, wrong secret) sends that request, and the next ones for `retryAfterMs`, over NATS.
 */
export class LinkPool {
  private readonly links = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly options: ResolvedLinkOptions,
    private readonly maxPayload: () => number,
    /** Messages that arrive on a link (reply frames for this plane's inbox). */
    private readonly deliver: (m: TransportMsg, via: Carrier) => void,
  ) {}

  /**
   * The link to the instance `key` (its path) announced at `address`: open, on its way (the promise settles within
   * the connect bound, undefined when it failed), or undefined (use NATS now).
   */
  get(key: string, address: LinkAddress): ClientLink | Promise<ClientLink | undefined> | undefined {
    if (this.closed) return undefined;
    let e = this.links.get(key);
    if (e && !sameAddress(e.address, address)) {
      // the instance announces another listener (restarted with the same id): forget the old one
      this.drop(key, e);
      e = undefined;
    }
    if (e?.state === "open") return e.link;
    if (e?.state === "opening") return e.ready;
    if (e?.state === "failed" && Date.now() < e.until) return undefined;
    return this.open(key, address);
  }

  /** Open links (tests and metrics). */
  get openCount(): number {
    let n = 0;
    for (const e of this.links.values()) if (e.state === "open") n++;
    return n;
  }

  private drop(key: string, e: Entry): void {
    if (this.links.get(key) === e) this.links.delete(key);
    if (e.state === "open") e.link.socket.destroy();
    else if (e.state === "opening") e.abort();
  }

  private open(key: string, address: LinkAddress): Promise<ClientLink | undefined> {
    let settle!: (l: ClientLink | undefined) => void;
    const ready = new Promise<ClientLink | undefined>((r) => (settle = r));
    const socket = netConnect({ host: address.host, port: address.port });
    let client: ClientLink | undefined;
    let done = false;
    const fail = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (this.links.get(key) === entry) this.links.set(key, { state: "failed", address, until: Date.now() + this.options.retryAfterMs });
      settle(undefined);
    };
    const timer = setTimeout(fail, this.options.connectTimeoutMs);
    const link = new LinkSocket(
      socket,
      this.maxPayload(),
      (type, subject, reply, data) => {
        if (client) {
          if (type === LinkFrameType.Msg) this.deliver({ subject, data, reply, noResponders: false }, client);
          else if (type === LinkFrameType.NoResponders) this.deliver({ subject, data: EMPTY, noResponders: true }, client);
          return;
        }
        if (type !== LinkFrameType.Welcome) return fail(); // refused: wrong secret or the instance is gone
        done = true;
        clearTimeout(timer);
        client = new ClientLink(link, address);
        if (this.links.get(key) === entry && !this.closed) {
          this.links.set(key, { state: "open", address, link: client });
          settle(client);
        } else {
          link.destroy();
          settle(undefined);
        }
      },
      () => {
        if (!client) return fail();
        const cur = this.links.get(key);
        if (cur?.state === "open" && cur.link === client) this.links.delete(key);
        // the same error a dead instance gives: the requests on it cannot complete
        client.lost(`direct link to ${address.host}:${address.port} closed`);
      },
    );
    socket.once("connect", () => link.write(LinkFrameType.Hello, key.slice(key.lastIndexOf("/") + 1), undefined, Buffer.from(address.secret)));
    const entry: Entry = { state: "opening", address, ready, abort: fail };
    this.links.set(key, entry);
    return ready;
  }

  /** Destroys the open links (a test's stand-in for a network failure); the pool stays usable. */
  breakAll(): void {
    for (const e of this.links.values()) if (e.state === "open") e.link.socket.destroy();
  }

  /** Closes every link (the plane's requests have already ended). */
  close(): void {
    this.closed = true;
    for (const [key, e] of [...this.links]) this.drop(key, e);
    this.links.clear();
  }
}
