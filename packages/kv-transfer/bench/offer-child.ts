// Benchmark helper: the offering side in its own process (as a prefill worker is). Driven over IPC by bench.ts.
import { createServer } from "node:net";
import { connect, type RequestPlane } from "@trtd/request-plane";
import { BufferKvSource, KvOfferServer } from "../src/index.js";
import { benchLayout, BLOCK_BYTES } from "./shape.js";

const plane: RequestPlane | undefined = process.env.NATS_URI ? await connect(process.env.NATS_URI) : undefined;
const server = await KvOfferServer.start({
  layout: benchLayout,
  host: "127.0.0.1",
  port: 0,
  chunkBytes: Number(process.env.CHUNK_BYTES ?? 512 * 1024),
  shm: { slots: Number(process.env.SHM_SLOTS ?? 8) },
  ...(plane ? { nats: { requestPlane: plane } } : {}),
});
const memory = new Map<number, Uint8Array[]>();

function segmentsOf(bytes: number): Uint8Array[] {
  let segs = memory.get(bytes);
  if (!segs) {
    memory.clear();
    const all = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i += 4096) all[i] = (i / 4096) & 0xff; // touch every page, non-constant data
    segs = [];
    for (let off = 0; off < bytes; off += BLOCK_BYTES) segs.push(all.subarray(off, Math.min(bytes, off + BLOCK_BYTES)));
    memory.set(bytes, segs);
  }
  return segs;
}

process.on("message", (m: { cmd: string; bytes: number }) => {
  if (m.cmd === "offer") {
    const segs = segmentsOf(m.bytes);
    const t0 = performance.now();
    const handle = server.offer(new BufferKvSource(segs, (m.bytes / BLOCK_BYTES) * 16), { ttlMs: 120_000 });
    process.send!({ handle, offerMs: performance.now() - t0 });
  } else if (m.cmd === "raw") {
    // Baseline: a tuned socket pipe writing the same bytes. The connection is made before the clock starts;
    // on the puller's one-byte "go" the whole offer goes out as one corked writev of its 2 MiB segments (no
    // copy, no per-chunk JavaScript, libuv writes as the kernel takes it), then FIN.
    const segs = segmentsOf(m.bytes);
    const raw = createServer((sock) => {
      sock.setNoDelay(true);
      sock.once("data", () => {
        sock.cork();
        for (const s of segs) sock.write(s);
        sock.uncork();
        sock.end();
        raw.close();
      });
    });
    raw.listen(0, "127.0.0.1", () => process.send!({ port: (raw.address() as { port: number }).port }));
  } else if (m.cmd === "stats") {
    process.send!({ stats: server.stats() });
  } else if (m.cmd === "exit") {
    void server
      .close()
      .then(() => plane?.close())
      .then(() => process.exit(0));
  }
});
process.send!({ ready: true });
