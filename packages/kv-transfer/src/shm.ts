import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, ftruncateSync, openSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

/**
 * Same-host shared memory, the ring: a ring file in /dev/shm (tmpfs). The offering side writes chunks into ring
 * slots (mapped, else pwritev) straight from the exported views; the puller copies them into its import views.
 * Two copies, one per process, running in parallel. Used for offers staged on pull and when single copy
 * (shm-staging.ts) is off or cannot be had.
 * The file is unlinked as soon as the puller has opened it, so a killed process leaves nothing behind;
 * files of dead processes (killed in the short window before that) are swept when a server starts.
 */
export const DEFAULT_SHM_DIR = "/dev/shm";
const PREFIX = "trtd-kv-";

let cachedHostId: string | undefined;
/** Identity of this host's shared memory namespace: boot id + hostname, hashed. */
export function localHostId(): string {
  if (cachedHostId) return cachedHostId;
  let boot = "";
  try {
    boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    boot = "no-boot-id";
  }
  cachedHostId = createHash("sha256").update(`${boot}|${hostname()}`).digest("hex").slice(0, 24);
  return cachedHostId;
}

export function shmAvailable(dir = DEFAULT_SHM_DIR): boolean {
  return process.platform === "linux" && existsSync(dir);
}

/** Creates a ring file of `slots` × `slotBytes` (sparse until written) and returns its path and fd. */
export function createRing(dir: string, slots: number, slotBytes: number): { path: string; fd: number } {
  const path = join(dir, `${PREFIX}${process.pid}-${randomBytes(6).toString("hex")}`);
  const fd = openSync(path, "wx+", 0o600);
  try {
    ftruncateSync(fd, slots * slotBytes);
  } catch (err) {
    closeSync(fd);
    unlinkSync(path);
    throw err;
  }
  return { path, fd };
}

export function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes ring files left by processes that no longer exist. Returns how many were removed. */
export function sweepStaleRings(dir = DEFAULT_SHM_DIR): number {
  let removed = 0;
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const n of names) {
    const m = /^trtd-kv-(\d+)-[0-9a-f]+$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !pidAlive(pid)) {
      unlinkQuiet(join(dir, n));
      removed++;
    }
  }
  return removed;
}

/** Ring files of this process still on disk (tests check this is empty). */
export function ringFilesOf(pid = process.pid, dir = DEFAULT_SHM_DIR): string[] {
  try {
    return readdirSync(dir).filter((n) => n.startsWith(`${PREFIX}${pid}-`));
  } catch {
    return [];
  }
}
