import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, connect, startNatsServer, type ConnectOptions } from "../src/index.js";

const hasOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** Connects with `good`, proves the plane works, then checks that `bad` is refused with ConnectionError. */
async function roundTripThenRefuse(uri: string, good: ConnectOptions, bad: ConnectOptions): Promise<void> {
  const plane = await connect(uri, { ...good, maxReconnectAttempts: 0 });
  try {
    await plane.serve("auth/svc/echo", (x: string) => x.toUpperCase());
    const c = plane.client<string, string>("auth/svc/echo");
    expect(await c.request("ok")).toBe("OK");
  } finally {
    await plane.close();
  }
  const err = await connect(uri, { ...bad, maxReconnectAttempts: 0, connectTimeoutMs: 2000 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConnectionError);
  expect((err as ConnectionError).code).toBe("connection_error");
  expect((err as ConnectionError).cause).toBeInstanceOf(Error);
}

describe("connect passes NATS auth and TLS options through (real nats-server)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "rp-auth-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("user / password", async () => {
    const srv = await startNatsServer({ args: ["--user", "alice", "--pass", "s3cret"] });
    try {
      await roundTripThenRefuse(srv.uri, { user: "alice", pass: "s3cret" }, { user: "alice", pass: "wrong" });
    } finally {
      await srv.stop();
    }
  });

  it("token", async () => {
    const srv = await startNatsServer({ args: ["--auth", "tok-123"] });
    try {
      await roundTripThenRefuse(srv.uri, { token: "tok-123" }, { token: "nope" });
    } finally {
      await srv.stop();
    }
  });

  it("nkey seed", async () => {
    const user = nkeys.createUser();
    const other = nkeys.createUser();
    const conf = join(dir, "nkey.conf");
    writeFileSync(conf, `authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n`);
    const srv = await startNatsServer({ configFile: conf });
    try {
      const seed = new TextDecoder().decode(user.getSeed());
      await roundTripThenRefuse(srv.uri, { nkeySeed: seed }, { nkeySeed: new TextDecoder().decode(other.getSeed()) });
    } finally {
      await srv.stop();
    }
  });

  it.skipIf(!hasOpenssl)("TLS with a CA file (self-signed certificate for 127.0.0.1 and localhost)", async () => {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], { stdio: "ignore" });
    const conf = join(dir, "tls.conf");
    writeFileSync(conf, `tls { cert_file: "${cert}", key_file: "${key}" }\n`);
    const srv = await startNatsServer({ configFile: conf });
    try {
      // without the CA the server's certificate is not trusted
      await roundTripThenRefuse(srv.uri, { tls: { caFile: cert } }, { tls: {} });
    } finally {
      await srv.stop();
    }
  });

  it("an unreadable creds file is a ConnectionError before any network I/O", async () => {
    const err = await connect("nats://127.0.0.1:1", { credsFile: join(dir, "missing.creds") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toMatch(/credentials/);
  });
});
