// Compatibility at registration (real nats-server, real workers, the api): workers of a second model directory
// that differs from the deployment's in one config value (rope_theta) are refused by the api, each with one log
// line and trtd_workers_refused_total{component,reason="model"}, whatever order they come in; requests never
// reach them. A decode worker handed KV by such a prefill worker refuses it (its KV layout names another model)
// and recomputes the prompt: the output is its own model's.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Endpoints, parseWorkerReadyLine, type DecodeChunk, type DecodeRequest, type GenerateRequest, type PrefillResult } from "@trtd/apps-common";
import { connect, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { apiArgs, eventually, metricValue, modelDir, startApp, startNats, stopAll, waitForWorkers, workerArgs, type AppProcess } from "./support/processes.js";
import { prompts, streamCompletion } from "./support/http.js";

const NS = "rel-compat";
let nats: NatsServerHandle;
let api: AppProcess;
let otherDir: string;
const other: { decode?: AppProcess; prefill?: AppProcess } = {};
let decodeA: AppProcess;

const instanceOf = (p: AppProcess, role: string) => {
  const ready = p.output.map(parseWorkerReadyLine).find((r) => r?.role === role);
  if (!ready) throw new Error(`no ready line from ${role}`);
  return ready.instanceId;
};
const refusalLines = () => api.output.filter((l) => l.includes("refusing "));

beforeAll(async () => {
  // The second model: models/tiny with one config value changed.
  otherDir = mkdtempSync(join(tmpdir(), "trtd-compat-"));
  cpSync(modelDir, otherDir, { recursive: true });
  const config = JSON.parse(readFileSync(join(otherDir, "config.json"), "utf8"));
  config.rope_theta = 10_000;
  writeFileSync(join(otherDir, "config.json"), JSON.stringify(config, null, 2));

  nats = await startNats();
  // The mismatched workers come first: the api's own model directory decides, not the order of arrival.
  const otherArgs = ["--worker-name", NS, "--request-plane-uri", nats.uri, "--model-dir", otherDir, "--threads", "1"];
  [api, other.decode, other.prefill] = await Promise.all([
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"])),
    startApp("decode", otherArgs),
    startApp("prefill", otherArgs),
  ]);
  await eventually(async () => refusalLines().length === 2, 15_000, "the api to refuse both workers of the other model");
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
  if (otherDir) rmSync(otherDir, { recursive: true, force: true });
});

describe("compatibility at registration", () => {
  it("refuses the other model's workers with one log line each and a metric; the api is not ready on them", async () => {
    const lines = refusalLines();
    expect(lines.some((l) => l.includes(`refusing decode worker ${instanceOf(other.decode!, "decode")}: model differs from the deployment's`))).toBe(true);
    expect(lines.some((l) => l.includes(`refusing prefill worker ${instanceOf(other.prefill!, "prefill")}: model differs from the deployment's`))).toBe(true);
    expect(await metricValue(api.url, 'trtd_workers_refused_total{component="decode",reason="model"}')).toBe(1);
    expect(await metricValue(api.url, 'trtd_workers_refused_total{component="prefill",reason="model"}')).toBe(1);
    const h = await fetch(`${api.url}/health`);
    expect(h.status).toBe(503);
    expect(await h.json()).toMatchObject({ decodeWorkers: 0, prefillWorkers: 0 });
    const r = await streamCompletion(api.url, { prompt: "hello", max_tokens: 4, temperature: 0 });
    expect(r.status).toBe(503);
    expect(r.error?.code).toBe("no_workers_available");
  });

  it("a matching decode worker joins; requests run only on it (aggregated, its model's text); refusals are not repeated", async () => {
    decodeA = await startApp("decode", workerArgs(nats.uri, NS));
    await waitForWorkers(api.url, 1, 0);
    const ps = prompts(6);
    const body = (p: string) => ({ prompt: p, max_tokens: 16, temperature: 0 });
    const first = await Promise.all(ps.map((p) => streamCompletion(api.url, body(p))));
    const again = await Promise.all(ps.map((p) => streamCompletion(api.url, body(p))));
    for (let i = 0; i < ps.length; i++) {
      expect(first[i].error).toBeUndefined();
      expect(first[i].finishReason).toBe("length");
      expect(again[i].text).toBe(first[i].text);
    }
    // Nothing went to the other model's prefill worker (it is never a candidate) nor to its decode worker.
    expect(await metricValue(api.url, 'trtd_routed_requests_total{mode="aggregated"}')).toBe(12);
    expect(await metricValue(api.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(0);
    expect(refusalLines()).toHaveLength(2);
    expect(await metricValue(api.url, 'trtd_workers_refused_total{component="decode",reason="model"}')).toBe(1);
  });

  it("a decode worker refuses KV offered by the other model's prefill worker and recomputes the prompt", async () => {
    const plane: RequestPlane = await connect(nats.uri, { name: "compat-test" });
    try {
      const tokens = Array.from({ length: 40 }, (_, i) => 1000 + i * 7);
      const req: GenerateRequest = { id: "compat-1", tokens, sampling: { temperature: 0, topP: 1, topK: 0 }, maxTokens: 8, stopTokenIds: [], deadline: Date.now() + 30_000 };
      const prefillClient = plane.endpoint(NS, Endpoints.prefill.component, Endpoints.prefill.endpoint).client<GenerateRequest, PrefillResult>();
      const decodeClient = plane.endpoint(NS, Endpoints.decode.component, Endpoints.decode.endpoint).client<DecodeRequest, DecodeChunk>();
      const decodeId = instanceOf(decodeA, "decode");
      const run = async (r: DecodeRequest) => {
        const chunks: DecodeChunk[] = [];
        for await (const c of decodeClient.generate(r, { instanceId: decodeId, deadline: r.deadline })) chunks.push(c);
        return chunks;
      };
      const aggregated = await run({ ...req, id: "compat-agg" });
      const result = await prefillClient.request(req, { instanceId: instanceOf(other.prefill!, "prefill"), deadline: req.deadline });
      const handed = await run({ ...req, prefill: result });
      expect(handed[0].mode).toBe("recomputed");
      expect(handed.flatMap((c) => c.tokens)).toEqual(aggregated.flatMap((c) => c.tokens));
      expect(decodeA.output.some((l) => /KV pull for compat-1 failed.*incompatible KV layout/.test(l))).toBe(true);
      prefillClient.close();
      decodeClient.close();
    } finally {
      await plane.close();
    }
  });
});
