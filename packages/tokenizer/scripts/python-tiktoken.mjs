// Finds a Python interpreter that can import tiktoken (the Python package, i.e. tiktoken's native Rust core), for
// the bench's baseline and the parity test: $TRTD_PYTHON, else build/pyenv (created here on first use from the
// local wheel folders, never from the network), else none, with the reason.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const venv = join(root, "build/pyenv");
const WHEEL_DIRS = ["/opt/pypi-more/files", "/opt/pypi/files"];

function importsTiktoken(python) {
  const r = spawnSync(python, ["-c", "import tiktoken; print(tiktoken.__version__)"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** { python, version } or { reason }. */
export function findPythonTiktoken() {
  const explicit = process.env.TRTD_PYTHON;
  if (explicit) {
    const version = importsTiktoken(explicit);
    return version ? { python: explicit, version } : { reason: `TRTD_PYTHON=${explicit} cannot import tiktoken` };
  }
  const python = join(venv, "bin/python");
  if (existsSync(python)) {
    const version = importsTiktoken(python);
    if (version) return { python, version };
  }
  const dirs = WHEEL_DIRS.filter((d) => existsSync(d));
  if (dirs.length === 0) return { reason: `no local wheel folder (${WHEEL_DIRS.join(", ")}) to install tiktoken from; set TRTD_PYTHON` };
  const mk = spawnSync("python3", ["-m", "venv", venv], { encoding: "utf8" });
  if (mk.status !== 0) return { reason: `python3 -m venv failed: ${(mk.stderr || mk.error?.message || "").trim()}` };
  const pip = spawnSync(join(venv, "bin/pip"), ["install", "-q", "--no-index", ...dirs.flatMap((d) => ["--find-links", d]), "tiktoken"], { encoding: "utf8" });
  if (pip.status !== 0) return { reason: `pip install tiktoken from ${dirs.join(", ")} failed: ${(pip.stderr || "").trim().split("\n").at(-1)}` };
  const version = importsTiktoken(python);
  return version ? { python, version } : { reason: `tiktoken installed into ${venv} but does not import` };
}
