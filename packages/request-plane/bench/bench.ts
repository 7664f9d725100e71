/**
 * Request-plane benchmark (nx run request-plane:bench). Baselines are measured in the same run:
 * - round trip: raw NATS request/reply vs client.request() through the request plane (sequential, p50/p99),
 *   and both with 64 requests in flight (req/s);
 * - streaming: raw NATS (server publishes N messages to the reply inbox) vs a handler yielding N replies,
 *   RP_BENCH_STREAM_REPS times (default 5) alternating, medians reported (RP_BENCH_ONLY=streaming: only this);
 * - codec: JSON vs the binary codec on token-array frames (encode + decode, bytes);
 * - direct link: the same endpoints called from a plane with the direct data path on (frames over TCP to the
 *   instance) and one with it off (through nats-server), same serving plane: round trip p50/p99 with a small and a
 *   4 KiB payload (blocks of requests alternating between the two) and streamed replies/s (alternating runs);
 *   ratios NATS / direct for latency and direct / NATS for throughput.
 * The "plane" figures of roundTrip, concurrent64 and streaming are those of the NATS carrier (directLink off), as
 * in earlier runs; the serving plane and the client are separate connections.
 * Every loop is bounded in count and in time. The last line is one JSON object.
 */
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { binaryCodec, connect, createInProcessPlane, jsonCodec, startNatsServer, type Codec } from "../src/index.js";

const TIME_CAP_MS = 15_000;
const RT_N = Number(process.env.RP_BENCH_RT ?? 3000);
const STREAM_N = Number(process.env.RP_BENCH_STREAM ?? 100_000);
const CONC = 64;
const CONC_N = Number(process.env.RP_BENCH_CONC ?? 20_000);
/** Streaming is measured STREAM_REPS times, raw and plane alternating, and the medians are reported. */
const STREAM_REPS = Math.max(1, Number(process.env.RP_BENCH_STREAM_REPS ?? 5));
/** `streaming` runs only the streaming comparison (for profiling: node --cpu-prof). */
const ONLY = process.env.RP_BENCH_ONLY ?? "";

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function timed(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n && performance.now() - t0 < TIME_CAP_MS; i++) {
    const s = performance.now();
    await fn(i);
    out.push(performance.now() - s);
  }
  return out;
}

async function concurrent(n: number, conc: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n && performance.now() - t0 < TIME_CAP_MS) {
      await fn(next++);
      done++;
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return done / ((performance.now() - t0) / 1000);
}

function codecBench(codec: Codec | "json-plain", tokens: number): { usPerRoundTrip: number; bytes: number } {
  const msg = { k: "d", s: 123, p: { tokens: Array.from({ length: tokens }, (_, i) => (i * 7919) % 128_000), final: false } };
  const te = new TextEncoder();
  const td = new TextDecoder();
  const enc = codec === "json-plain" ? (v: unknown) => te.encode(JSON.stringify(v)) : (v: unknown) => codec.encode(v);
  const dec = codec === "json-plain" ? (b: Uint8Array) => JSON.parse(td.decode(b)) : (b: Uint8Array) => codec.decode(b);
  const iters = Math.max(500, Math.floor(300_000 / tokens));
  let bytes = 0;
  for (let i = 0; i < 200; i++) dec(enc(msg)); // warm up
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const b = enc(msg);
    bytes = b.byteLength;
    dec(b);
  }
  return { usPerRoundTrip: r3(((performance.now() - t0) / iters) * 1000), bytes };
}

async function rawStream(nc: NatsConnection, n: number): Promise<number> {
  const sub = nc.subscribe("raw.stream", {
    callback: (_e, m) => {
      const reply = m.reply!;
      for (let i = 0; i < n; i++) nc.publish(reply, binaryCodec.encode({ k: "d", s: i + 1, p: { tokens: [i] } }));
    },
  });
  const inbox = `_INBOX.rawstream.${Date.now()}`;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let got = 0;
    const timer = setTimeout(() => reject(new Error("raw stream timed out")), TIME_CAP_MS * 2);
    const s = nc.subscribe(inbox, {
      callback: (_e, m) => {
        binaryCodec.decode(m.data);
        if (++got === n) {
          clearTimeout(timer);
          s.unsubscribe();
          resolve();
        }
      },
    });
    nc.publish("raw.stream", new Uint8Array(1), { reply: inbox });
  });
  sub.unsubscribe();
  return n / ((performance.now() - t0) / 1000);
}

/** Runs `a` and `b` in `blocks` alternating blocks of n/blocks sequential calls each: their latencies, ms. */
async function alternating(n: number, blocks: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number[], number[]]> {
  const la: number[] = [];
  const lb: number[] = [];
  const per = Math.max(1, Math.floor(n / blocks));
  for (let i = 0; i < blocks; i++) {
    la.push(...(await timed(per, a)));
    lb.push(...(await timed(per, b)));
  }
  return [la, lb];
}

async function main(): Promise<void> {
  const nats = await startNatsServer();
  const nc = await natsConnect({ servers: nats.uri, name: "bench-raw" });
  // One serving plane (it offers direct links); clients on a plane with the link off (NATS) and one with it on.
  const server = await connect(nats.uri, { name: "bench-server" });
  const plane = await connect(nats.uri, { name: "bench-client-nats", directLink: false });
  const direct = await connect(nats.uri, { name: "bench-client-direct" });
  try {
    // raw NATS baseline responder
    const payload = binaryCodec.encode({ tokens: [1, 2, 3, 4, 5, 6, 7, 8] });
    nc.subscribe("raw.echo", { callback: (_e, m) => void m.respond(m.data) });
    await nc.flush();

    const ep = server.endpoint("bench", "echo", "rt");
    await server.serve(ep, (req: { tokens: number[] }) => req);
    const streamEp = server.endpoint("bench", "echo", "stream");
    await server.serve(streamEp, async function* (req: { n: number }) {
      for (let i = 0; i < req.n; i++) yield { tokens: [i] };
    });
    const client = plane.client<{ tokens: number[] }, { tokens: number[] }>(ep);
    const sclient = plane.client<{ n: number }, { tokens: number[] }>(streamEp, { ...(process.env.RP_BENCH_WINDOW ? { window: Number(process.env.RP_BENCH_WINDOW) } : {}) });
    await client.waitForInstances({ timeoutMs: 5000 });
    await sclient.waitForInstances({ timeoutMs: 5000 });
    const req = { tokens: [1, 2, 3, 4, 5, 6, 7, 8] };

    const dclient = direct.client<{ tokens: number[] } | { b: Uint8Array }, unknown>(ep);
    const dsclient = direct.client<{ n: number }, { tokens: number[] }>(streamEp, { ...(process.env.RP_BENCH_WINDOW ? { window: Number(process.env.RP_BENCH_WINDOW) } : {}) });
    await dclient.waitForInstances({ timeoutMs: 5000 });
    await dsclient.waitForInstances({ timeoutMs: 5000 });

    const planeStream = async (n: number, c = sclient): Promise<number> => {
      const ts = performance.now();
      let got = 0;
      for await (const _r of c.generate({ n }, { timeoutMs: TIME_CAP_MS * 2 })) got++;
      if (got !== n) throw new Error(`plane stream got ${got} of ${n}`);
      return got / ((performance.now() - ts) / 1000);
    };
    // streaming: warm both paths, then alternate raw and plane; the ratio is median over median
    await rawStream(nc, Math.min(STREAM_N, 20_000));
    await planeStream(Math.min(STREAM_N, 20_000));
    await planeStream(Math.min(STREAM_N, 20_000), dsclient);
    const rawRates: number[] = [];
    const planeRates: number[] = [];
    const directRates: number[] = [];
    for (let i = 0; i < STREAM_REPS; i++) {
      rawRates.push(await rawStream(nc, STREAM_N));
      planeRates.push(await planeStream(STREAM_N));
      directRates.push(await planeStream(STREAM_N, dsclient));
    }
    const directStreamRate = median(directRates);
    const rawStreamRate = median(rawRates);
    const rpStreamRate = median(planeRates);
    const streaming = {
      n: STREAM_N,
      reps: STREAM_REPS,
      rawNatsMsgPerS: Math.round(rawStreamRate),
      planeRepliesPerS: Math.round(rpStreamRate),
      ratio: r3(rpStreamRate / rawStreamRate),
      rawRuns: rawRates.map(Math.round),
      planeRuns: planeRates.map(Math.round),
      pairRatios: planeRates.map((p, i) => r3(p / rawRates[i]!)),
      directRepliesPerS: Math.round(directStreamRate),
      directRuns: directRates.map(Math.round),
      directVsRawNats: r3(directStreamRate / rawStreamRate),
      directVsPlaneNats: r3(directStreamRate / rpStreamRate),
    };
    if (ONLY === "streaming") {
      console.log(JSON.stringify({ bench: "request-plane", date: new Date().toISOString(), node: process.version, streaming }));
      return;
    }

    // warm-up
    await timed(300, () => nc.request("raw.echo", payload, { timeout: 5000 }));
    await timed(300, () => client.request(req));

    const raw = await timed(RT_N, () => nc.request("raw.echo", payload, { timeout: 5000 }));
    const rp = await timed(RT_N, () => client.request(req));
    const rawConc = await concurrent(CONC_N, CONC, () => nc.request("raw.echo", payload, { timeout: 10_000 }));
    const rpConc = await concurrent(CONC_N, CONC, () => client.request(req, { timeoutMs: 10_000 }));

    // direct link against the NATS carrier, same serving plane, alternating blocks
    const small = { tokens: [1, 2, 3, 4, 5, 6, 7, 8] };
    const kib4 = { b: new Uint8Array(4096).fill(7) };
    await timed(300, () => dclient.request(small));
    const directLink: Record<string, unknown> = {};
    for (const [name, body] of [["small", small], ["kib4", kib4]] as const) {
      const [viaNats, viaLink] = await alternating(RT_N, 10, () => client.request(body as never), () => dclient.request(body));
      directLink[`roundTrip_${name}`] = {
        n: viaLink.length,
        natsP50Ms: r3(pct(viaNats, 50)),
        natsP99Ms: r3(pct(viaNats, 99)),
        directP50Ms: r3(pct(viaLink, 50)),
        directP99Ms: r3(pct(viaLink, 99)),
        p50Speedup: r3(pct(viaNats, 50) / pct(viaLink, 50)),
        p99Speedup: r3(pct(viaNats, 99) / pct(viaLink, 99)),
      };
    }
    directLink.streaming = { natsRepliesPerS: Math.round(rpStreamRate), directRepliesPerS: Math.round(directStreamRate), ratio: r3(directStreamRate / rpStreamRate) };
    const counts = dclient.carrierCounts();
    if (Object.values(counts).some((c) => c.nats > 0)) throw new Error(`direct client sent over NATS: ${JSON.stringify(counts)}`);

    // in-process plane, for reference
    const ip = createInProcessPlane();
    const ipEp = ip.endpoint("bench", "echo", "rt");
    await ip.serve(ipEp, (r: { tokens: number[] }) => r);
    const ipc = ip.client<{ tokens: number[] }, { tokens: number[] }>(ipEp);
    await ipc.waitForInstances({ timeoutMs: 5000 });
    await timed(300, () => ipc.request(req));
    const ipRt = await timed(RT_N, () => ipc.request(req));
    await ip.close();

    const codecs: Record<string, Record<string, { usPerRoundTrip: number; bytes: number }>> = {};
    for (const n of [1, 16, 512, 4096]) {
      codecs[`tokens_${n}`] = {
        json: codecBench(jsonCodec, n),
        json_plain: codecBench("json-plain", n),
        binary: codecBench(binaryCodec, n),
      };
    }

    const result = {
      bench: "request-plane",
      date: new Date().toISOString(),
      node: process.version,
      roundTrip: {
        n: rp.length,
        rawNatsP50Ms: r3(pct(raw, 50)),
        rawNatsP99Ms: r3(pct(raw, 99)),
        planeP50Ms: r3(pct(rp, 50)),
        planeP99Ms: r3(pct(rp, 99)),
        p50Ratio: r3(pct(rp, 50) / pct(raw, 50)),
        p99Ratio: r3(pct(rp, 99) / pct(raw, 99)),
        inProcessP50Ms: r3(pct(ipRt, 50)),
      },
      concurrent64: {
        rawNatsReqPerS: Math.round(rawConc),
        planeReqPerS: Math.round(rpConc),
        ratio: r3(rpConc / rawConc),
      },
      streaming,
      directLink,
      codecs,
    };
    for (const [k, v] of Object.entries(result)) if (typeof v === "object") console.log(k, JSON.stringify(v));
    console.log(JSON.stringify(result));
  } finally {
    await direct.close();
    await plane.close();
    await server.close();
    await nc.drain();
    await nats.stop();
  }
}

await main();
