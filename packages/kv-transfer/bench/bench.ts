// nx run kv-transfer:bench — GB/s per transport for 16 MiB, 256 MiB and 1 GiB, each against a raw baseline
// measured in the same run, alternating with it: a tuned socket pipe (TCP: connected beforehand, reads land in
// the destination, one writev) and memcpy (shared memory: the same bytes into the same destination views, in the
// pulling process, right before each shm pull). Last line: one JSON object.
import { fork, type ChildProcess } from "node:child_process";
import { connect as netConnect } from "node:net";
import { fileURLToPath } from "node:url";
import { loadavg } from "node:os";
import { connect, findNatsServer, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { BufferKvSink, checksumImplementation, KvPuller, type KvHandle, type KvTransportName } from "../src/index.js";
import { crc32c } from "../src/checksum.js";
import { benchLayout, BLOCK_BYTES } from "./shape.js";

const MiB = 1024 * 1024;
const sizes = (process.env.SIZES ?? "16,256,1024").split(",").map((s) => Number(s) * MiB);
const reps = Number(process.env.REPS ?? 3);
const deadlineAt = Date.now() + Number(process.env.BENCH_MAX_MS ?? 540_000);

// The NATS fallback is measured only at small sizes (it refuses KV above its limit by design).
let nats: NatsServerHandle | undefined;
let plane: RequestPlane | undefined;
let natsStopped = false;
try {
  findNatsServer();
  nats = await startNatsServer();
  plane = await connect(nats.uri);
} catch {
  nats = undefined;
}
const child: ChildProcess = fork(fileURLToPath(new URL("./offer-child.ts", import.meta.url)), [], {
  env: { ...process.env, ...(nats ? { NATS_URI: nats.uri } : {}) },
  execArgv: ["--import", "tsx", "--conditions=source"],
  stdio: ["ignore", "inherit", "inherit", "ipc"],
});
const ask = <T>(msg: object): Promise<T> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child did not answer ${JSON.stringify(msg)}`)), 120_000);
    child.once("message", (m) => {
      clearTimeout(t);
      resolve(m as T);
    });
    child.send(msg);
  });
// Whatever happens, the child and nats-server go with this process (stopped by PID).
process.on("exit", () => {
  if (child.exitCode === null) child.kill("SIGKILL");
  if (nats && !natsStopped) process.kill(nats.pid, "SIGKILL");
});
await new Promise<void>((resolve) => child.once("message", () => resolve()));

const puller = new KvPuller({ layout: benchLayout, requestPlane: plane, timeouts: { baseMs: 30_000, minBytesPerSecond: 20e6 } });
const gbps = (bytes: number, ms: number) => bytes / 1e9 / (ms / 1000);
const best = (xs: number[]) => Math.max(...xs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
// Issue 5: tcp ≥ 80 % of the raw socket pipe; issue 19: shm ≥ 50 % of memcpy; at every size from 16 MiB up (best of REPS).
const GOAL = { tcpRatio: 0.8, shmRatio: 0.5 };

/**
 * Baseline for TCP: a tuned socket pipe between the same two processes. Connected before the clock starts
 * (the tcp transport pools its connections too); the receiver reads with `onread` straight into the same
 * destination segments the pull fills (large reads, no Buffer allocated per read, no copy), the sender
 * writes all segments in one corked writev (offer-child.ts).
 */
async function rawTcp(bytes: number, dst: Uint8Array[]): Promise<number> {
  const { port } = await ask<{ port: number }>({ cmd: "raw", bytes });
  const spill = Buffer.allocUnsafe(64 * 1024); // only used if the sender sent more than expected
  let seg = 0;
  let segOff = 0;
  let got = 0;
  let t0 = 0;
  await new Promise<void>((resolve, reject) => {
    const s = netConnect({
      host: "127.0.0.1",
      port,
      noDelay: true,
      onread: {
        buffer: () => (seg < dst.length ? dst[seg]!.subarray(segOff) : spill),
        callback: (n: number) => {
          got += n;
          if (seg < dst.length && (segOff += n) === dst[seg]!.byteLength) {
            seg++;
            segOff = 0;
          }
          return true;
        },
      },
    });
    s.on("connect", () => {
      t0 = performance.now();
      s.write(GO);
    });
    s.on("end", () => (got === bytes ? resolve() : reject(new Error(`raw pipe got ${got} of ${bytes}`))));
    s.on("error", reject);
  });
  return gbps(bytes, performance.now() - t0);
}
const GO = Buffer.from([1]);

/**
 * Baseline for shared memory: memcpy (TypedArray.set, i.e. libc memmove) of the same number of bytes into the same
 * destination views the shm pull fills, in this process, from a source buffer of the same size, measured right
 * before each shm pull. No checksum: the transport's CRC pass counts against it.
 */
function memcpy(bytes: number, dst: Uint8Array[], src: Buffer): number {
  const t0 = performance.now();
  let off = 0;
  for (const d of dst) {
    d.set(src.subarray(off, off + d.byteLength));
    off += d.byteLength;
  }
  return gbps(bytes, performance.now() - t0);
}

/** One offer (its time: staging, i.e. the copy into the shm segment fused with the chunk CRCs) and one pull. */
async function pullOnce(bytes: number, transport: KvTransportName, sink: BufferKvSink): Promise<{ gbps: number; offerMs: number }> {
  const { handle, offerMs } = await ask<{ handle: KvHandle; offerMs: number }>({ cmd: "offer", bytes });
  const t0 = performance.now();
  const r = await puller.pull(handle, sink, { transports: [transport] });
  const ms = performance.now() - t0;
  if (r.transport !== transport) throw new Error(`expected ${transport}, got ${r.transport}`);
  return { gbps: gbps(bytes, ms), offerMs };
}

/** A sink over one reused allocation (BufferKvSink is abort-once; the bench reuses memory across reps). */
function reusableSink(bytes: number): { sink: () => BufferKvSink; segs: Uint8Array[] } {
  const all = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4096) all[i] = 1; // fault the pages in before timing
  const segs: Uint8Array[] = [];
  for (let off = 0; off < bytes; off += BLOCK_BYTES) segs.push(all.subarray(off, Math.min(bytes, off + BLOCK_BYTES)));
  return {
    segs,
    sink: () => {
      const s = new BufferKvSink((bytes / BLOCK_BYTES) * 16, 0, 0);
      Object.defineProperty(s, "bytes", { value: bytes });
      s.segments = () => segs;
      return s;
    },
  };
}

const results: Record<string, Record<string, number>> = {};
const crcBuf = Buffer.alloc(64 * MiB, 3);
crc32c(0, crcBuf);
const tc = performance.now();
crc32c(0, crcBuf);
const crcGBps = gbps(crcBuf.length, performance.now() - tc);
const load0 = loadavg()[0]!;

for (const bytes of sizes) {
  if (Date.now() > deadlineAt) break;
  const label = `${bytes / MiB}MiB`;
  const { sink, segs } = reusableSink(bytes);
  const srcCopy = Buffer.alloc(bytes, 7);
  const row: Record<string, number> = {};
  const tcpBase: number[] = [], tcp: number[] = [], mem: number[] = [], shm: number[] = [], offer: number[] = [];
  // One untimed round first: it creates this size's staging segments and the puller's mappings of them (a fresh
  // mapping's first touch costs more than the copy), as a serving process has after its first requests. Its shm
  // pull and offer times are reported as shmFirstPullMs / firstOfferMs.
  const first = await pullOnce(bytes, "tcp", sink());
  const firstShm = await pullOnce(bytes, "shm", sink());
  for (let i = 0; i < reps && Date.now() < deadlineAt; i++) {
    tcpBase.push(await rawTcp(bytes, segs));
    const t = await pullOnce(bytes, "tcp", sink());
    tcp.push(t.gbps);
    offer.push(t.offerMs);
    mem.push(memcpy(bytes, segs, srcCopy));
    const s = await pullOnce(bytes, "shm", sink());
    shm.push(s.gbps);
    offer.push(s.offerMs);
  }
  row.rawTcpGBps = best(tcpBase);
  row.tcpGBps = best(tcp);
  row.tcpRatio = row.tcpGBps / row.rawTcpGBps;
  row.memcpyGBps = best(mem);
  row.shmGBps = best(shm);
  row.shmRatio = row.shmGBps / row.memcpyGBps;
  // The machine is noisy: the medians say how typical the best figures are.
  row.tcpMedianRatio = median(tcp) / median(tcpBase);
  row.shmMedianRatio = median(shm) / median(mem);
  row.shmMedianGBps = median(shm);
  (row as Record<string, unknown>).shmGBpsEach = shm.map((x) => Number(x.toFixed(2)));
  (row as Record<string, unknown>).memcpyGBpsEach = mem.map((x) => Number(x.toFixed(2)));
  row.memcpyMedianGBps = median(mem);
  row.offerMs = Math.min(...offer);
  row.offerMedianMs = median(offer);
  row.firstOfferMs = Math.max(first.offerMs, firstShm.offerMs);
  row.shmFirstPullMs = bytes / 1e6 / firstShm.gbps;
  results[label] = row;
  console.log(
    `${label.padStart(8)}  tcp ${row.tcpGBps.toFixed(2)} GB/s vs raw socket ${row.rawTcpGBps.toFixed(2)} (${(row.tcpRatio * 100).toFixed(0)}%)` +
      `  shm ${row.shmGBps.toFixed(2)} GB/s vs memcpy ${row.memcpyGBps.toFixed(2)} (${(row.shmRatio * 100).toFixed(0)}%)` +
      `  offer (stage + CRC) ${row.offerMs.toFixed(1)} ms  (medians: tcp ${(row.tcpMedianRatio * 100).toFixed(0)}%, shm ${(row.shmMedianRatio * 100).toFixed(0)}%)`,
  );
}

const natsResults: Record<string, number> = {};
if (plane) {
  for (const mib of [1, 4]) {
    const bytes = mib * MiB;
    const { sink } = reusableSink(bytes);
    const xs: number[] = [];
    for (let i = 0; i < reps; i++) xs.push((await pullOnce(bytes, "nats", sink())).gbps);
    natsResults[`${mib}MiB`] = best(xs);
    console.log(`${`${mib}MiB`.padStart(8)}  nats ${best(xs).toFixed(2)} GB/s (small-KV fallback; refused above its limit)`);
  }
}

const stats = await ask<{ stats: { active: number; shmStaging: unknown; transfersPeak: number } }>({ cmd: "stats" });
const childExited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once("exit", () => r())));
child.send({ cmd: "exit" });
await Promise.race([childExited, new Promise((r) => setTimeout(r, 10_000).unref())]);
if (child.exitCode === null) child.kill("SIGKILL");
puller.close();
await plane?.close();
await nats?.stop();
natsStopped = true;
const sizesOk = Object.values(results);
const summary = {
  bench: "kv-transfer",
  reps,
  checksum: checksumImplementation(),
  crc32cGBps: Number(crcGBps.toFixed(2)),
  loadAverage: [Number(load0.toFixed(2)), Number(loadavg()[0]!.toFixed(2))],
  results,
  nats: natsResults,
  goals: {
    tcpAtLeast80pct: sizesOk.every((r) => r.tcpRatio >= GOAL.tcpRatio),
    shmAtLeast50pct: sizesOk.every((r) => r.shmRatio >= GOAL.shmRatio),
    perSize: Object.fromEntries(
      Object.entries(results).map(([label, r]) => [label, { tcp: r.tcpRatio! >= GOAL.tcpRatio, shm: r.shmRatio! >= GOAL.shmRatio }]),
    ),
  },
  offersLeft: stats.stats.active,
  // single-copy shm: segments created / failed on the offering side (a failed one sends that offer over the ring)
  shmStaging: stats.stats.shmStaging,
};
console.log(JSON.stringify(summary));
