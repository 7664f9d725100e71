import { Svcm } from "@nats-io/services";
import { connect as natsConnect } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { connect, startNatsServer } from "../src/index.js";

describe("instances as NATS micro services", () => {
  it("appear to standard tooling ($SRV INFO/STATS) with their names, load, and go away on stop", async () => {
    const nats = await startNatsServer();
    const plane = await connect(nats.uri);
    // Standard tooling on its own connection, as `nats micro` would be.
    const tooling = await natsConnect({ servers: nats.uri });
    try {
      const served = await plane.serve("tools/decode/generate", (req: number) => req + 1, {
        instanceId: "w1",
        metrics: () => ({ kvBlocksFree: 5 }),
      });
      const c = plane.client<number, number>("tools/decode/generate", { router: "queue" });
      expect(await c.request(1)).toBe(2); // through the service's queue endpoint

      const svc = new Svcm(tooling).client({ strategy: "timer", maxWait: 1000 });
      const infos = [];
      for await (const i of await svc.info("tools-decode")) infos.push(i);
      expect(infos).toHaveLength(1);
      expect(infos[0].metadata).toMatchObject({ namespace: "tools", component: "decode", endpoint: "generate", instance: "w1" });
      expect(infos[0].endpoints.map((e) => e.subject).sort()).toEqual(["rp.tools.decode.generate", "rp.tools.decode.generate.i.w1"]);

      const stats = [];
      for await (const s of await svc.stats("tools-decode")) stats.push(s);
      const ep = stats[0].endpoints!.find((e) => e.name === "generate")!;
      expect(ep.num_requests).toBe(1);
      expect(ep.data).toMatchObject({ activeRequests: 0, kvBlocksFree: 5 });

      await served.stop();
      // nobody answers any more: nats.js reports no responders (or an empty answer set)
      const after: unknown[] = [];
      const outcome = await (async () => {
        for await (const i of await svc.ping("tools-decode")) after.push(i);
        return "empty";
      })().catch((e: Error) => e.name);
      expect(after).toHaveLength(0);
      expect(["empty", "NoResponders"]).toContain(outcome);
      c.close();
    } finally {
      await tooling.close();
      await plane.close();
      await nats.stop();
    }
  });
});
