// The README's bring-up command (`npm start`): builds what is missing or stale (native executor, models/tiny, the
// apps and packages they run on, compiled once with tsup into dist/), then runs the launcher from dist/ with
// nats-server + 1 prefill + 1 decode + api, every app as `node apps/<app>/dist/main.js`. `npm start -- --source`
// (or TRTD_SOURCE=1) runs everything from the TypeScript sources through tsx instead, for development. Without
// nats-server the same command runs every part in one process on the in-process request plane, and says so. Extra arguments go to the launcher
// (e.g. `npm start -- --api-server-port 9000`).
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ensureBuilt, ensureModel, ensureNative, repoRoot } from "./assets.mjs";

const passed = process.argv.slice(2);
const source = passed.includes("--source") || process.env.TRTD_SOURCE === "1";
const launcherArgs = passed.filter((a) => a !== "--source");

let modelDir;
try {
  await ensureNative();
  modelDir = ensureModel("tiny");
  if (!source) ensureBuilt("@trtd/launcher");
} catch (err) {
  console.error(`start: preparing assets failed: ${err.message}`);
  process.exit(1);
}

const entry = source ? ["--import", "tsx", "--conditions=source", join(repoRoot, "apps/launcher/src/main.ts")] : [join(repoRoot, "apps/launcher/dist/main.js")];
// The request plane: a NATS already answering at --request-plane-uri (default 127.0.0.1:4222) is used, else the
// launcher starts nats-server there (else, without nats-server, everything runs in one process). Credentials or
// TLS files, or --in-process, mean the caller chose the request plane: nothing is started for it.
const chosen = launcherArgs.some((a) => /^--(request-plane-credentials|request-plane-tls-(ca|cert|key)|in-process)(=|$)/.test(a));
const requestPlane = chosen ? [] : ["--initialize-request-plane", "--use-running-request-plane", "--in-process-fallback"];
const args = [
  ...entry,
  "--context-worker-count", "1",
  "--generate-worker-count", "1",
  "--worker-name", "trtd",
  ...requestPlane,
  "--request-plane-uri", "127.0.0.1:4222",
  "--model-dir", modelDir,
  ...launcherArgs,
];
// TRTD_PARENT_PID: the launcher stops on its own if this script dies without passing a signal on.
// detached: the launcher gets its own process group, so a terminal's Ctrl-C (sent to the whole foreground group)
// reaches it once, through this script; a second signal would make it skip the graceful drain.
const child = spawn(process.execPath, args, { stdio: "inherit", cwd: repoRoot, detached: true, env: { ...process.env, TRTD_PARENT_PID: String(process.pid), ...(source ? { TRTD_SOURCE: "1" } : {}) } });
// The launcher handles SIGINT/SIGTERM itself (graceful stop); pass them on and exit with it.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
