import { describe } from "vitest";
import { createInProcessPlane } from "../src/index.js";
import { InProcessBus } from "../src/testing.js";
import { protocolSuite } from "./protocol-suite.js";

describe("in-process transport", () => {
  protocolSuite(async () => {
    const maxPayload = 64 * 1024;
    const bus = new InProcessBus(maxPayload);
    const opts = { bus, heartbeatMs: 200, leaseMs: 1000 };
    const server = createInProcessPlane(opts);
    const client = createInProcessPlane(opts);
    return {
      server,
      client,
      maxPayload,
      liveSubscriptions: () => bus.subscriptionCount,
      extraClient: async () => createInProcessPlane(opts),
      crash: (p) => p.transport.close(),
      close: async () => {
        await client.close();
        await server.close();
      },
    };
  });
});
