// The api's view of which prefix-cache blocks each worker holds, rebuilt from the workers' KV events
// (apps-common kv-events.ts): one poll per worker every `pollMs`, a delta when the index is current, a snapshot when
// it is not (a late joiner, a restarted api, a worker whose executor dropped events). Workers that leave are dropped.
// Between polls the router's own decisions fill the gap: a prompt routed to a worker counts as cached there
// (`notePrompt`) until that worker's events confirm it or `pendingMs` passes, so the next turn of a conversation
// that arrives before the next poll still finds its prefix.
import { unpackHashes, type KvEventReply } from "@trtd/apps-common";
import { prefixBlockHashes } from "@trtd/model";
import type { WorkerRole, Workers } from "./workers.js";

interface WorkerBlocks {
  epoch: string;
  seq: number;
  tokensPerBlock: number;
  fingerprint: string;
  blocks: Set<bigint>;
}

interface Pending {
  tokensPerBlock: number;
  fingerprint: string;
  /** hash -> when the assumption lapses (ms since epoch) */
  until: Map<bigint, number>;
}

export interface KvIndexOptions {
  /** Poll period per worker (default 100 ms). */
  pollMs?: number;
  /** Bound on one poll (default 1000 ms); a worker that does not answer keeps its last known blocks. */
  pollTimeoutMs?: number;
  /** Roles whose workers are indexed (default both). */
  roles?: readonly WorkerRole[];
  /** How long a prompt routed to a worker counts as cached there without its events confirming it (default 2000 ms). */
  pendingMs?: number;
}

export class KvIndex {
  readonly #workers: Workers;
  readonly #byWorker = new Map<string, WorkerBlocks>();
  readonly #pollMs: number;
  readonly #pollTimeoutMs: number;
  readonly #roles: readonly WorkerRole[];
  readonly #pendingMs: number;
  readonly #pending = new Map<string, Pending>();
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;

  constructor(workers: Workers, o: KvIndexOptions = {}) {
    if (!workers.pollKvEvents) throw new Error("KvIndex needs a Workers implementation with pollKvEvents");
    this.#workers = workers;
    this.#pollMs = Math.max(5, o.pollMs ?? 100);
    this.#pollTimeoutMs = Math.max(1, o.pollTimeoutMs ?? 1000);
    this.#roles = o.roles ?? ["decode", "prefill"];
    this.#pendingMs = Math.max(0, o.pendingMs ?? 2000);
  }

  /**
   * The router sent `tokens` to `workerId`: its full prompt blocks count as cached there until the worker's events
   * confirm them (a stored event) or pendingMs passes. Needs the worker indexed once (for its block size).
   */
  notePrompt(workerId: string, tokens: readonly number[], hashes: Map<string, bigint[]> = new Map()): void {
    const w = this.#byWorker.get(workerId);
    if (!w || this.#pendingMs === 0) return;
    let p = this.#pending.get(workerId);
    if (!p || p.tokensPerBlock !== w.tokensPerBlock || p.fingerprint !== w.fingerprint) {
      p = { tokensPerBlock: w.tokensPerBlock, fingerprint: w.fingerprint, until: new Map() };
      this.#pending.set(workerId, p);
    }
    const until = Date.now() + this.#pendingMs;
    for (const h of this.#chain(w, tokens, hashes)) if (!w.blocks.has(h)) p.until.set(h, until);
  }

  #chain(w: WorkerBlocks, tokens: readonly number[], hashes: Map<string, bigint[]>): bigint[] {
    const key = `${w.tokensPerBlock}/${w.fingerprint}`;
    let chain = hashes.get(key);
    if (!chain) hashes.set(key, (chain = prefixBlockHashes(tokens, w.tokensPerBlock, w.fingerprint)));
    return chain;
  }

  /** Polls every worker now and then every pollMs until close(). */
  start(): void {
    if (this.#timer) return;
    const tick = () => {
      this.#round ??= this.refresh().finally(() => (this.#round = undefined));
    };
    tick();
    this.#timer = setInterval(tick, this.#pollMs);
    this.#timer.unref();
  }

  /** One poll of every listed worker (each bounded by pollTimeoutMs); drops workers no longer listed. */
  async refresh(): Promise<void> {
    const live = new Set<string>();
    await Promise.all(
      this.#roles.flatMap((role) =>
        this.#workers.instances(role).map(async (w) => {
          live.add(w.id);
          const known = this.#byWorker.get(w.id);
          try {
            const reply = await this.#workers.pollKvEvents!(w.id, known ? { epoch: known.epoch, since: known.seq } : {}, this.#pollTimeoutMs);
            this.#apply(w.id, reply);
          } catch {
            // No answer this round (busy, gone, an older worker without KV events): keep what is known.
          }
        }),
      ),
    );
    for (const id of this.#byWorker.keys()) if (!live.has(id)) this.#byWorker.delete(id);
    const now = Date.now();
    for (const [id, p] of this.#pending) {
      if (!live.has(id)) this.#pending.delete(id);
      else for (const [h, until] of p.until) if (until <= now) p.until.delete(h);
    }
  }

  #apply(id: string, r: KvEventReply): void {
    if (r.kind === "snapshot") {
      this.#byWorker.set(id, { epoch: r.epoch, seq: r.seq, tokensPerBlock: r.tokensPerBlock, fingerprint: r.fingerprint, blocks: new Set(unpackHashes(r.blocks)) });
      return;
    }
    const w = this.#byWorker.get(id);
    if (!w || w.epoch !== r.epoch) return; // raced with a resync: the next poll asks again
    const hashes = unpackHashes(r.hashes);
    const pending = this.#pending.get(id)?.until;
    hashes.forEach((h, i) => {
      if (r.types[i] === "s") {
        w.blocks.add(h);
        pending?.delete(h); // confirmed
      } else w.blocks.delete(h);
    });
    w.seq = r.seq;
  }

  /**
   * Tokens of `tokens` whose KV `workerId` holds as a cached prefix (whole blocks from the start), and the
   * prompt's full block count at that worker's block size; { cachedTokens: 0 } for a worker not indexed (yet).
   * `hashes` caches the chain hashes per (block size, model) across the workers of one decision.
   */
  overlap(workerId: string, tokens: readonly number[], hashes: Map<string, bigint[]> = new Map()): { cachedTokens: number; blockTokens: number } {
    const w = this.#byWorker.get(workerId);
    if (!w) return { cachedTokens: 0, blockTokens: 16 };
    const chain = this.#chain(w, tokens, hashes);
    const pending = this.#pending.get(workerId);
    const now = Date.now();
    const has = (h: bigint) => w.blocks.has(h) || (pending !== undefined && pending.tokensPerBlock === w.tokensPerBlock && (pending.until.get(h) ?? 0) > now);
    // The executor reuses at most the blocks before the one holding the prompt's last token (it computes that token).
    const usable = Math.min(chain.length, Math.floor((tokens.length - 1) / w.tokensPerBlock));
    let n = 0;
    while (n < usable && has(chain[n]!)) n++;
    return { cachedTokens: n * w.tokensPerBlock, blockTokens: w.tokensPerBlock };
  }

  /** Blocks the index holds for a worker (undefined: not indexed). */
  blockCount(workerId: string): number | undefined {
    return this.#byWorker.get(workerId)?.blocks.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round;
  }
}
