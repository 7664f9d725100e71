// Request-plane credentials and TLS for every app, from the environment (secrets stay out of argv, where `ps`
// shows them, and out of logs: nothing here is ever printed). All optional; set the same ones for every component.
import type { ConnectOptions } from "@trtd/request-plane";

export const NATS_AUTH_ENV = {
  user: "TRTD_NATS_USER",
  pass: "TRTD_NATS_PASS",
  token: "TRTD_NATS_TOKEN",
  nkeySeed: "TRTD_NATS_NKEY_SEED",
  credsFile: "TRTD_NATS_CREDS_FILE",
  tlsCaFile: "TRTD_NATS_TLS_CA_FILE",
  tlsCertFile: "TRTD_NATS_TLS_CERT_FILE",
  tlsKeyFile: "TRTD_NATS_TLS_KEY_FILE",
} as const;

export type NatsRole = "api" | "prefill" | "decode";

/**
 * Where a role's replies and control messages arrive on NATS (`ConnectOptions.inboxPrefix`): one prefix per role and
 * namespace, so an account's permissions can give each role its own inboxes only.
 */
export function natsInboxPrefix(namespace: string, role: NatsRole): string {
  return `_INBOX.${namespace}.${role}`;
}

/** Auth and TLS options for `connect()` from `TRTD_NATS_*` variables. */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<ConnectOptions, "user" | "pass" | "token" | "nkeySeed" | "credsFile" | "tls"> {
  const get = (k: keyof typeof NATS_AUTH_ENV) => env[NATS_AUTH_ENV[k]] || undefined;
  const out: ReturnType<typeof natsAuthFromEnv> = {};
  if (get("user")) out.user = get("user");
  if (get("pass")) out.pass = get("pass");
  if (get("token")) out.token = get("token");
  if (get("nkeySeed")) out.nkeySeed = get("nkeySeed");
  if (get("credsFile")) out.credsFile = get("credsFile");
  const tls = { caFile: get("tlsCaFile"), certFile: get("tlsCertFile"), keyFile: get("tlsKeyFile") };
  if (tls.caFile || tls.certFile || tls.keyFile) out.tls = Object.fromEntries(Object.entries(tls).filter(([, v]) => v));
  return out;
}
