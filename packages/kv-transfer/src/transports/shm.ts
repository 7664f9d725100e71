import { digestOfChunks } from "../checksum.js";
import { copyWithCrc32c } from "../checksum.js";
import { KvAbortedError, KvChecksumError, KvTimeoutError } from "../errors.js";
import type { ShmEndpoint } from "../handle.js";
import type { Mapping } from "../native.js";
import { claimStagedOffer, segmentKv, segmentNamesOffer, stagedDigest } from "../shm-staging.js";
import { continuesOn, controlOverConnection, pullOverConnection } from "./tcp.js";
import type { PullerEnv, PullJob, PullTransport } from "./types.js";

/** Bytes copied from a staging segment per event-loop turn (≈ 5–10 ms on the 2-core VM). */
const COPY_TURN_BYTES = 64 * 1024 * 1024;
/** How long a puller waits for a deferred offer's staging: this, plus its size at 1 GB/s (the copy runs at 5–10). */
const STAGING_WAIT_MS = 20;
const STAGING_BYTES_PER_MS = 1e6;

/**
 * Same-host shared memory. Single copy when the handle names a staging segment this side can map and claim (see
 * shm-staging.ts): the KV is copied from the segment into the sink with its chunk CRCs, checked against the
 * handle's digest, and the offer is acked (or nacked) outside a transfer. Otherwise a ring in /dev/shm, controlled
 * over the TCP connection (see tcp-client.ts).
 */
export const shmTransport: PullTransport<ShmEndpoint> = {
  name: "shm",
  sizeCheck: "segments",
  releasesOnFailure: true, // ring: the server releases the offer when the control connection drops; segment: nacked here
  usable: (ep, _handle, _sink, env) => ep.hostId === env.hostId,
  canContinue: continuesOn,
  pull: async (ep, job, env) => {
    if (!job.lease && (await pullFromSegment(ep, job, env))) return;
    return pullOverConnection(ep, job, env);
  },
  control: controlOverConnection,
};

/** The single-copy pull; false when it does not apply (then nothing was claimed and the ring serves the pull). */
async function pullFromSegment(ep: ShmEndpoint, job: PullJob, env: PullerEnv): Promise<boolean> {
  const h = job.handle;
  if (!ep.segment) return false;
  let map: Mapping;
  try {
    map = env.segments.get(ep.segment);
  } catch {
    return false; // e.g. another pid namespace or user: the ring serves it
  }
  if (!(await claimWhenStaged(map, job))) return false; // taken, claimed, or not this offer
  // The offer is this puller's now: it acks or nacks it itself. A handle without a digest (a deferred offer) takes
  // the one the offering side wrote in the header before it published the offer.
  const t0 = performance.now();
  try {
    await copyFromSegment(segmentKv(map, h.bytes), job, h.checksum.digest ?? stagedDigest(map));
  } catch (err) {
    await release(ep, job, env, "nack");
    throw err;
  }
  // The KV is in the sink and verified: the ACK (one write on a pooled connection) goes out in the next turn of
  // the event loop, after the caller has its result; the pull does not wait for a connection or a send for it.
  const ms = performance.now() - t0;
  setImmediate(() => void release(ep, job, env, "ack", ms));
  return true;
}

/**
 * Claims the offer in its segment. A deferred offer (deferStaging: its handle has no digest) is staged one turn after
 * its handle was made, so a puller may come first: it waits for the header to name the offer, polling, for at most
 * the time the copy may take (STAGING_WAIT_MS + the size at STAGING_BYTES_PER_MS, within the pull's deadline),
 * rather than take the slower connection path. Once the header names it, one claim decides.
 */
async function claimWhenStaged(map: Mapping, job: PullJob): Promise<boolean> {
  const h = job.handle;
  if (h.checksum.digest === undefined && !segmentNamesOffer(map, h.id, h.secret, h.bytes)) {
    const until = Math.min(job.deadline, Date.now() + STAGING_WAIT_MS + h.bytes / STAGING_BYTES_PER_MS);
    do {
      if (job.signal?.aborted || Date.now() >= until) return false;
      await new Promise<void>((r) => setTimeout(r, 1));
    } while (!segmentNamesOffer(map, h.id, h.secret, h.bytes));
  }
  return claimStagedOffer(map, h.id, h.secret, h.bytes);
}

/** Copies segment → sink with the chunk CRCs, yielding every COPY_TURN_BYTES; checks them against the digest. */
async function copyFromSegment(src: Uint8Array, job: PullJob, digest: string | undefined): Promise<void> {
  const { handle: h, signal } = job;
  const cb = h.checksum.chunkBytes;
  const chunks = h.checksum.chunks;
  const crcs = new Uint32Array(chunks);
  const sink = job.segments();
  const perTurn = Math.max(1, Math.floor(COPY_TURN_BYTES / cb));
  for (let seq = 0; seq < chunks; ) {
    if (signal?.aborted) throw new KvAbortedError("pull aborted", { cause: signal.reason });
    if (Date.now() > job.deadline) throw new KvTimeoutError(`transfer of ${h.bytes} bytes did not finish in time`);
    for (const until = Math.min(chunks, seq + perTurn); seq < until; seq++) {
      const off = seq * cb;
      let crc = 0;
      let pos = off;
      for (const s of sink.slices(off, Math.min(cb, h.bytes - off))) {
        crc = copyWithCrc32c(s, src.subarray(pos, pos + s.byteLength), crc);
        pos += s.byteLength;
      }
      crcs[seq] = crc;
    }
    if (seq < chunks) await new Promise<void>((r) => setImmediate(r));
  }
  if (digest === undefined || digestOfChunks(crcs) !== digest) {
    throw new KvChecksumError("the KV copied from the shared-memory staging segment does not match the offer's digest");
  }
}

/**
 * ACK or NACK outside a transfer, written on a pooled connection (no reply awaited: a pull is not held up by the
 * offering process's event loop). Best effort: when the offering side cannot be reached, it releases the offer
 * itself once the claim has been held for longer than a transfer may take.
 */
async function release(ep: ShmEndpoint, job: PullJob, env: PullerEnv, type: "ack" | "nack", ms?: number): Promise<void> {
  try {
    const conn = await env.pool.acquire(ep.host, ep.port, Math.min(env.connectTimeoutMs, 1000));
    try {
      conn.sendRelease(job.handle, type, { secret: job.handle.secret, ...(ms !== undefined ? { ms } : {}) });
    } finally {
      env.pool.release(conn);
    }
  } catch {
    /* unreachable: the offering side's claim timer releases the offer */
  }
}
