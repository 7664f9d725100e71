// `prepare-model download ORG/NAME`: a model repository from the Hugging Face hub (or a mirror at HF_ENDPOINT), the
// way the hub's own clients fetch it: the file list with sizes and hashes from
// `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true`, each file from
// `GET {endpoint}/{repo}/resolve/{commit}/{path}` (LFS files answer with a redirect to their storage), resumed with a
// Range request from a `.incomplete` file, checked against the listed size and hash (LFS: sha256; others: the git
// blob id), and only then moved into place.
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export type DownloadErrorCode =
  | "ACCESS_DENIED"
  | "REPO_NOT_FOUND"
  | "REVISION_NOT_FOUND"
  | "FILE_NOT_FOUND"
  | "INTEGRITY"
  | "DISK_FULL"
  | "HTTP"
  | "TIMEOUT"
  | "NOTHING_TO_DOWNLOAD";

export class DownloadError extends Error {
  readonly code: DownloadErrorCode;
  constructor(code: DownloadErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DownloadError";
    this.code = code;
  }
}

export interface DownloadOptions {
  /** Default main. */
  revision?: string;
  /** Globs over repository paths (`*` within a folder, `**` across folders); default every file. */
  include?: string[];
  /** Default $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default $HF_TOKEN. */
  token?: string;
  /** Files fetched at once (default 4). */
  parallel?: number;
  /** No bytes for this long aborts a transfer (default 60 s); the file list request is bounded by it too. */
  idleTimeoutMs?: number;
  onProgress?: (done: number, total: number, file: string) => void;
  log?: (line: string) => void;
}

export interface RepoFile {
  path: string;
  size: number;
  /** LFS files: the sha256 of the content. */
  sha256?: string;
  /** Other files: the git blob id (sha1 of "blob <size>\0" + content). */
  blobId?: string;
}

export interface DownloadResult {
  repo: string;
  commit: string;
  files: RepoFile[];
  bytes: number;
  /** Bytes that were already on disk from an interrupted run and not fetched again. */
  resumedBytes: number;
}

/** `*` matches within one path segment, `**` across segments, `?` one character. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
      if (glob[i + 1] === "/") i++;
    } else if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

function checkRepoId(repo: string): void {
  if (!/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(repo) || repo.includes("..")) {
    throw new DownloadError("REPO_NOT_FOUND", `"${repo}" is not a repository id (ORG/NAME)`);
  }
}

/**
 * Sends a request with the token and a bound on the time until the answer's headers. The bound ends there: a body
 * of many GB takes minutes, and its stalls are the idle timer's job (a timeout signal would cut the body too).
 */
async function request(url: string, token: string | undefined, timeoutMs: number, headers: Record<string, string> = {}): Promise<Response> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new DownloadError("TIMEOUT", `${url}: no answer within ${timeoutMs} ms`)), timeoutMs);
  try {
    return await fetch(url, {
      headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}), "user-agent": "trtd-prepare-model" },
      redirect: "follow",
      signal: ctl.signal,
    });
  } catch (cause) {
    if (ctl.signal.aborted && ctl.signal.reason instanceof DownloadError) throw ctl.signal.reason;
    throw new DownloadError("HTTP", `${url}: ${(cause as Error).message}`, { cause });
  } finally {
    clearTimeout(timer);
  }
}

function httpError(res: Response, what: string, repo: string, revision: string): DownloadError {
  const hub = res.headers.get("x-error-code");
  if (res.status === 401 || res.status === 403) {
    return new DownloadError(
      "ACCESS_DENIED",
      `${what}: access denied (HTTP ${res.status}): ${repo} is gated or private; set HF_TOKEN to a token with access (and accept the model's license on the hub)`,
    );
  }
  if (res.status === 404 && hub === "RevisionNotFound") return new DownloadError("REVISION_NOT_FOUND", `${repo}: revision "${revision}" not found`);
  if (res.status === 404 && (hub === "RepoNotFound" || what === "file list")) return new DownloadError("REPO_NOT_FOUND", `repository ${repo} not found`);
  if (res.status === 404) return new DownloadError("FILE_NOT_FOUND", `${what}: not found in ${repo} at ${revision}`);
  return new DownloadError("HTTP", `${what}: HTTP ${res.status} ${res.statusText}`);
}

/** The options' defaults, filled in one place: HF_ENDPOINT / HF_TOKEN from the environment, main, 60 s. */
function settings(o: DownloadOptions): { endpoint: string; token: string | undefined; revision: string; idleMs: number } {
  return {
    endpoint: (o.endpoint ?? process.env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
    token: o.token ?? process.env.HF_TOKEN,
    revision: o.revision ?? "main",
    idleMs: o.idleTimeoutMs ?? 60_000,
  };
}

/** The repository's files at a revision, with sizes and hashes, and the commit that revision names. */
export async function listRepoFiles(repo: string, options: DownloadOptions = {}): Promise<{ commit: string; files: RepoFile[] }> {
  checkRepoId(repo);
  const { endpoint, token, revision, idleMs } = settings(options);
  const url = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const res = await request(url, token, idleMs);
  if (!res.ok) throw httpError(res, "file list", repo, revision);
  // The file list's body is bounded too (a server that sends headers and then stalls).
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DownloadError("TIMEOUT", `${url}: the file list did not arrive within ${idleMs} ms`)), idleMs);
  });
  let info: { sha?: unknown; siblings?: unknown };
  try {
    info = (await Promise.race([res.json(), stalled])) as typeof info;
  } finally {
    clearTimeout(timer);
  }
  if (typeof info.sha !== "string" || !Array.isArray(info.siblings)) throw new DownloadError("HTTP", `${url}: not a model revision answer`);
  const files: RepoFile[] = [];
  for (const s of info.siblings as Record<string, unknown>[]) {
    const path = s.rfilename;
    if (typeof path !== "string" || path.startsWith("/") || normalize(path).split(sep).includes("..")) {
      throw new DownloadError("HTTP", `${url}: refusing the file name ${JSON.stringify(path)}`);
    }
    const lfs = s.lfs as { sha256?: unknown; size?: unknown } | undefined;
    const size = typeof lfs?.size === "number" ? lfs.size : s.size;
    if (typeof size !== "number") throw new DownloadError("HTTP", `${url}: no size for ${path} (the hub answers sizes with ?blobs=true)`);
    files.push({ path, size, ...(typeof lfs?.sha256 === "string" ? { sha256: lfs.sha256 } : typeof s.blobId === "string" ? { blobId: s.blobId } : {}) });
  }
  return { commit: info.sha, files };
}

async function hashFile(path: string, file: RepoFile): Promise<string> {
  const h = createHash(file.sha256 ? "sha256" : "sha1");
  if (!file.sha256) h.update(`blob ${file.size}\0`);
  await pipeline(createReadStream(path), h);
  return h.digest("hex");
}

/** Downloads `repo` into `outDir`; see the file's head. Returns what it fetched. */
export async function downloadRepo(repo: string, outDir: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const { endpoint, token, revision, idleMs: idle } = settings(options);
  const log = options.log ?? (() => {});
  const { commit, files: all } = await listRepoFiles(repo, options);
  const include = (options.include ?? []).map(globToRegExp);
  const files = include.length ? all.filter((f) => include.some((re) => re.test(f.path))) : all;
  if (files.length === 0) {
    throw new DownloadError("NOTHING_TO_DOWNLOAD", `${repo}@${revision}: no file matches ${(options.include ?? []).join(", ") || "(everything)"} (${all.length} files listed)`);
  }
  const total = files.reduce((s, f) => s + f.size, 0);
  const partDir = join(outDir, ".download");
  mkdirSync(partDir, { recursive: true });
  let done = 0;
  let resumedBytes = 0;
  const progress = (file: string) => options.onProgress?.(done, total, file);

  const fetchOne = async (file: RepoFile): Promise<void> => {
    const dest = join(outDir, file.path);
    if (existsSync(dest) && statSync(dest).size === file.size && (await hashFile(dest, file)) === (file.sha256 ?? file.blobId)) {
      done += file.size;
      resumedBytes += file.size;
      progress(file.path);
      return; // already here from an earlier run
    }
    const part = join(partDir, file.path.replaceAll("/", "__") + ".incomplete");
    let have = existsSync(part) ? statSync(part).size : 0;
    if (have > file.size) {
      rmSync(part);
      have = 0;
    }
    const url = `${endpoint}/${repo}/resolve/${commit}/${file.path.split("/").map(encodeURIComponent).join("/")}`;
    if (have < file.size) {
      const res = await request(url, token, idle, have > 0 ? { range: `bytes=${have}-` } : {});
      if (!res.ok) throw httpError(res, file.path, repo, revision);
      if (have > 0 && res.status !== 206) have = 0; // the server sent the whole file: start over
      if (have > 0) log(`${file.path}: resuming at ${have} of ${file.size} bytes`);
      resumedBytes += have;
      done += have;
      progress(file.path);
      const out = createWriteStream(part, { flags: have > 0 ? "a" : "w" });
      // A stalled transfer is aborted after `idle` ms without bytes.
      const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
      const arm = () => setTimeout(() => body.destroy(new DownloadError("TIMEOUT", `${file.path}: no bytes for ${idle} ms`)), idle);
      let timer = arm();
      body.on("data", (chunk: Buffer) => {
        done += chunk.length;
        progress(file.path);
        clearTimeout(timer);
        timer = arm();
      });
      try {
        await pipeline(body, out);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === "ENOSPC") {
          throw new DownloadError("DISK_FULL", `disk full while writing ${file.path} (${file.size} bytes; the partial file stays for a resume)`, { cause });
        }
        if (cause instanceof DownloadError) throw cause;
        throw new DownloadError("HTTP", `${file.path}: transfer failed: ${(cause as Error).message} (the partial file stays for a resume)`, { cause });
      } finally {
        clearTimeout(timer);
      }
    }
    const size = statSync(part).size;
    if (size !== file.size) {
      rmSync(part);
      throw new DownloadError("INTEGRITY", `${file.path}: ${size} bytes downloaded, the hub lists ${file.size}`);
    }
    const want = file.sha256 ?? file.blobId;
    if (want !== undefined) {
      const got = await hashFile(part, file);
      if (got !== want) {
        rmSync(part);
        throw new DownloadError("INTEGRITY", `${file.path}: ${file.sha256 ? "sha256" : "git blob id"} ${got} differs from the hub's ${want}`);
      }
    }
    mkdirSync(dirname(dest), { recursive: true });
    renameSync(part, dest);
  };

  // Largest first, `parallel` at a time; the first failure stops new starts and is reported after the others end.
  const queue = [...files].sort((a, b) => b.size - a.size);
  let failure: unknown;
  const worker = async () => {
    for (let f = queue.shift(); f && failure === undefined; f = queue.shift()) {
      try {
        await fetchOne(f);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.parallel ?? 4, files.length)) }, worker));
  if (failure !== undefined) throw failure;
  rmSync(partDir, { recursive: true, force: true });
  return { repo, commit, files, bytes: total, resumedBytes };
}
