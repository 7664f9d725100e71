// prepare-model download against a local server, started here on 127.0.0.1, that answers the hub's API the way
// huggingface.co does: the revision endpoint with siblings (sizes, LFS sha256, git blob ids) and X-Error-Code on
// 404s, `resolve` URLs with X-Repo-Commit, LFS files redirected (302) to a storage URL that honours Range, a gated
// repository answering 401 without the right token.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { downloadRepo, DownloadError, globToRegExp } from "../src/download.js";
import { runCli } from "../src/commands.js";
import { rejection } from "./helpers.js";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const files: Record<string, Buffer> = {
  "config.json": Buffer.from(JSON.stringify({ model_type: "llama", hidden_size: 8 })),
  "tokenizer.json": Buffer.from(JSON.stringify({ model: { type: "BPE" } }).repeat(50)),
  "model-00001-of-00002.safetensors": Buffer.alloc(300_000, 7),
  "model-00002-of-00002.safetensors": Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 31) & 255)),
  "original/tokenizer.model": Buffer.from("YQ== 0\n"),
};
const LFS = (path: string) => path.endsWith(".safetensors") || path.endsWith(".model");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const blobId = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

interface Log { method: string; url: string; range?: string; auth?: string }
let server: Server;
let endpoint: string;
const requests: Log[] = [];
let corrupt = false; // serve a wrong byte for the second shard
let dropAfter = 0; // end the first storage response after this many bytes (an interrupted transfer)
let slowMs = 0; // send storage bodies in 8 pieces this far apart
const scratch = mkdtempSync(join(tmpdir(), "hfdl-"));

function handler(req: IncomingMessage, res: ServerResponse): void {
  requests.push({ method: req.method ?? "", url: req.url ?? "", range: req.headers.range, auth: req.headers.authorization });
  const url = new URL(req.url ?? "/", "http://x");
  const notFound = (code: string) => {
    res.writeHead(404, { "x-error-code": code, "content-type": "application/json" }).end(JSON.stringify({ error: code }));
  };
  let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
  if (m) {
    const [, repo, revision] = m;
    if (repo === "meta/gated" && req.headers.authorization !== "Bearer good-token") {
      res.writeHead(401, { "x-error-code": "GatedRepo" }).end("Access to model meta/gated is restricted.");
      return;
    }
    if (repo !== "org/model" && repo !== "meta/gated") return notFound("RepoNotFound");
    if (revision !== "main" && revision !== COMMIT) return notFound("RevisionNotFound");
    const siblings = Object.entries(files).map(([rfilename, b]) =>
      LFS(rfilename) ? { rfilename, size: b.length, blobId: "x", lfs: { sha256: sha256(b), size: b.length, pointerSize: 134 } } : { rfilename, size: b.length, blobId: blobId(b) },
    );
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: repo, sha: COMMIT, siblings }));
    return;
  }
  m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  if (m) {
    const path = decodeURIComponent(m[3]!);
    const body = files[path];
    if (!body || m[2] !== COMMIT) return notFound("EntryNotFound");
    if (LFS(path)) {
      res.writeHead(302, { location: `${endpoint}/storage/${sha256(body)}?f=${encodeURIComponent(path)}`, "x-repo-commit": COMMIT, "x-linked-size": String(body.length) }).end();
      return;
    }
    res.writeHead(200, { "x-repo-commit": COMMIT, etag: `"${blobId(body)}"`, "content-length": String(body.length) }).end(body);
    return;
  }
  if (url.pathname.startsWith("/storage/")) {
    const path = url.searchParams.get("f")!;
    let body = files[path]!;
    if (corrupt && path.startsWith("model-00002")) body = Buffer.concat([body.subarray(0, 10), Buffer.from([body[10]! ^ 1]), body.subarray(11)]);
    const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = r ? Number(r[1]) : 0;
    const chunk = body.subarray(start);
    res.writeHead(r ? 206 : 200, { "content-length": String(chunk.length), ...(r ? { "content-range": `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (slowMs > 0) {
      const piece = Math.ceil(chunk.length / 8);
      let at = 0;
      const next = () => {
        if (res.destroyed) return;
        if (at >= chunk.length) return void res.end();
        res.write(chunk.subarray(at, (at += piece)));
        setTimeout(next, slowMs);
      };
      next();
      return;
    }
    if (dropAfter > 0) {
      const n = dropAfter;
      dropAfter = 0;
      res.write(chunk.subarray(0, n));
      setTimeout(() => res.destroy(), 300); // the connection breaks after the first bytes have reached the client
      return;
    }
    res.end(chunk);
    return;
  }
  res.writeHead(404).end();
}

beforeAll(async () => {
  server = createServer(handler);
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const a = server.address();
  endpoint = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
});
afterAll(async () => {
  await new Promise<void>((ok) => server.close(() => ok()));
  rmSync(scratch, { recursive: true, force: true });
});

const fresh = (name: string) => join(scratch, name);
const opts = (extra: object = {}) => ({ endpoint, token: undefined, parallel: 3, idleTimeoutMs: 5_000, ...extra });
const failure = (p: Promise<unknown>) => rejection<DownloadError>(p);

describe("prepare-model download, against a server that answers as the hub does", () => {
  it("fetches every file in parallel, through LFS redirects, verified by sha256 and git blob id", async () => {
    const out = fresh("all");
    requests.length = 0;
    const seen: number[] = [];
    const r = await downloadRepo("org/model", out, opts({ onProgress: (done: number) => seen.push(done) }));
    expect(r.commit).toBe(COMMIT);
    for (const [path, body] of Object.entries(files)) expect(readFileSync(join(out, path)).equals(body)).toBe(true);
    expect(existsSync(join(out, ".download"))).toBe(false);
    expect(r.bytes).toBe(Object.values(files).reduce((s, b) => s + b.length, 0));
    expect(seen.at(-1)).toBe(r.bytes);
    expect(requests.some((q) => q.url.startsWith("/storage/"))).toBe(true); // the redirects were followed
    expect(requests.filter((q) => q.url.includes("/resolve/")).every((q) => q.url.includes(`/resolve/${COMMIT}/`))).toBe(true);
  });

  it("--include takes only matching files", async () => {
    const out = fresh("include");
    const r = await downloadRepo("org/model", out, opts({ include: ["*.json", "original/**"] }));
    expect(r.files.map((f) => f.path).sort()).toEqual(["config.json", "original/tokenizer.model", "tokenizer.json"]);
    expect(existsSync(join(out, "model-00001-of-00002.safetensors"))).toBe(false);
    expect(globToRegExp("*.safetensors").test("sub/x.safetensors")).toBe(false);
    expect(await failure(downloadRepo("org/model", fresh("none"), opts({ include: ["*.bin"] })))).toHaveProperty("code", "NOTHING_TO_DOWNLOAD");
  });

  it("resumes an interrupted file with a Range request and keeps what was on disk", async () => {
    const out = fresh("resume");
    dropAfter = 120_000; // the first storage answer breaks off after 120 kB
    const first = await failure(downloadRepo("org/model", out, opts({ parallel: 1 })));
    expect(first.message).toMatch(/transfer failed|partial file stays/);
    const parts = readdirSync(join(out, ".download"));
    expect(parts.length).toBe(1);
    const kept = statSync(join(out, ".download", parts[0]!)).size; // what arrived before the break
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(120_000);
    requests.length = 0;
    const r = await downloadRepo("org/model", out, opts({ parallel: 1 }));
    expect(requests.some((q) => q.range === `bytes=${kept}-`)).toBe(true);
    expect(r.resumedBytes).toBeGreaterThanOrEqual(kept);
    for (const [path, body] of Object.entries(files)) expect(readFileSync(join(out, path)).equals(body)).toBe(true);
  });

  it("a file whose hash differs from the hub's is refused and not kept", async () => {
    const out = fresh("corrupt");
    corrupt = true;
    try {
      const e = await failure(downloadRepo("org/model", out, opts({ include: ["model-00002*"] })));
      expect(e).toBeInstanceOf(DownloadError);
      expect(e.code).toBe("INTEGRITY");
      expect(e.message).toMatch(/model-00002-of-00002.safetensors: sha256 [0-9a-f]{64} differs from the hub's/);
      expect(existsSync(join(out, "model-00002-of-00002.safetensors"))).toBe(false);
      expect(readdirSync(join(out, ".download"))).toEqual([]);
    } finally {
      corrupt = false;
    }
  });

  it("names a gated repository, a missing repository and a missing revision", async () => {
    const gated = await failure(downloadRepo("meta/gated", fresh("g"), opts()));
    expect(gated.code).toBe("ACCESS_DENIED");
    expect(gated.message).toMatch(/meta\/gated is gated or private; set HF_TOKEN/);
    const ok = await downloadRepo("meta/gated", fresh("g2"), opts({ token: "good-token", include: ["config.json"] }));
    expect(ok.files).toHaveLength(1);
    expect(requests.filter((q) => q.url.startsWith("/api/models/meta/gated")).at(-1)?.auth).toBe("Bearer good-token");
    expect(await failure(downloadRepo("org/missing", fresh("m"), opts()))).toMatchObject({ code: "REPO_NOT_FOUND", message: "repository org/missing not found" });
    expect(await failure(downloadRepo("org/model", fresh("r"), opts({ revision: "v9" })))).toMatchObject({ code: "REVISION_NOT_FOUND", message: 'org/model: revision "v9" not found' });
  });

  it("a transfer longer than the idle bound completes while bytes keep coming; a stalled one is cut", async () => {
    const out = fresh("slow");
    slowMs = 150; // the storage sends its body in pieces, 150 ms apart: ~1 s in all, idle bound 400 ms
    try {
      const r = await downloadRepo("org/model", out, opts({ include: ["model-00002*"], idleTimeoutMs: 400 }));
      expect(r.files).toHaveLength(1);
      expect(readFileSync(join(out, "model-00002-of-00002.safetensors")).equals(files["model-00002-of-00002.safetensors"]!)).toBe(true);
      slowMs = 1_000; // now a gap longer than the bound
      const e = await failure(downloadRepo("org/model", fresh("stall"), opts({ include: ["model-00002*"], idleTimeoutMs: 400 })));
      expect(e.code).toBe("TIMEOUT");
      expect(e.message).toMatch(/no bytes for 400 ms/);
    } finally {
      slowMs = 0;
    }
  });

  it("a full disk is named, and the partial file stays for a resume", async () => {
    const out = fresh("full");
    mkdirSync(join(out, ".download"), { recursive: true });
    symlinkSync("/dev/full", join(out, ".download", "config.json.incomplete")); // every write: ENOSPC
    const e = await failure(downloadRepo("org/model", out, opts({ include: ["config.json"] })));
    expect(e.code).toBe("DISK_FULL");
    expect(e.message).toMatch(/disk full while writing config.json/);
  });

  it("the CLI: one line naming the rule for a bad command line, the summary and exit 0 on success", async () => {
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    const prev = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = endpoint;
    try {
      expect(await runCli(["download", "org/model"])).toBe(1);
      expect(errs.join("")).toMatch(/download needs --out DIR/);
      expect(await runCli(["download", "org/model", "--out", fresh("cli"), "--parallel", "0"])).toBe(1);
      expect(errs.join("")).toMatch(/--parallel must be an integer from 1 to 64/);
      expect(await runCli(["download", "org/model", "--out", fresh("cli"), "--include", "*.json"])).toBe(0);
      expect(errs.join("")).toMatch(/org\/model@0123456789ab: 2 files, .* verified/);
      expect(await runCli(["download", "org/missing", "--out", fresh("cli2")])).toBe(1);
      expect(errs.join("")).toMatch(/DownloadError \[REPO_NOT_FOUND\]: repository org\/missing not found/);
    } finally {
      process.stderr.write = write;
      if (prev === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = prev;
    }
  });
});

