// The api over a real nats-server with a real decode worker: /metrics shows, per worker instance, how the api's
// requests travelled (the direct link, or through nats-server), and the output is the same either way.
import { afterAll, describe, expect, it } from "vitest";
import { startRealApi, type RealApi } from "./support/real-api.js";

const started: RealApi[] = [];
afterAll(async () => {
  for (const a of started) await a.stop();
});

async function complete(api: RealApi, prompt: string): Promise<string> {
  const r = await fetch(`${api.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", prompt, max_tokens: 8, temperature: 0, stream: true }),
  });
  expect(r.status).toBe(200);
  return await r.text();
}

describe("api - the request plane's direct data path", () => {
  it("/metrics counts the requests per decode instance and carrier; the streamed output is the same with the link on and off", async () => {
    const outputs: string[] = [];
    for (const directLink of [true, false]) {
      const api = await startRealApi({}, { nats: true, directLink });
      started.push(api);
      const text = await complete(api, "The quick brown fox");
      await complete(api, "jumps over");
      outputs.push(text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)).choices?.[0]?.text ?? "").join(""));
      const metrics = await (await fetch(`${api.url}/metrics`)).text();
      const id = api.decode.instanceId;
      const line = (carrier: string) => new RegExp(`^trtd_request_plane_requests_total\\{carrier="${carrier}",component="decode",instance="${id}"\\} (\\d+)$`, "m").exec(metrics)?.[1];
      expect(line("direct")).toBe(directLink ? "2" : "0");
      expect(line("nats")).toBe(directLink ? "0" : "2");
    }
    expect(outputs[0].length).toBeGreaterThan(0);
    expect(outputs[1]).toBe(outputs[0]);
  });
});
