// Security: nats-server with TLS (a throwaway CA made with openssl here) and user/password; every component
// connects with TRTD_NATS_* from its environment; one without the credentials or the CA cannot connect. The
// api with an API key refuses every /v1 route without it. No secret appears in any process's output.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsServerHandle } from "@trtd/request-plane";
import { freePort } from "@trtd/request-plane/testing";
import { apiArgs, metricValue, startApp, startNats, stopAll, waitForWorkers, workerArgs, type AppProcess } from "./support/processes.js";
import { streamCompletion } from "./support/http.js";

const NS = "rel-sec";
const NATS_USER = "trtd-svc";
const NATS_PASS = "nats-Pa55-7f3c9e21b8";
const API_KEY = "sk-trtd-0123456789abcdef0123456789abcdef";
let dir: string;
let nats: NatsServerHandle;
let api: AppProcess;
let env: NodeJS.ProcessEnv;
const all: AppProcess[] = [];

function makeCerts(d: string): { ca: string; cert: string; key: string } {
  const f = (n: string) => join(d, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: d, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "1", "-subj", "/CN=trtd test CA");
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=127.0.0.1");
  writeFileSync(f("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  ssl("x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "1", "-extfile", f("san.ext"));
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "trtd-sec-"));
  const certs = makeCerts(dir);
  const config = join(dir, "nats.conf");
  writeFileSync(
    config,
    `tls {\n  cert_file: "${certs.cert}"\n  key_file: "${certs.key}"\n  timeout: 2\n}\nauthorization {\n  user: "${NATS_USER}"\n  password: "${NATS_PASS}"\n}\n`,
  );
  nats = await startNats({ configFile: config, port: await freePort() });
  env = { TRTD_NATS_USER: NATS_USER, TRTD_NATS_PASS: NATS_PASS, TRTD_NATS_TLS_CA_FILE: certs.ca };
  const started = await Promise.all([
    startApp("prefill", workerArgs(nats.uri, NS), { env }),
    startApp("decode", workerArgs(nats.uri, NS), { env }),
    startApp("api", apiArgs(nats.uri, NS, ["--disagg-min-prompt-tokens", "1"]), { env: { ...env, TRTD_API_KEY: API_KEY } }),
  ]);
  all.push(...started);
  api = started[2];
  await waitForWorkers(api.url, 1, 1);
});

afterAll(async () => {
  await stopAll();
  await nats?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${API_KEY}` };

describe("security", () => {
  it("every component talks over TLS with credentials: a disaggregated request works end to end", async () => {
    const r = await streamCompletion(api.url, { prompt: "Tell me about the sea.", max_tokens: 8, temperature: 0 }, { headers: auth });
    expect(r.error).toBeUndefined();
    expect(r.finishReason).toBe("length");
    expect(await metricValue(api.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(1);
  });

  it("a component without the password, or without the CA, cannot connect (and says so)", async () => {
    const noPass = startApp("decode", workerArgs(nats.uri, NS), { env: { ...env, TRTD_NATS_PASS: "wrong-password" }, timeoutMs: 20_000 });
    await expect(noPass).rejects.toThrow(/exited \(2\)[\s\S]*(Authorization|auth)/i);
    const noCa = startApp("decode", workerArgs(nats.uri, NS), { env: { TRTD_NATS_USER: NATS_USER, TRTD_NATS_PASS: NATS_PASS }, timeoutMs: 20_000 });
    await expect(noCa).rejects.toThrow(/exited \(2\)/);
  });

  it("with an API key, every /v1 route refuses requests without it or with a wrong one", async () => {
    const routes: Array<[string, string, unknown]> = [
      ["GET", "/v1/models", undefined],
      ["POST", "/v1/completions", { model: "tiny", prompt: "Hi", max_tokens: 1 }],
      ["POST", "/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 1 }],
      ["GET", "/v1/does-not-exist", undefined],
    ];
    const wrong: Array<Record<string, string>> = [
      {},
      { authorization: "" },
      { authorization: `Bearer ${API_KEY.slice(0, -1)}x` }, // same length, last byte differs
      { authorization: `Bearer ${API_KEY}x` },
      { authorization: `Basic ${API_KEY}` },
      { authorization: API_KEY },
      { "x-api-key": API_KEY },
    ];
    for (const [method, path, body] of routes) {
      for (const h of wrong) {
        const r = await fetch(`${api.url}${path}`, {
          method,
          headers: { "content-type": "application/json", ...h },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const j = (await r.json()) as { error: { code: string; message: string } };
        expect(r.status, `${method} ${path} ${JSON.stringify(h)}`).toBe(401);
        expect(j.error.code).toBe("invalid_api_key");
        expect(j.error.message).not.toContain(API_KEY.slice(8));
      }
      if (path !== "/v1/does-not-exist") {
        const ok = await fetch(`${api.url}${path}`, { method, headers: { "content-type": "application/json", ...auth }, body: body === undefined ? undefined : JSON.stringify(body) });
        expect(ok.status, `${method} ${path} with the key`).toBe(200);
      }
    }
  });

  it("no secret appears in any process's output", async () => {
    // Make every component log something: a failed request, a stop with its drain messages.
    await fetch(`${api.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer nope" }, body: "{}" });
    await Promise.all(all.map((p) => p.stop()));
    const text = all.flatMap((p) => p.output).join("\n");
    expect(text.length).toBeGreaterThan(0);
    for (const secret of [NATS_PASS, API_KEY]) expect(text).not.toContain(secret);
  });
});
