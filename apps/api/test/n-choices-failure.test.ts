// `n` > 1 when choice 0 fails before its first token: the later choices wait for choice 0's first token, so they
// must never start; the client gets choice 0's error. The api is real (tokenizer, router, the in-process request
// plane, HTTP, the official openai client); the decode worker is a TEST DOUBLE, because a real worker cannot be
// made to fail one chosen request on cue: it fails choice 0 (told apart by its seed) and answers every other
// request with a fixed completion.
import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInProcessPlane, type RequestPlane } from "@trtd/request-plane";
import { eventually, modelDir } from "@trtd/test-support";
import { startApiServer, type RunningApiServer } from "../src/index.js";
import { startScriptedDecodeWorkerTestDouble, type ScriptedDecodeWorkerTestDouble, type ScriptedFailure } from "./support/decode-double.js";

const SEED = 500;
/** Any other seed: a request that succeeds. */
const OK_SEED = 9000;

let plane: RequestPlane;
let double: ScriptedDecodeWorkerTestDouble;
let api: RunningApiServer;
let client: OpenAI;
let failure: ScriptedFailure = "throw";
const logs: string[] = [];

beforeAll(async () => {
  plane = createInProcessPlane();
  double = await startScriptedDecodeWorkerTestDouble({
    plane,
    modelDir,
    reply: () => [9906, 1917, 0, 1115, 374, 264, 1296, 13], // text in cl100k ("Hello world! This is a test.")
    fail: (req) => (req.sampling.seed === SEED ? failure : undefined),
  });
  api = await startApiServer({ plane, tokenizerDir: modelDir, modelName: "tiny", host: "127.0.0.1", port: 0, log: (l) => logs.push(l) });
  const router = api.router;
  await eventually(() => router.readiness().ready, 10_000, "the api to see the decode worker test double", { intervalMs: 20 });
  client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
}, 60_000);
afterAll(async () => {
  await api?.close();
  await double?.stop();
  await plane?.close();
});

const messages = [{ role: "user" as const, content: "Tell me a story." }];

describe("n > 1, choice 0 fails before its first token", () => {
  for (const how of ["throw", "error-chunk"] as const)
    for (const stream of [false, true]) {
      it(`(${how}, ${stream ? "streamed" : "whole"}) no other choice is sent to a worker; the client gets choice 0's error`, async () => {
        failure = how;
        const from = double.requests.length;
        const err = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 1, seed: SEED, n: 3, stream } as never).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(APIError);
        expect((err as APIError).status).toBe(502);
        expect((err as APIError).code).toBe("worker_failed");
        expect((err as APIError).message).toContain("decode test double");
        // A request after it on the same plane and worker: once it is answered, any choice the api sent before has
        // reached the worker too.
        const after = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 1, seed: OK_SEED });
        expect(after.choices[0]!.message.content).toBe("Hello world! This is a test.");
        expect(double.requests.slice(from).map((r) => r.sampling.seed)).toEqual([SEED, OK_SEED]);
      });
    }

  it("a choice 0 that succeeds still starts the others (the double answers choices 1 and 2)", async () => {
    const from = double.requests.length;
    const r = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 1, seed: OK_SEED, n: 3 });
    expect(r.choices.map((c) => c.message.content)).toEqual(Array(3).fill("Hello world! This is a test."));
    expect(double.requests.slice(from).map((r) => r.sampling.seed)).toEqual([OK_SEED, OK_SEED + 1, OK_SEED + 2]);
  });
});
