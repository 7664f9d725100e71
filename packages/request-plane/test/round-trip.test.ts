import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, startNatsServer, type NatsServerHandle, type RequestPlane } from "../src/index.js";

describe("request plane over NATS - round trip", () => {
  let server: NatsServerHandle;
  let plane: RequestPlane;
  beforeAll(async () => {
    server = await startNatsServer();
    plane = await connect(server.uri, { name: "round-trip-test" });
  });
  afterAll(async () => {
    await plane?.close();
    await server?.stop();
  });

  it("serves a single reply and a stream, and reports the instance", async () => {
    const ep = plane.namespace("test").component("echo").endpoint("generate");
    const served = await ep.serve<{ text: string; n: number }, string>(async function* (req, ctx) {
      for (let i = 0; i < req.n; i++) yield `${req.text}-${i}@${ctx.instanceId}`;
    });
    const client = ep.client<{ text: string; n: number }, string>();
    const [inst] = await client.waitForInstances({ timeoutMs: 5000 });
    expect(inst.id).toBe(served.instanceId);
    expect(inst.path).toBe(`test/echo/generate/${served.instanceId}`);
    expect(inst.metrics.activeRequests).toBe(0);

    const replies = await client.generate({ text: "hi", n: 3 }).collect();
    expect(replies).toEqual([0, 1, 2].map((i) => `hi-${i}@${served.instanceId}`));
    expect(await client.request({ text: "one", n: 1 })).toBe(`one-0@${served.instanceId}`);
    client.close();
    await served.stop();
  });
});
