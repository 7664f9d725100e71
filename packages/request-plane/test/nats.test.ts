import { describe } from "vitest";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import { connect, NatsTransport, RequestPlane, startNatsServer } from "../src/index.js";
import { freePort } from "../src/testing.js";
import { protocolSuite } from "./protocol-suite.js";

// Twice: with the direct link (the default: request and reply frames go over TCP to the instance) and without
// (every frame through nats-server), so both carriers keep every guarantee of the suite.
for (const directLink of [true, false]) describe(`NATS transport (real nats-server), direct link ${directLink ? "on" : "off"}`, () => {
  protocolSuite(async () => {
    const maxPayload = 256 * 1024;
    const monitorPort = await freePort();
    const nats = await startNatsServer({ maxPayload, args: ["-m", String(monitorPort)] });
    let subs = 0;
    // nats-server's monitoring endpoint counts the subscriptions of every connection
    const poll = setInterval(async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${monitorPort}/subsz`);
        subs = ((await r.json()) as { num_subscriptions: number }).num_subscriptions;
      } catch {
        subs = -1;
      }
    }, 20);
    const opts = { heartbeatMs: 200, leaseMs: 1000, directLink };
    const server = await connect(nats.uri, { ...opts, name: "suite-server" });
    const client = await connect(nats.uri, { ...opts, name: "suite-client" });
    // Extra clients on connections the test holds, so that crash() can close one without a drain.
    const extras = new Map<RequestPlane, NatsConnection>();
    return {
      server,
      client,
      maxPayload,
      liveSubscriptions: () => subs,
      extraClient: async () => {
        const nc = await natsConnect({ servers: nats.uri, name: "suite-extra" });
        const p = new RequestPlane(NatsTransport.fromConnection(nc), opts);
        extras.set(p, nc);
        return p;
      },
      crash: async (p) => {
        const nc = extras.get(p)!;
        const cid = nc.info?.client_id;
        await nc.close(); // no drain: like a crash, from the server's point of view
        // nats-server notices the closed socket on its own goroutine: until then it still routes messages to the
        // dead connection's subscriptions (lost, with no no-responders). A crash in the suite means one the
        // server has noticed; the request caught in that window is the accept timeout's case, tested apart.
        const t0 = Date.now();
        for (;;) {
          const r = await fetch(`http://127.0.0.1:${monitorPort}/connz?cid=${cid}`);
          if (((await r.json()) as { connections?: unknown[] }).connections?.length === 0) break;
          if (Date.now() - t0 > 5000) throw new Error(`nats-server still lists connection ${cid} 5 s after it closed`);
          await new Promise((res) => setTimeout(res, 10));
        }
      },
      close: async () => {
        clearInterval(poll);
        for (const [p, nc] of extras) if (!nc.isClosed()) await p.close();
        await client.close();
        await server.close();
        await nats.stop();
      },
    };
  });
});
