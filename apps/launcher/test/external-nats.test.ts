// The launcher against a NATS the user runs (--request-plane-uri), with the credentials every role uses given in a
// 0600 file (--request-plane-credentials) and TLS files: real nats-servers with users, a token, and TLS (a
// self-signed certificate made here with openssl when it is installed; nothing committed).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, startNatsServer, type NatsServerHandle } from "@trtd/request-plane";
import { LAUNCHER_READY, metricValue, modelDir, startApp } from "./support/processes.js";

const hasOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "launcher-ext-nats-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file only its owner reads. */
function secretFile(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
}

/**
 * Runs a launcher (1 prefill + 1 decode) on `nats` with `extraArgs`, checks a disaggregated completion, that no
 * process shows `secret` on its command line, and that the launcher stops cleanly.
 */
async function servesThrough(nats: NatsServerHandle, extraArgs: string[], secret: string): Promise<void> {
  const launcher = await startApp(
    "launcher",
    ["--request-plane-uri", nats.uri.replace("nats://", ""), "--worker-name", "ext", "--api-server-port", "0", "--model-dir", modelDir,
      "--disagg-min-prompt-tokens", "1", "--threads", "1", ...extraArgs],
    LAUNCHER_READY,
  );
  try {
    const r = await fetch(`${launcher.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: "Through a NATS I run myself", max_tokens: 5, temperature: 0 }),
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(5);
    expect(await metricValue(launcher.url, 'trtd_routed_requests_total{mode="disaggregated"}')).toBe(1);
    expect(execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })).not.toContain(secret);
  } finally {
    await launcher.stop();
  }
  expect(launcher.proc.exitCode).toBe(0);
}

describe("launcher - an external NATS with credentials", () => {
  it("user and password from a credentials file; the server refuses anonymous clients", async () => {
    const password = "ext-pass-3f9c2a71d0";
    const nats = await startNatsServer({ users: [{ user: "trtd", password }] });
    try {
      await expect(connect(nats.uri, { maxReconnectAttempts: 0, connectTimeoutMs: 2000 })).rejects.toThrow(/authorization/i);
      const creds = secretFile("user.env", `# trtd's account\nTRTD_NATS_USER=trtd\nTRTD_NATS_PASS=${password}\n`);
      await servesThrough(nats, ["--request-plane-credentials", creds], password);
    } finally {
      await nats.stop();
    }
  }, 180_000);

  it("a token from a credentials file", async () => {
    const token = "ext-token-8e1b5c4f7a";
    const conf = secretFile("token.conf", `authorization { token: "${token}" }\n`);
    const nats = await startNatsServer({ configFile: conf });
    try {
      const creds = secretFile("token.env", `TRTD_NATS_TOKEN=${token}\n`);
      await servesThrough(nats, ["--request-plane-credentials", creds], token);
    } finally {
      await nats.stop();
    }
  }, 180_000);

  it.skipIf(!hasOpenssl)("TLS with a CA file (self-signed certificate for 127.0.0.1) and a token", async () => {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], { stdio: "ignore" });
    const token = "ext-tls-token-2d6e90b1";
    const conf = secretFile("tls.conf", `tls { cert_file: "${cert}", key_file: "${key}" }\nauthorization { token: "${token}" }\n`);
    const nats = await startNatsServer({ configFile: conf });
    try {
      const creds = secretFile("tls.env", `TRTD_NATS_TOKEN=${token}\n`);
      await servesThrough(nats, ["--request-plane-credentials", creds, "--request-plane-tls-ca", cert], token);
    } finally {
      await nats.stop();
    }
  }, 180_000);
});
