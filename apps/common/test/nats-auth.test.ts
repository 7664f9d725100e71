import { describe, expect, it } from "vitest";
import { natsAuthFromEnv } from "../src/index.js";

describe("natsAuthFromEnv", () => {
  it("is empty without TRTD_NATS_* variables (empty strings count as unset)", () => {
    expect(natsAuthFromEnv({})).toEqual({});
    expect(natsAuthFromEnv({ TRTD_NATS_USER: "", TRTD_NATS_TLS_CA_FILE: "" })).toEqual({});
  });

  it("maps each variable to its connect option; TLS files go together", () => {
    expect(
      natsAuthFromEnv({
        TRTD_NATS_USER: "u",
        TRTD_NATS_PASS: "p",
        TRTD_NATS_TOKEN: "t",
        TRTD_NATS_NKEY_SEED: "SUABC",
        TRTD_NATS_CREDS_FILE: "/c.creds",
        TRTD_NATS_TLS_CA_FILE: "/ca.pem",
        TRTD_NATS_TLS_CERT_FILE: "/cert.pem",
        TRTD_NATS_TLS_KEY_FILE: "/key.pem",
      }),
    ).toEqual({ user: "u", pass: "p", token: "t", nkeySeed: "SUABC", credsFile: "/c.creds", tls: { caFile: "/ca.pem", certFile: "/cert.pem", keyFile: "/key.pem" } });
    expect(natsAuthFromEnv({ TRTD_NATS_TLS_CA_FILE: "/ca.pem" })).toEqual({ tls: { caFile: "/ca.pem" } });
  });
});
