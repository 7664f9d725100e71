// The seed's deploy: `node --import tsx --conditions=source apps/launcher/src/main.ts --context-worker-count 1
// --generate-worker-count 1 --worker-name trtd --initialize-request-plane --request-plane-uri 127.0.0.1:4222`
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_MODEL_DIR, launcherReadyLine, makeLogger, onShutdownSignal, UsageError } from "@trtd/apps-common";
import { LAUNCHER_USAGE, parseLauncherCli } from "./cli.js";
import { launch, LaunchError } from "./launch.js";

const REPO_ROOT = resolve(fileURLToPath(import.meta.url), "../../../..");

async function main(argv: string[]): Promise<void> {
  const cli = parseLauncherCli(argv, DEFAULT_MODEL_DIR);
  if (cli.help) {
    console.log(LAUNCHER_USAGE);
    return;
  }
  const log = makeLogger("launcher");
  const d = await launch(cli, { repoRoot: REPO_ROOT, log });
  onShutdownSignal(() => d.stop(), { log, graceMs: 60_000 });
  const where = d.mode === "in-process" ? "in one process (in-process request plane)" : `request plane ${d.requestPlaneUri}`;
  const workers = { prefillWorkers: cli.contextWorkers, decodeWorkers: cli.generateWorkers, where };
  // The ready line (apps/common's ready-line.ts): tests, benches and tools wait for it.
  console.log(launcherReadyLine(cli.noApi ? workers : { ...workers, apiUrl: d.apiUrl, model: cli.modelName }));
  if (!cli.noApi) {
    console.log(`  try: curl ${d.apiUrl}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${cli.modelName}","messages":[{"role":"user","content":"Hello"}]}'`);
  }
  const name = await d.failed;
  log(`${name} keeps failing: stopping everything`);
  await d.stop();
  process.exit(1);
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) console.error(`${err.message}\n${LAUNCHER_USAGE}`);
  else if (err instanceof LaunchError) console.error(`launcher: ${err.message}`);
  else console.error(err);
  process.exit(2);
});
