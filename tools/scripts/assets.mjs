// Builds and prepares what tests, benchmarks and the quick start need, only when missing or stale:
// the executors' native libraries and the generated models. Usable as a vitest globalSetup.
import { spawnSync } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inflateRawSync } from "node:zlib";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const nativeSourceDir = join(repoRoot, "packages/trtllm/native");
export const nativeBuildDir = join(repoRoot, "packages/trtllm/build");
export const executorHeader = join(repoRoot, "packages/trtllm/include/trtd_executor.h");
export const cudaSourceDir = join(nativeSourceDir, "cuda");
export const cudaBuildDir = join(nativeBuildDir, "cuda");
/** Where the nvidia_cublas wheel is unpacked (never installed into the system). */
export const cudaDepsDir = join(nativeBuildDir, "cuda-deps");
export const cudaLibraryPath = join(nativeBuildDir, "libtrtd_executor_cuda.so");
/** The local Python package mirror that holds the nvidia_cublas wheel. */
export const wheelDir = "/opt/pypi-more/files";
export const modelsDir = join(repoRoot, "models");

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: repoRoot, ...opts });
  if (r.error) throw new Error(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

function newestMtime(dir, skip = []) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (skip.includes(p)) continue;
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p, skip) : statSync(p).mtimeMs);
  }
  return newest;
}

/** True when the stamp exists and is not older than `sources` (an mtime). */
function fresh(stamp, sources) {
  return existsSync(stamp) && statSync(stamp).mtimeMs >= sources;
}

/**
 * Builds the native code, each part only when its sources are newer than its build: the reference executor
 * (packages/trtllm/native, CMake Release), the CUDA executor where nvcc is on PATH (ensureCudaExecutor),
 * kv-transfer's checksum helper and the tokenizer's native BPE encoder. TRTD_NATIVE_ARCH=OFF builds the
 * reference executor for any x86-64 (for images built on one machine and run on another); the default tunes it
 * for this CPU.
 */
export async function ensureNative({ force = false } = {}) {
  const stamp = join(nativeBuildDir, ".built");
  const sources = Math.max(newestMtime(nativeSourceDir, [cudaSourceDir]), statSync(executorHeader).mtimeMs);
  if (force || !fresh(stamp, sources)) {
    const arch = process.env.TRTD_NATIVE_ARCH === "OFF" ? "OFF" : "ON";
    run("cmake", ["-S", nativeSourceDir, "-B", nativeBuildDir, "-DCMAKE_BUILD_TYPE=Release", `-DTRTD_NATIVE_ARCH=${arch}`]);
    run("cmake", ["--build", nativeBuildDir, "-j", "2"]);
    run("touch", [stamp]);
  }
  ensureCudaExecutor({ force });
  const kvx = await import("../../packages/kv-transfer/scripts/build-native.mjs");
  kvx.buildNative({ force });
  const bpe = await import("../../packages/tokenizer/scripts/build-native.mjs");
  bpe.buildNative({ force });
}

/** The nvcc on PATH, or undefined. */
export function findNvcc() {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, "nvcc");
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The toolkit folder as nvcc itself reports it (its TOP), which sees through wrapper scripts on PATH. */
function cudaToolkitRoot(nvcc) {
  const r = spawnSync(nvcc, ["--dryrun", "-E", "-x", "cu", "/dev/null"], { encoding: "utf8" });
  const top = /^#\$ TOP=(.*)$/m.exec(`${r.stdout ?? ""}${r.stderr ?? ""}`);
  return top ? resolve(top[1].trim()) : resolve(dirname(realpathSync(nvcc)), "..");
}

function hasCublasHeaders(root) {
  return ["include", "targets/x86_64-linux/include", "targets/sbsa-linux/include"].some((d) => existsSync(join(root, d, "cublas_v2.h")));
}

/** The newest nvidia_cublas-*.whl in the local mirror, or undefined. */
function findCublasWheel() {
  if (!existsSync(wheelDir)) return undefined;
  const wheels = readdirSync(wheelDir).filter((f) => /^nvidia_cublas-\d.*\.whl$/.test(f));
  wheels.sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  return wheels.length ? join(wheelDir, wheels.at(-1)) : undefined;
}

/**
 * Where cuBLAS comes from: undefined = the CUDA toolkit's own (the GPU machine); otherwise the root (include/,
 * lib/) of the nvidia_cublas wheel unpacked into build/cuda-deps: $TRTD_CUBLAS_WHEEL, else the newest
 * nvidia_cublas-*.whl in the local mirror.
 */
function cublasRoot(toolkit) {
  const explicit = process.env.TRTD_CUBLAS_WHEEL;
  if (!explicit && hasCublasHeaders(toolkit)) return undefined;
  const wheel = explicit ?? findCublasWheel();
  if (!wheel) {
    throw new Error(
      `CUDA executor: the CUDA toolkit at ${toolkit} has no cuBLAS and ${wheelDir} has no nvidia_cublas-*.whl ` +
        "(set TRTD_CUBLAS_WHEEL to the wheel, or TRTD_CUDA=OFF to skip the CUDA executor)",
    );
  }
  if (!existsSync(wheel)) throw new Error(`TRTD_CUBLAS_WHEEL=${wheel}: no such file`);
  return unpackWheel(wheel);
}

/** Unpacks a wheel into build/cuda-deps once (a stamp names the wheel) and returns its nvidia/<cuXY> folder. */
function unpackWheel(wheel) {
  const stamp = join(cudaDepsDir, ".unpacked");
  const id = `${resolve(wheel)} ${statSync(wheel).size}\n`;
  if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== id) {
    rmSync(cudaDepsDir, { recursive: true, force: true });
    mkdirSync(cudaDepsDir, { recursive: true });
    console.log(`unpacking ${wheel} into ${cudaDepsDir}`);
    const py = spawnSync("python3", ["-m", "zipfile", "-e", wheel, cudaDepsDir], { stdio: "inherit" });
    if (py.error) unzip(wheel, cudaDepsDir); // no python3: Node's own reader
    else if (py.status !== 0) throw new Error(`python3 -m zipfile -e ${wheel} exited with ${py.status}`);
    writeFileSync(stamp, id);
  }
  const nvidia = join(cudaDepsDir, "nvidia");
  const roots = existsSync(nvidia) ? readdirSync(nvidia).map((d) => join(nvidia, d)).filter((d) => existsSync(join(d, "include/cublas_v2.h"))) : [];
  if (roots.length !== 1) throw new Error(`${wheel}: expected one nvidia/<cuda>/include/cublas_v2.h inside, found ${roots.length}`);
  return roots[0];
}

/** Extracts a zip file (stored or deflated entries, no zip64) with node:zlib. */
export function unzip(file, dir) {
  const fd = openSync(file, "r");
  const read = (pos, len) => {
    const b = Buffer.alloc(len);
    if (readSync(fd, b, 0, len, pos) !== len) throw new Error(`${file}: truncated`);
    return b;
  };
  try {
    const size = statSync(file).size;
    const tailLen = Math.min(size, 65_557);
    const tail = read(size - tailLen, tailLen);
    const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (eocd < 0) throw new Error(`${file}: not a zip file`);
    const count = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdOffset === 0xffffffff) throw new Error(`${file}: zip64 archives need python3`);
    const cd = read(cdOffset, cdSize);
    for (let p = 0, i = 0; i < count; i++) {
      const method = cd.readUInt16LE(p + 10);
      const compressed = cd.readUInt32LE(p + 20);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const local = cd.readUInt32LE(p + 42);
      const name = cd.toString("utf8", p + 46, p + 46 + nameLen);
      p += 46 + nameLen + extraLen + commentLen;
      const target = resolve(dir, name);
      if (!target.startsWith(resolve(dir) + "/")) throw new Error(`${file}: entry ${name} points outside the folder`);
      if (name.endsWith("/")) {
        mkdirSync(target, { recursive: true });
        continue;
      }
      const header = read(local, 30);
      const data = read(local + 30 + header.readUInt16LE(26) + header.readUInt16LE(28), compressed);
      if (method !== 0 && method !== 8) throw new Error(`${file}: entry ${name} uses compression method ${method}`);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, method === 8 ? inflateRawSync(data) : data);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Builds the CUDA executor (packages/trtllm/native/cuda) into build/libtrtd_executor_cuda.so when nvcc is on
 * PATH, and only when its sources (native/cuda, native/src, the header) are newer than its stamp. cuBLAS
 * comes from the toolkit when it has it, else from the nvidia_cublas wheel of the local mirror (unpacked into
 * build/cuda-deps). TRTD_CUDA=OFF skips it; TRTD_CUDA=ON makes a missing nvcc an error. A failed build throws.
 */
export function ensureCudaExecutor({ force = false } = {}) {
  const mode = process.env.TRTD_CUDA;
  if (mode === "OFF") {
    console.log("CUDA executor not built: TRTD_CUDA=OFF");
    return undefined;
  }
  const nvcc = findNvcc();
  if (!nvcc) {
    if (mode === "ON") throw new Error("TRTD_CUDA=ON but nvcc is not on PATH");
    console.log("CUDA executor not built: nvcc not found");
    return undefined;
  }
  const toolkit = cudaToolkitRoot(nvcc);
  const cublas = cublasRoot(toolkit);
  const stamp = join(cudaBuildDir, ".built");
  const id = `${toolkit} ${cublas ?? "toolkit cuBLAS"}\n`;
  const sources = Math.max(newestMtime(cudaSourceDir), newestMtime(join(nativeSourceDir, "src")), statSync(executorHeader).mtimeMs);
  if (!force && existsSync(cudaLibraryPath) && fresh(stamp, sources) && readFileSync(stamp, "utf8") === id) return cudaLibraryPath;
  const started = new Date();
  console.log(`building the CUDA executor (${toolkit}, cuBLAS from ${cublas ?? "the toolkit"}); nvcc takes a while`);
  try {
    run("cmake", [
      "-S", cudaSourceDir,
      "-B", cudaBuildDir,
      "-DCMAKE_BUILD_TYPE=Release",
      `-DCMAKE_CUDA_COMPILER=${join(toolkit, "bin/nvcc")}`,
      `-DTRTD_CUBLAS_ROOT=${cublas ?? ""}`, // empty: the toolkit's (and clears a wheel path cached earlier)
    ]);
    run("cmake", ["--build", cudaBuildDir, "-j", "2"]);
  } catch (err) {
    throw new Error(`CUDA executor build failed: ${err.message} (TRTD_CUDA=OFF skips it)`, { cause: err });
  }
  if (!existsSync(cudaLibraryPath)) throw new Error(`CUDA executor build finished without ${cudaLibraryPath}`);
  writeFileSync(stamp, id);
  utimesSync(stamp, started, started); // sources edited during the build count as newer
  return cudaLibraryPath;
}

/** Generates models/<size> with tools/prepare-model when it is missing. */
export function ensureModel(size = "tiny") {
  const dir = join(modelsDir, size);
  if (existsSync(join(dir, "config.json"))) return dir;
  if (!existsSync(join(repoRoot, "tools/prepare-model/src/cli.ts"))) return dir;
  run(process.execPath, ["--import", "tsx", "--conditions=source", "tools/prepare-model/src/cli.ts", size, "--out", dir]);
  return dir;
}

/**
 * The workspace projects `@trtd/<name>` runs on (itself included), from the package.json dependencies, as
 * { name, dir }; only workspace packages (those under packages/, apps/, tools/) are followed.
 */
export function workspaceClosure(name) {
  const dirs = new Map();
  for (const parent of ["packages", "apps", "tools"]) {
    const root = join(repoRoot, parent);
    if (!existsSync(root)) continue;
    for (const d of readdirSync(root, { withFileTypes: true })) {
      const pj = join(root, d.name, "package.json");
      if (d.isDirectory() && existsSync(pj)) dirs.set(JSON.parse(readFileSync(pj, "utf8")).name, join(root, d.name));
    }
  }
  const out = [];
  const seen = new Set();
  const visit = (n) => {
    if (seen.has(n) || !dirs.has(n)) return;
    seen.add(n);
    const dir = dirs.get(n);
    const deps = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies ?? {};
    for (const dep of Object.keys(deps)) visit(dep);
    out.push({ name: n, dir });
  };
  visit(name);
  return out;
}

/** Name of the stamp tsup's output gets once a build of it finished (tsup's `clean` removes it with dist/). */
const BUILD_STAMP = ".trtd-built";

/**
 * Compiles (tsup, each project's own tsup.config.ts, as `nx run <project>:build` does) `@trtd/<name>` and the
 * workspace packages it runs on, each only when its dist/ is missing or older than its src/, package.json or
 * tsup config. Declarations (.d.ts) are skipped unless `dts` is set: running needs only the JavaScript, and
 * `nx run-many -t build` still writes them. Returns the names that were built.
 */
export function ensureBuilt(name = "@trtd/launcher", { force = false, dts = false, log = console.log } = {}) {
  const tsup = join(repoRoot, "node_modules/tsup/dist/cli-default.js");
  if (!existsSync(tsup)) throw new Error(`tsup is not installed (${tsup}): run "npm install" first`);
  const built = [];
  for (const { name: n, dir } of workspaceClosure(name)) {
    if (!existsSync(join(dir, "tsup.config.ts"))) continue;
    const stamp = join(dir, "dist", BUILD_STAMP);
    const sources = Math.max(newestMtime(join(dir, "src")), statSync(join(dir, "package.json")).mtimeMs, statSync(join(dir, "tsup.config.ts")).mtimeMs);
    if (!force && fresh(stamp, sources)) continue;
    log(`building ${n} (tsup${dts ? "" : ", no .d.ts"})`);
    const started = new Date();
    const args = [tsup, "--silent", ...(dts ? [] : ["--no-dts"])];
    run(process.execPath, args, { cwd: dir, stdio: ["ignore", "inherit", "inherit"] });
    writeFileSync(stamp, `${n}\n`);
    utimesSync(stamp, started, started); // sources edited during the build count as newer
    built.push(n);
  }
  return built;
}

/** vitest globalSetup entry: everything the tests need. */
export default async function setup() {
  await ensureNative();
  ensureModel("tiny");
}
