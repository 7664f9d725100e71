/**
 * A standalone service on the request plane, end to end in one file:
 *
 *   node --import tsx --conditions=source packages/request-plane/examples/echo-service.ts [nats://host:port]
 *
 * Without a URI it starts its own nats-server (Debian's `nats-server` must be installed). It serves
 * `demo/echo/stream` (streams each token back, stops when cancelled), calls it, cancels one call midway,
 * prints what it saw, and shuts everything down.
 */
import { CancelledError, connect, startNatsServer, type NatsServerHandle } from "../src/index.js";

interface EchoRequest {
  tokens: number[];
  delayMs?: number;
}
interface EchoReply {
  token: number;
  index: number;
}

const uri = process.argv[2];
let nats: NatsServerHandle | undefined;
if (!uri) nats = await startNatsServer();
const plane = await connect(uri ?? nats!.uri, { name: "echo-example" });

try {
  const echo = plane.namespace("demo").component("echo").endpoint("stream");

  // The worker side: a handler yields replies and watches its AbortSignal.
  let active = 0;
  const served = await echo.serve<EchoRequest, EchoReply>(
    async function* (req, { signal }) {
      active++;
      try {
        for (const [index, token] of req.tokens.entries()) {
          if (signal.aborted) return;
          if (req.delayMs) await new Promise((r) => setTimeout(r, req.delayMs));
          yield { token, index };
        }
      } finally {
        active--;
      }
    },
    { metrics: () => ({ queuedRequests: 0 }) },
  );
  console.log(`serving ${served.path}`);

  // The caller side: discover, stream, cancel.
  const client = echo.client<EchoRequest, EchoReply>();
  const [instance] = await client.waitForInstances({ timeoutMs: 5000 });
  console.log(`found ${instance.path} with load ${JSON.stringify(instance.metrics)}`);

  const replies = await client.generate({ tokens: [101, 102, 103] }, { timeoutMs: 5000 }).collect();
  console.log(`streamed: ${replies.map((r) => r.token).join(" ")}`);

  const ac = new AbortController();
  const seen: number[] = [];
  try {
    for await (const r of client.generate({ tokens: [1, 2, 3, 4, 5, 6, 7, 8], delayMs: 20 }, { signal: ac.signal })) {
      seen.push(r.token);
      if (seen.length === 3) ac.abort();
    }
  } catch (err) {
    if (!(err instanceof CancelledError)) throw err;
    console.log(`cancelled after ${seen.join(" ")} (${err.code})`);
  }
  client.close();
} finally {
  await plane.close();
  await nats?.stop();
}
