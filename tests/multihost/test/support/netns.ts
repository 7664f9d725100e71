// Three "hosts" as Linux network namespaces on one bridge, plus a veth from this (root) namespace so the test
// process can reach them. Everything is named with this process's PID and removed by `destroy()`, which is
// idempotent and also registered for process exit, so a failed or interrupted run leaves nothing behind.
import { execFileSync } from "node:child_process";

export type HostName = "api" | "prefill" | "decode";

export interface Host {
  readonly name: HostName;
  /** Network namespace name (`ip netns exec <ns> ...`). */
  readonly ns: string;
  /** The host's address on the shared subnet (NATS, api, request plane). */
  readonly ip: string;
}

export interface Topology {
  readonly hosts: Record<HostName, Host>;
  /** A second address of the prefill host, used only by the KV offer server: cutting it leaves NATS up. */
  readonly prefillKvIp: string;
  /** This namespace's address on the bridge. */
  readonly rootIp: string;
  readonly subnet: string;
  /** Runs `ip ...` (bounded); throws with ip's stderr. */
  ip(args: string[]): string;
  /** Runs a command inside a host's namespace (bounded). */
  execIn(host: HostName, cmd: string[]): string;
  destroy(): void;
  /** Namespaces and root-side links of this topology that still exist (for the leak check). */
  leftovers(): string[];
}

const IP_TIMEOUT_MS = 10_000;

function ip(args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", timeout: IP_TIMEOUT_MS, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`, { cause: err });
  }
}

/** Whether this machine lets us create network namespaces; the reason when not (not root, no iproute2, ...). */
export function namespaceSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  const probe = `tmh${process.pid}probe`;
  try {
    ip(["netns", "add", probe]);
  } catch (err) {
    return { ok: false, reason: `\`ip netns add\` failed (needs root and iproute2): ${(err as Error).message}` };
  }
  try {
    ip(["netns", "del", probe]);
  } catch {
    /* best effort: the probe holds nothing */
  }
  return { ok: true };
}

/**
 * Removes what an earlier run left behind when it was killed before its teardown (exit handlers do not run on
 * SIGKILL): namespaces and root links named after a PID that no longer exists, and the processes inside them.
 */
export function sweepStaleTopologies(): string[] {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EPERM";
    }
  };
  const removed: string[] = [];
  for (const line of ip(["netns", "list"]).split("\n")) {
    const m = /^(tmh(\d+)-(?:sw|api|prefill|decode))\b/.exec(line);
    if (!m || alive(Number(m[2]))) continue;
    for (const pid of ip(["netns", "pids", m[1]]).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        /* gone */
      }
    }
    ip(["netns", "del", m[1]]);
    removed.push(m[1]);
  }
  for (const m of ip(["-o", "link", "show"]).matchAll(/^\d+: (tmh(\d+)r)[@:]/gm)) {
    if (alive(Number(m[2]))) continue;
    ip(["link", "del", m[1]]);
    removed.push(m[1]);
  }
  return removed;
}

/** A /24 in 10.231.0.0/16 that no local interface uses yet. */
function pickSubnet(): number {
  const used = ip(["-4", "-o", "addr", "show"]);
  const start = 20 + (process.pid % 200);
  for (let i = 0; i < 200; i++) {
    const octet = 20 + ((start - 20 + i) % 200);
    if (!used.includes(`10.231.${octet}.`)) return octet;
  }
  throw new Error("no free 10.231.x.0/24 subnet");
}

export function createTopology(): Topology {
  const id = `tmh${process.pid}`;
  const sw = `${id}-sw`;
  const names: HostName[] = ["api", "prefill", "decode"];
  const octet = pickSubnet();
  const net = `10.231.${octet}`;
  const hosts = Object.fromEntries(names.map((n, i) => [n, { name: n, ns: `${id}-${n}`, ip: `${net}.${i + 1}` }])) as Record<HostName, Host>;
  const rootLink = `${id}r`; // <= 15 characters with a 7-digit PID
  const allNs = [sw, ...names.map((n) => hosts[n].ns)];

  let destroyed = false;
  const destroy = () => {
    if (destroyed) return;
    destroyed = true;
    process.off("exit", destroy);
    // Deleting a namespace deletes the veth ends inside it, and with them their peers.
    for (const ns of allNs) {
      try {
        ip(["netns", "del", ns]);
      } catch {
        /* not created */
      }
    }
    try {
      ip(["link", "del", rootLink]);
    } catch {
      /* already gone with its peer */
    }
  };
  process.on("exit", destroy);

  try {
    for (const ns of allNs) ip(["netns", "add", ns]);
    ip(["-n", sw, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", sw, "link", "set", "br0", "up"]);
    names.forEach((n, i) => {
      const a = `${id}h${i}a`;
      const b = `${id}h${i}b`;
      ip(["link", "add", a, "type", "veth", "peer", "name", b]);
      ip(["link", "set", a, "netns", hosts[n].ns]);
      ip(["link", "set", b, "netns", sw]);
      ip(["-n", sw, "link", "set", b, "master", "br0", "up"]);
      ip(["-n", hosts[n].ns, "link", "set", a, "name", "eth0"]);
      ip(["-n", hosts[n].ns, "addr", "add", `${hosts[n].ip}/24`, "dev", "eth0"]);
      ip(["-n", hosts[n].ns, "link", "set", "eth0", "up"]);
      ip(["-n", hosts[n].ns, "link", "set", "lo", "up"]);
    });
    ip(["-n", hosts.prefill.ns, "addr", "add", `${net}.12/24`, "dev", "eth0"]);
    ip(["link", "add", rootLink, "type", "veth", "peer", "name", `${id}s`]);
    ip(["link", "set", `${id}s`, "netns", sw]);
    ip(["-n", sw, "link", "set", `${id}s`, "master", "br0", "up"]);
    ip(["addr", "add", `${net}.254/24`, "dev", rootLink]);
    ip(["link", "set", rootLink, "up"]);
  } catch (err) {
    destroy();
    throw err;
  }

  return {
    hosts,
    prefillKvIp: `${net}.12`,
    rootIp: `${net}.254`,
    subnet: `${net}.0/24`,
    ip,
    execIn: (host, cmd) =>
      execFileSync("ip", ["netns", "exec", hosts[host].ns, ...cmd], { encoding: "utf8", timeout: IP_TIMEOUT_MS, stdio: ["ignore", "pipe", "pipe"] }),
    destroy,
    leftovers: () => {
      const nsList = ip(["netns", "list"]);
      const links = ip(["-o", "link", "show"]);
      return [...allNs.filter((ns) => nsList.includes(ns)), ...(links.includes(`${rootLink}@`) || links.includes(`${rootLink}:`) ? [rootLink] : [])];
    },
  };
}
