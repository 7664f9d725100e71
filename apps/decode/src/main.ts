// `nx run decode:serve` / `node --import tsx --conditions=source apps/decode/src/main.ts --request-plane-uri ...`
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { makeLogger, onShutdownSignal, parseWorkerCli, UsageError, workerUsage } from "@trtd/apps-common";
import { connect } from "@trtd/request-plane";
import { startDecodeWorker } from "./worker.js";

const DEFAULT_MODEL_DIR = resolve(fileURLToPath(import.meta.url), "../../../../models/tiny");

async function main(argv: string[]): Promise<void> {
  const cli = parseWorkerCli(argv, DEFAULT_MODEL_DIR);
  if (cli.help) {
    console.log(workerUsage("decode"));
    return;
  }
  const plane = await connect(cli.requestPlaneUri, { name: "trtd-decode" });
  const log = makeLogger("decode");
  const worker = await startDecodeWorker({ plane, executor: cli.executor, namespace: cli.namespace, log });
  console.log(`trtd decode worker ${worker.instanceId} serving ${cli.namespace}/decode/generate (pid ${process.pid})`);
  onShutdownSignal(
    async () => {
      await worker.stop(cli.graceMs);
      await plane.close();
    },
    { log, graceMs: cli.graceMs + 10_000 },
  );
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) console.error(`${err.message}\n${workerUsage("decode")}`);
  else console.error(err);
  process.exit(2);
});
