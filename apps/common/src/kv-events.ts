// KV events on the request plane: which prefix-cache blocks a worker holds, for the api's KV-aware router.
// The worker keeps a numbered log of its executor's stored/evicted block hashes (drained every `drainMs`) and
// answers polls on its own subject: `{ since }` gets the batches after `since` (a delta), or the whole set when
// `since` is unknown, too old or of another epoch (a snapshot: what a late joiner or a restarted api starts from).
// Hashes travel packed, 8 bytes little-endian each, base64. Pull rather than push: the plane's side protocols
// are request/reply (RequestPlane.request/reply), and a poll carries its own cursor, so a lost message is a
// retry, never a silently wrong index.
import { randomBytes } from "node:crypto";
import type { RequestPlane } from "@trtd/request-plane";

/** Subjects of the KV-event polls: one per worker instance; `all` for NATS account permissions. */
export const kvEventSubjects = {
  worker: (instanceId: string) => `trtd.kvev.${instanceId}`,
  all: "trtd.kvev.*",
} as const;

export interface KvEventPoll {
  /** The epoch and sequence number the poller holds; absent: send a snapshot. */
  epoch?: string;
  since?: number;
}

export type KvEventReply =
  /** `hashes` packed, in order; `types` one letter per hash: "s" stored, "r" removed. */
  | { kind: "delta"; epoch: string; seq: number; hashes: string; types: string }
  | { kind: "snapshot"; epoch: string; seq: number; tokensPerBlock: number; fingerprint: string; blocks: string };

/** What the worker reads its events from: an @trtd/trtllm Executor. */
export interface KvEventSource {
  readonly model: { fingerprint: string };
  kvLayout(): { tokensPerBlock: number };
  kvEvents(): { events: { type: "stored" | "removed"; hash: bigint }[]; lost: boolean };
  kvCacheSnapshot(): bigint[];
}

export function packHashes(hashes: readonly bigint[]): string {
  const b = Buffer.alloc(8 * hashes.length);
  hashes.forEach((h, i) => b.writeBigUInt64LE(h, 8 * i));
  return b.toString("base64");
}

export function unpackHashes(s: string): bigint[] {
  const b = Buffer.from(s, "base64");
  if (b.length % 8 !== 0) throw new Error(`packed hashes: ${b.length} bytes is not a multiple of 8`);
  const out: bigint[] = [];
  for (let i = 0; i < b.length; i += 8) out.push(b.readBigUInt64LE(i));
  return out;
}

export interface KvEventPublisherOptions {
  /** Drain period of the executor's event queue (default 100 ms). */
  drainMs?: number;
  /** Batches kept for deltas; a poller further behind gets a snapshot (default 256). */
  keepBatches?: number;
}

/** The worker side: owns the event log and the subscription answering polls; close() ends both. */
export class KvEventPublisher {
  readonly subject: string;
  #source: KvEventSource;
  #epoch = randomBytes(6).toString("hex");
  #seq = 0;
  #blocks = new Set<bigint>();
  #batches: { seq: number; hashes: bigint[]; types: string }[] = [];
  #keep: number;
  #timer: NodeJS.Timeout;
  #sub: { unsubscribe(): void } | undefined;

  private constructor(source: KvEventSource, subject: string, initial: bigint[], o: KvEventPublisherOptions) {
    this.#source = source;
    this.subject = subject;
    this.#keep = Math.max(1, o.keepBatches ?? 256);
    this.#blocks = new Set(initial);
    this.#timer = setInterval(() => this.drain(), Math.max(5, o.drainMs ?? 100));
    this.#timer.unref();
  }

  /**
   * Starts answering polls on kvEventSubjects.worker(instanceId). Resolves undefined for an executor without a
   * prefix cache (its snapshot is refused with code UNSUPPORTED, as by the TensorRT-LLM shim): such a worker
   * publishes nothing, and a KV-aware router sees no cached blocks on it.
   */
  static async start(plane: RequestPlane, instanceId: string, source: KvEventSource, o: KvEventPublisherOptions = {}): Promise<KvEventPublisher | undefined> {
    let initial: bigint[];
    try {
      initial = source.kvCacheSnapshot(); // also restarts the executor's event stream
    } catch (err) {
      if ((err as { code?: unknown }).code === "UNSUPPORTED") return undefined;
      throw err;
    }
    const p = new KvEventPublisher(source, kvEventSubjects.worker(instanceId), initial, o);
    try {
      p.#sub = await plane.reply(p.subject, (data) => p.#answer(data));
    } catch (err) {
      clearInterval(p.#timer);
      throw err;
    }
    return p;
  }

  /** Moves the executor's queued events into the log (a batch per non-empty drain). */
  drain(): void {
    let got;
    try {
      got = this.#source.kvEvents();
    } catch {
      return; // the executor is closing: the publisher is about to be closed too
    }
    if (got.lost) {
      // The executor dropped events: start a new epoch from its snapshot, so every poller resyncs.
      this.#blocks = new Set(this.#source.kvCacheSnapshot());
      this.#epoch = randomBytes(6).toString("hex");
      this.#batches = [];
      return;
    }
    if (got.events.length === 0) return;
    let types = "";
    for (const e of got.events) {
      if (e.type === "stored") this.#blocks.add(e.hash);
      else this.#blocks.delete(e.hash);
      types += e.type === "stored" ? "s" : "r";
    }
    this.#batches.push({ seq: ++this.#seq, hashes: got.events.map((e) => e.hash), types });
    if (this.#batches.length > this.#keep) this.#batches.shift();
  }

  /** The hashes of the blocks the worker's cache holds, as the log has them now. */
  blocks(): ReadonlySet<bigint> {
    return this.#blocks;
  }

  #answer(data: Uint8Array): Uint8Array {
    this.drain();
    let poll: KvEventPoll = {};
    try {
      poll = JSON.parse(Buffer.from(data).toString("utf8")) as KvEventPoll;
    } catch {
      // a malformed poll gets a snapshot
    }
    const first = this.#batches[0]?.seq ?? this.#seq + 1;
    let reply: KvEventReply;
    if (poll.epoch === this.#epoch && typeof poll.since === "number" && poll.since >= first - 1 && poll.since <= this.#seq) {
      const newer = this.#batches.filter((b) => b.seq > poll.since!);
      reply = {
        kind: "delta",
        epoch: this.#epoch,
        seq: this.#seq,
        hashes: packHashes(newer.flatMap((b) => b.hashes)),
        types: newer.map((b) => b.types).join(""),
      };
    } else {
      reply = {
        kind: "snapshot",
        epoch: this.#epoch,
        seq: this.#seq,
        tokensPerBlock: this.#source.kvLayout().tokensPerBlock,
        fingerprint: this.#source.model.fingerprint,
        blocks: packHashes([...this.#blocks]),
      };
    }
    return Buffer.from(JSON.stringify(reply));
  }

  close(): void {
    clearInterval(this.#timer);
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }
}
