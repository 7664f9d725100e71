import { spawn } from "node:child_process";
import { spawnChild } from "@trtd/process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { NatsServerNotFoundError, NatsServerStartError } from "./errors.js";
import type { SubjectPermissions } from "./names.js";

export interface NatsServerOptions {
  /** Port (default: a free one the OS picks; on a clash with another process we retry with a new one). */
  port?: number;
  /** Listen address (default 127.0.0.1). */
  host?: string;
  /** Enable JetStream (default false). */
  jetstream?: boolean;
  /** JetStream store directory (default: a temp dir, removed on stop). */
  storeDir?: string;
  /** A nats-server config file, passed as `-c`; flags above override it. */
  configFile?: string;
  /** Max message payload in bytes (written to a generated config file; nats-server has no flag for it). */
  maxPayload?: number;
  /**
   * Accounts that may connect (user + password, optionally limited to `permissions`), written to the generated
   * config file (mode 0600, in a 0700 folder removed on stop; never on the command line, which `ps` shows). With
   * any, anonymous clients are refused.
   */
  users?: NatsServerUser[];
  /** Binary path (default: `$NATS_SERVER_BIN`, then `nats-server` on PATH, /usr/sbin, /usr/bin, /usr/local/bin). */
  binary?: string;
  /** Bound on becoming ready, ms (default 10000). */
  readyTimeoutMs?: number;
  /** Extra command-line arguments. */
  args?: string[];
}

/** One account of a started nats-server. Without `permissions` it may publish and subscribe anywhere. */
export interface NatsServerUser {
  user: string;
  password: string;
  permissions?: SubjectPermissions;
}

export interface NatsServerHandle {
  /** `nats://host:port` */
  readonly uri: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 5000); removes temp dirs. Idempotent. */
  stop(timeoutMs?: number): Promise<void>;
}

/** Finds the nats-server binary or throws {@link NatsServerNotFoundError}. */
export function findNatsServer(binary?: string): string {
  const candidates: string[] = [];
  const explicit = binary ?? process.env.NATS_SERVER_BIN;
  if (explicit) candidates.push(explicit);
  else {
    for (const dir of (process.env.PATH ?? "").split(delimiter)) if (dir) candidates.push(join(dir, "nats-server"));
    candidates.push("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server");
  }
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next
    }
  }
  throw new NatsServerNotFoundError(
    explicit
      ? `nats-server binary not found or not executable at ${explicit}`
      : "nats-server not found on PATH, /usr/sbin, /usr/bin or /usr/local/bin: install it (Debian: apt-get install -y nats-server) or set NATS_SERVER_BIN",
  );
}

/** A port the OS reports free right now (another process may still take it: startNatsServer retries). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Bound on the watchdog's SIGTERM-to-SIGKILL grace when the owner is gone, in tenths of a second. */
const WATCHDOG_GRACE_TENTHS = 50;

/**
 * The watchdog of one nats-server: a POSIX shell in its own process group, reading a pipe from the owner. The owner
 * writes one line to disarm it (the server exited, or was stopped). When the owner dies in any way (SIGKILL
 * included) the kernel closes the pipe, `read` sees EOF, and the watchdog sends the server SIGTERM, then SIGKILL
 * after WATCHDOG_GRACE_TENTHS / 10 s, then removes the server's temp dirs. Node opens pipes close-on-exec, so
 * the owner's other children never hold the pipe open. Arguments: the server's pid, then the dirs to remove.
 */
const WATCHDOG_SCRIPT = `pid=$1; shift
if read -r _; then exit 0; fi
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i+1))
  if [ "$i" -gt ${WATCHDOG_GRACE_TENTHS} ]; then kill -KILL "$pid" 2>/dev/null; break; fi
  sleep 0.1
done
if [ "$#" -gt 0 ]; then rm -rf -- "$@"; fi`;

/** Starts the watchdog of server `pid`; returns the function that disarms it (idempotent). */
function startWatchdog(pid: number, temp: string[]): () => void {
  const dog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "trtd-nats-watchdog", String(pid), ...temp], {
    stdio: ["pipe", "ignore", "ignore"],
    // own process group: a terminal's Ctrl-C to the owner's group does not reach it
    detached: true,
  });
  dog.on("error", () => {}); // a watchdog that cannot start leaves the server to its owner's stop()
  dog.stdin!.on("error", () => {}); // EPIPE: the watchdog is already gone
  let disarmed = false;
  return () => {
    if (disarmed) return;
    disarmed = true;
    dog.stdin!.end("disarm\n");
  };
}

/**
 * Starts `nats-server` as a child process, waits (bounded) until it accepts connections, and returns a
 * handle that stops it. The caller owns the stop: nothing here touches process-wide signal or exit handlers.
 * The server runs in its own process group (a terminal's Ctrl-C reaches only the owner, which stops it in its
 * own order), and a watchdog stops it (SIGTERM, SIGKILL after 5 s) and removes its temp dirs once the owner
 * process is gone, however it ended.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const bin = findNatsServer(options.binary);
  const host = options.host ?? "127.0.0.1";
  const attempts = options.port === undefined ? 5 : 1;
  let lastError: unknown;
  for (let i = 0; i < attempts; i++) {
    const port = options.port ?? (await freePort(host));
    try {
      return await startOnce(bin, host, port, options);
    } catch (err) {
      lastError = err;
      if (!(err instanceof NatsServerStartError) || !/address already in use/i.test(err.message)) throw err;
    }
  }
  throw lastError;
}

async function startOnce(bin: string, host: string, port: number, o: NatsServerOptions): Promise<NatsServerHandle> {
  // someone already answers there: our readiness probe could not tell that server from ours
  if (await canConnect(host, port)) throw new NatsServerStartError(`cannot start nats-server on ${host}:${port}: address already in use`);
  const temp: string[] = [];
  const args = ["-a", host, "-p", String(port)];
  if (o.configFile) {
    if (o.users?.length) throw new NatsServerStartError("users and configFile do not combine: put the users in the config file");
    args.unshift("-c", o.configFile);
  } else if (o.maxPayload !== undefined || o.users?.length) {
    const dir = mkdtempSync(join(tmpdir(), "trtd-nats-conf-")); // mkdtemp: mode 0700
    temp.push(dir);
    const conf = join(dir, "nats.conf");
    const lines: string[] = [];
    if (o.maxPayload !== undefined) lines.push(`max_payload: ${Math.floor(o.maxPayload)}`);
    if (o.users?.length) {
      const q = (v: string) => {
        if (!/^[\w.+-]+$/.test(v)) throw new NatsServerStartError(`nats-server user names and passwords here are [A-Za-z0-9_.+-] only, got ${JSON.stringify(v)}`);
        return JSON.stringify(v);
      };
      lines.push("authorization {", "  users = [", ...o.users.map((u) => `    { user: ${q(u.user)}, password: ${q(u.password)}${permissionsConf(u.permissions)} }`), "  ]", "}");
    }
    writeFileSync(conf, lines.join("\n") + "\n", { mode: 0o600 });
    args.unshift("-c", conf);
  }
  if (o.jetstream) {
    let sd = o.storeDir;
    if (!sd) {
      sd = mkdtempSync(join(tmpdir(), "trtd-nats-js-"));
      temp.push(sd);
    }
    args.push("-js", "-sd", sd);
  }
  if (o.args) args.push(...o.args);

  // Own process group: a terminal's Ctrl-C reaches only the owner, which stops the server in its own order.
  const child = spawnChild({ name: "nats-server", command: bin, args, detached: true, keepLines: 50 });
  const disarm = child.pid > 0 ? startWatchdog(child.pid, temp) : () => {};
  const lastLines = () => child.output.slice(-3).join(" | ");
  const exited = child.exited.then(({ code, signal }) => {
    disarm();
    return code ?? signal ?? "spawn-error";
  });
  const cleanup = () => {
    for (const d of temp) rmSync(d, { recursive: true, force: true });
  };

  let stopping: Promise<void> | undefined;
  const stop = (timeoutMs = 5000): Promise<void> => {
    stopping ??= (async () => {
      await child.stop(timeoutMs); // SIGTERM, SIGKILL after the grace
      await exited;
      cleanup();
    })();
    return stopping;
  };

  const readyTimeoutMs = o.readyTimeoutMs ?? 10_000;
  const t0 = Date.now();
  for (;;) {
    if (!child.alive()) {
      await stop();
      throw new NatsServerStartError(`nats-server exited (${await exited}) before it was ready on ${host}:${port}: ${lastLines()}`);
    }
    if (await canConnect(host, port)) break;
    if (Date.now() - t0 > readyTimeoutMs) {
      await stop();
      throw new NatsServerStartError(`nats-server did not accept connections on ${host}:${port} within ${readyTimeoutMs} ms: ${lastLines()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  // our child must be the one listening: if it died meanwhile, another process owns the port
  await new Promise((r) => setTimeout(r, 10));
  if (!child.alive()) {
    await stop();
    throw new NatsServerStartError(`nats-server exited right after start on ${host}:${port} (address already in use?): ${child.output.join(" | ")}`);
  }
  return { uri: `nats://${host}:${port}`, host, port, pid: child.pid, exited, stop };
}

/** `, permissions: {...}` of a user in nats-server's config syntax ("" without permissions). */
function permissionsConf(p: SubjectPermissions | undefined): string {
  if (!p) return "";
  const list = (subjects: string[]) => {
    for (const s of subjects) {
      if (!/^[\w.*>$-]+$/.test(s)) throw new NatsServerStartError(`subject permissions here are [A-Za-z0-9_.*>$-] only, got ${JSON.stringify(s)}`);
    }
    return `[${subjects.map((s) => JSON.stringify(s)).join(", ")}]`;
  };
  const parts = [`publish: { allow: ${list(p.publish)} }`, `subscribe: { allow: ${list(p.subscribe)} }`];
  if (p.allowResponses) parts.push("allow_responses: true");
  return `, permissions: { ${parts.join(", ")} }`;
}

/** What a NATS server says about itself in its greeting (`INFO {...}`), the fields callers decide on. */
export interface NatsServerInfo {
  server_id?: string;
  version?: string;
  /** Anonymous clients are refused. */
  auth_required?: boolean;
  /** Clients must use TLS. */
  tls_required?: boolean;
  [key: string]: unknown;
}

/**
 * Asks `host:port` whether a NATS server answers there: resolves with its INFO greeting, or undefined when
 * nothing answers with one within `timeoutMs` (default 500). Opens one TCP connection and closes it.
 */
export function probeNatsServer(host: string, port: number, timeoutMs = 500): Promise<NatsServerInfo | undefined> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    let buf = "";
    const done = (info: NatsServerInfo | undefined) => {
      clearTimeout(timer);
      s.destroy();
      resolve(info);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      const end = buf.indexOf("\r\n");
      if (!buf.startsWith("INFO".slice(0, buf.length))) return done(undefined);
      if (end < 0) return;
      try {
        done(JSON.parse(buf.slice(4, end).trim()) as NatsServerInfo);
      } catch {
        done(undefined);
      }
    });
    s.once("error", () => done(undefined));
  });
}

/** True when a NATS server greets on `host:port`. */
async function canConnect(host: string, port: number): Promise<boolean> {
  return (await probeNatsServer(host, port)) !== undefined;
}
