import { describe } from "vitest";
import { connect, startNatsServer, type RequestPlane } from "../src/index.js";
import { freePort } from "../src/testing.js";
import { protocolSuite } from "./protocol-suite.js";

describe("NATS transport (real nats-server)", () => {
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
    const opts = { heartbeatMs: 200, leaseMs: 1000 };
    const server = await connect(nats.uri, { ...opts, name: "suite-server" });
    const client = await connect(nats.uri, { ...opts, name: "suite-client" });
    const extras: RequestPlane[] = [];
    return {
      server,
      client,
      maxPayload,
      liveSubscriptions: () => subs,
      extraClient: async () => {
        const p = await connect(nats.uri, { ...opts, name: "suite-extra" });
        extras.push(p);
        return p;
      },
      close: async () => {
        clearInterval(poll);
        for (const p of extras) if (!p.nats?.isClosed()) await p.close();
        await client.close();
        await server.close();
        await nats.stop();
      },
    };
  });
});
