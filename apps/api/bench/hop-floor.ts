// What the hops of the api path cost on this machine with no work in them: the floor under `nx run api:bench`'s
// added TTFT (issues 16 and 19).
//
//   node --import tsx --conditions=source apps/api/bench/hop-floor.ts [--reps N] [--gaps-ms 1,20]
//
// `nx run api:bench` measures it too (measureHopFloor), in the same run as the added TTFT it is the floor of.
//
// The aggregated path crosses four process boundaries that the executor's own TTFT does not: client → api (HTTP),
// api → decode worker (the request plane's direct link: TCP), and back twice. Here a child Node process stands for the
// far end, doing nothing: (1) a TCP echo round trip between two Node processes (one link leg out and back), (2) a bare
// `node:http` server answering a JSON POST with one SSE event, read by a `node:http` keep-alive client (HTTP in and
// out, the way the bench's client reads the api). Each is measured after an idle gap between requests (`--gaps-ms`),
// as one request at a time on an idle stack is: a process asleep for a while wakes slower (cold caches, an idle CPU).
// Floor of the added TTFT ≈ one HTTP round trip + one TCP round trip. The last line is one JSON object. Servers listen
// on 127.0.0.1 on ports the OS picks; the child is stopped by PID.
import { fork, type ChildProcess } from "node:child_process";
import { createServer as createHttpServer, request, Agent } from "node:http";
import { connect, createServer as createTcpServer, type AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { describe } from "@trtd/bench";
import { intFlag, parseFlags, stringFlag, UsageError, valueFlags } from "@trtd/apps-common";

// (function declarations below: the top-level `await main()` runs before later `const`s are initialised)
const BODY = JSON.stringify({ model: "m", messages: [{ role: "user", content: "the quick brown fox jumps over a lazy dog" }], max_tokens: 2, stream: true });
const EVENT = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "x" } }] })}\n\n`;
const STEP_MS = 10_000;

if (process.argv[2] === "--far-end") {
  // The child: a TCP echo and a bare HTTP SSE server; reports both ports, exits when the parent says so.
  const tcp = createTcpServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d) => s.write(d));
  });
  const http = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      JSON.parse(Buffer.concat(chunks).toString("utf8"));
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(EVENT);
      res.end("data: [DONE]\n\n");
    });
  });
  let ports = 0;
  const ready = () => {
    if (++ports === 2) process.send!({ tcp: (tcp.address() as AddressInfo).port, http: (http.address() as AddressInfo).port });
  };
  tcp.listen(0, "127.0.0.1", ready);
  http.listen(0, "127.0.0.1", ready);
  process.on("message", () => process.exit(0));
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}

async function main() {
  let opts: { reps: number; gaps: number[] };
  try {
    const f = parseFlags(process.argv.slice(2), valueFlags("reps", "gaps-ms"));
    const gaps = (stringFlag(f, "gaps-ms") ?? "1,20").split(",").map((g) => intFlag(g, "gaps-ms", { min: 0, fallback: 1 }));
    opts = { reps: intFlag(f.reps, "reps", { min: 10, fallback: 300 }), gaps };
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`hop floor: ${err.message}`);
    process.exit(2);
  }
  const out: Record<string, unknown> = { machine: { cpus: cpus().length, cpu: cpus()[0]?.model, loadavg1m: loadavg()[0] }, reps: opts.reps };
  for (const [gap, fig] of Object.entries(await measureHopFloor(opts))) {
    out[`gap${gap}ms`] = fig;
    console.log(`idle gap ${gap} ms: TCP round trip p50 ${fig.tcpRoundTripMs.p50} ms, HTTP POST → first SSE event p50 ${fig.httpFirstEventMs.p50} ms; floor of the added TTFT ≈ ${fig.floorP50Ms} ms`);
  }
  console.log(JSON.stringify(out));
}

export interface HopFloor {
  tcpRoundTripMs: { p50: number; p90: number; p99: number };
  httpFirstEventMs: { p50: number; p90: number; p99: number };
  /** TCP round trip p50 + HTTP round trip p50: the aggregated path's four hops with no work in them. */
  floorP50Ms: number;
}

/** The hops' floor after each idle gap in `gaps` (ms), `reps` measurements each (after 20 of warm-up). */
export async function measureHopFloor(opts: { reps: number; gaps: number[] }): Promise<Record<number, HopFloor>> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--far-end"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const stopChild = () => {
    if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGKILL");
  };
  try {
    const ports = await bounded(new Promise<{ tcp: number; http: number }>((r) => child.once("message", (m) => r(m as { tcp: number; http: number }))), 30_000, "the far end to listen");
    const sock = connect(ports.tcp, "127.0.0.1");
    sock.setNoDelay(true);
    await bounded(new Promise((r) => sock.once("connect", r)), STEP_MS, "the TCP connection");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const out: Record<number, HopFloor> = {};
    for (const gap of opts.gaps) {
      const tcp: number[] = [];
      const http: number[] = [];
      for (let i = 0; i < opts.reps + 20; i++) {
        // alternate the two, each after the same idle gap; the first 20 of each are warm-up
        await sleep(gap);
        const t = await tcpRoundTrip(sock);
        await sleep(gap);
        const h = await httpFirstEvent(agent, ports.http);
        if (i >= 20) {
          tcp.push(t);
          http.push(h);
        }
      }
      const d = (xs: number[]) => {
        const s = describe(xs); // reps >= 10: every percentile is defined
        return { p50: round(s.p50!), p90: round(s.p90!), p99: round(s.p99!) };
      };
      const t = d(tcp);
      const h = d(http);
      out[gap] = { tcpRoundTripMs: t, httpFirstEventMs: h, floorP50Ms: round(t.p50 + h.p50) };
    }
    sock.destroy();
    agent.destroy();
    return out;
  } finally {
    child.send?.("exit");
    await Promise.race([new Promise((r) => child.once("exit", r)), sleep(2000)]);
    stopChild();
  }
}

function tcpRoundTrip(sock: ReturnType<typeof connect>): Promise<number> {
  const t0 = process.hrtime.bigint();
  return bounded(
    new Promise<number>((resolve) => {
      sock.once("data", () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
      sock.write("x");
    }),
    STEP_MS,
    "a TCP echo",
  );
}

function httpFirstEvent(agent: Agent, port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  return bounded(
    new Promise<number>((resolve, reject) => {
      let first = 0;
      const req = request({ host: "127.0.0.1", port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) } }, (res) => {
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          if (first === 0 && d.includes('"content":"x"')) first = Number(process.hrtime.bigint() - t0) / 1e6;
        });
        res.on("end", () => (first > 0 ? resolve(first) : reject(new Error("no SSE event in the answer"))));
      });
      req.on("error", reject);
      req.end(BODY);
    }),
    STEP_MS,
    "an HTTP answer",
  );
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
