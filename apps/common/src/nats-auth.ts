// Request-plane credentials and TLS for every app, from the environment (secrets stay out of argv, where `ps`
// shows them, and out of logs: nothing here is ever printed). All optional; set the same ones for every component.
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { ConnectOptions } from "@trtd/request-plane";
import { UsageError } from "./cli.js";

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
export type NatsAuthKey = keyof typeof NATS_AUTH_ENV;
/** `TRTD_NATS_*` name → value. */
export type NatsAuthEnv = Partial<Record<(typeof NATS_AUTH_ENV)[NatsAuthKey], string>>;

export type NatsRole = "api" | "prefill" | "decode";

/**
 * Where a role's replies and control messages arrive on NATS (`ConnectOptions.inboxPrefix`): one prefix per role and
 * namespace, so an account's permissions can give each role its own inboxes only.
 */
export function natsInboxPrefix(namespace: string, role: NatsRole): string {
  return `_INBOX.${namespace}.${role}`;
}

/**
 * The rules a set of `TRTD_NATS_*` settings must keep, each broken one a UsageError naming it (`where`: the file or
 * "the environment"): one way to authenticate (user and password, token, nkey seed or creds file); a user goes with
 * a password; a TLS client certificate goes with its key.
 */
export function checkNatsAuth(env: NatsAuthEnv, where: string): void {
  const has = (k: NatsAuthKey) => !!env[NATS_AUTH_ENV[k]];
  if (has("user") !== has("pass")) throw new UsageError(`${where}: ${NATS_AUTH_ENV.user} and ${NATS_AUTH_ENV.pass} go together`);
  const ways = [
    has("user") ? "user and password" : "",
    has("token") ? "a token" : "",
    has("nkeySeed") ? "an nkey seed" : "",
    has("credsFile") ? "a creds file" : "",
  ].filter(Boolean);
  if (ways.length > 1) throw new UsageError(`${where}: give one way to authenticate to NATS, not ${ways.join(" and ")}`);
  if (has("tlsCertFile") !== has("tlsKeyFile")) {
    throw new UsageError(`${where}: a TLS client certificate goes with its key (${NATS_AUTH_ENV.tlsCertFile} and ${NATS_AUTH_ENV.tlsKeyFile})`);
  }
}

/** Auth and TLS options for `connect()` from `TRTD_NATS_*` variables; conflicting ones are a UsageError. */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): Pick<ConnectOptions, "user" | "pass" | "token" | "nkeySeed" | "credsFile" | "tls"> {
  const get = (k: NatsAuthKey) => env[NATS_AUTH_ENV[k]] || undefined;
  checkNatsAuth(env as NatsAuthEnv, "the environment");
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

const FILE_KEYS: NatsAuthKey[] = ["credsFile", "tlsCaFile", "tlsCertFile", "tlsKeyFile"];
const NATS_CREDS_HEADER = "-----BEGIN NATS USER JWT-----";

/**
 * Reads NATS credentials for an external server: a NATS `.creds` file (JWT + nkey seed, as `nsc` writes it), or a
 * file of `TRTD_NATS_*=value` lines (blank lines and `#` comments allowed; file paths relative to the current
 * folder). The file holds secrets, so one readable by other users is refused, as ssh refuses such a key. Every
 * mistake is a UsageError naming the rule.
 */
export function readNatsCredentials(path: string, flag = "--request-plane-credentials"): NatsAuthEnv {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, { cause: err });
  }
  if (mode & 0o077) throw new UsageError(`${flag} ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 ${path}`);
  if (text.trimStart().startsWith(NATS_CREDS_HEADER)) return { [NATS_AUTH_ENV.credsFile]: resolve(path) };
  const byName = new Map(Object.entries(NATS_AUTH_ENV).map(([k, name]) => [name as string, k as NatsAuthKey]));
  const out: NatsAuthEnv = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const eq = line.indexOf("=");
    const name = eq > 0 ? line.slice(0, eq).trim() : "";
    const key = byName.get(name);
    if (!key) {
      // the line may hold a secret: name its number, never its text
      throw new UsageError(`${flag} ${path}: line ${i + 1} is not KEY=value with KEY one of ${Object.values(NATS_AUTH_ENV).join(", ")} (or a NATS .creds file)`);
    }
    const value = line.slice(eq + 1).trim();
    out[NATS_AUTH_ENV[key]] = FILE_KEYS.includes(key) && value ? resolve(value) : value;
  });
  checkNatsAuth(out, `${flag} ${path}`);
  for (const k of FILE_KEYS) {
    const file = out[NATS_AUTH_ENV[k]];
    if (file) checkReadable(file, `${flag} ${path}: ${NATS_AUTH_ENV[k]}`);
  }
  return out;
}

/** A UsageError unless `file` is a readable file. */
export function checkReadable(file: string, what: string): void {
  try {
    if (!statSync(file).isFile()) throw new Error("not a file");
    accessSync(file, constants.R_OK);
  } catch (err) {
    throw new UsageError(`${what} ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`, { cause: err });
  }
}
