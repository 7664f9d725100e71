import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsAuthFromEnv, readNatsCredentials, UsageError } from "../src/index.js";

describe("natsAuthFromEnv", () => {
  it("is empty without TRTD_NATS_* variables (empty strings count as unset)", () => {
    expect(natsAuthFromEnv({})).toEqual({});
    expect(natsAuthFromEnv({ TRTD_NATS_USER: "", TRTD_NATS_TLS_CA_FILE: "" })).toEqual({});
  });

  it("maps each variable to its connect option; TLS files go together", () => {
    const tls = { TRTD_NATS_TLS_CA_FILE: "/ca.pem", TRTD_NATS_TLS_CERT_FILE: "/cert.pem", TRTD_NATS_TLS_KEY_FILE: "/key.pem" };
    expect(natsAuthFromEnv({ TRTD_NATS_USER: "u", TRTD_NATS_PASS: "p", ...tls })).toEqual({
      user: "u",
      pass: "p",
      tls: { caFile: "/ca.pem", certFile: "/cert.pem", keyFile: "/key.pem" },
    });
    expect(natsAuthFromEnv({ TRTD_NATS_TOKEN: "t" })).toEqual({ token: "t" });
    expect(natsAuthFromEnv({ TRTD_NATS_NKEY_SEED: "SUABC" })).toEqual({ nkeySeed: "SUABC" });
    expect(natsAuthFromEnv({ TRTD_NATS_CREDS_FILE: "/c.creds" })).toEqual({ credsFile: "/c.creds" });
    expect(natsAuthFromEnv({ TRTD_NATS_TLS_CA_FILE: "/ca.pem" })).toEqual({ tls: { caFile: "/ca.pem" } });
  });

  it("refuses conflicting settings with one line naming the rule", () => {
    const refuse = (env: Record<string, string>, message: string) => {
      expect(() => natsAuthFromEnv(env)).toThrow(UsageError);
      expect(() => natsAuthFromEnv(env)).toThrow(message);
    };
    refuse({ TRTD_NATS_USER: "u", TRTD_NATS_PASS: "p", TRTD_NATS_TOKEN: "t" }, "the environment: give one way to authenticate to NATS, not user and password and a token");
    refuse({ TRTD_NATS_TOKEN: "t", TRTD_NATS_CREDS_FILE: "/c.creds" }, "give one way to authenticate to NATS, not a token and a creds file");
    refuse({ TRTD_NATS_PASS: "p" }, "the environment: TRTD_NATS_USER and TRTD_NATS_PASS go together");
    refuse({ TRTD_NATS_TLS_CERT_FILE: "/c.pem" }, "a TLS client certificate goes with its key");
  });
});

describe("readNatsCredentials", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "nats-creds-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string, mode = 0o600) => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode });
    chmodSync(p, mode);
    return p;
  };

  it("reads TRTD_NATS_* lines (comments and blank lines allowed, file paths made absolute) or takes a NATS .creds file as it is", () => {
    const ca = file("ca.pem", "not really a CA, only read by nats.js");
    expect(readNatsCredentials(file("a.env", `# account\nTRTD_NATS_USER=trtd\n\nTRTD_NATS_PASS=p=w\nTRTD_NATS_TLS_CA_FILE=${ca}\n`))).toEqual({
      TRTD_NATS_USER: "trtd",
      TRTD_NATS_PASS: "p=w",
      TRTD_NATS_TLS_CA_FILE: ca,
    });
    const creds = file("user.creds", "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ\n------END NATS USER JWT------\n");
    expect(readNatsCredentials(creds)).toEqual({ TRTD_NATS_CREDS_FILE: creds });
  });

  it("refuses a missing file, one other users can read, an unknown line (without printing it), two ways to authenticate and a missing TLS file", () => {
    const refuse = (path: string, message: string | RegExp) => {
      expect(() => readNatsCredentials(path)).toThrow(UsageError);
      expect(() => readNatsCredentials(path)).toThrow(message);
    };
    refuse(join(dir, "absent.env"), `--request-plane-credentials ${join(dir, "absent.env")}: no such file`);
    const open = file("open.env", "TRTD_NATS_TOKEN=t\n", 0o644);
    refuse(open, `--request-plane-credentials ${open} is readable by other users (mode 644): chmod 600 ${open}`);
    const typo = file("typo.env", "TRTD_NATS_TOKN=s3cr3t-value\n");
    refuse(typo, /line 1 is not KEY=value with KEY one of TRTD_NATS_USER, /);
    expect(() => readNatsCredentials(typo)).not.toThrow(/s3cr3t-value/);
    refuse(file("both.env", "TRTD_NATS_USER=u\nTRTD_NATS_PASS=p\nTRTD_NATS_TOKEN=t\n"), "give one way to authenticate to NATS, not user and password and a token");
    refuse(file("tls.env", `TRTD_NATS_TOKEN=t\nTRTD_NATS_TLS_CA_FILE=${join(dir, "nope.pem")}\n`), `TRTD_NATS_TLS_CA_FILE ${join(dir, "nope.pem")}: no such file`);
  });
});
