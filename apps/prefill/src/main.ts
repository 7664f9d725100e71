// `nx run prefill:serve` / `node --import tsx --conditions=source apps/prefill/src/main.ts --request-plane-uri ...`
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { makeLogger, onShutdownSignal, parseWorkerCli, UsageError, workerUsage } from "@trtd/apps-common";
import { connect } from "@trtd/request-plane";
import { startPrefillWorker } from "./worker.js";

const DEFAULT_MODEL_DIR = resolve(fileURLToPath(import.meta.url), "../../../../models/tiny");

async function main(argv: string[]): Promise<void> {
  const cli = parseWorkerCli(argv, DEFAULT_MODEL_DIR);
  if (cli.help) {
    console.log(workerUsage("prefill"));
    return;
  }
  const plane = await connect(cli.requestPlaneUri, { name: "trtd-prefill" });
  const log = makeLogger("prefill");
  const worker = await startPrefillWorker({ plane, executor: cli.executor, namespace: cli.namespace, kvHost: cli.kvHost, kvAdvertiseHost: cli.kvAdvertiseHost, kvOfferTtlMs: cli.kvOfferTtlMs, log });
  console.log(`trtd prefill worker ${worker.instanceId} serving ${cli.namespace}/prefill/generate (pid ${process.pid})`);
  onShutdownSignal(
    async () => {
      await worker.stop(cli.graceMs);
      await plane.close();
    },
    { log, graceMs: cli.graceMs + 10_000 },
  );
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) console.error(`${err.message}\n${workerUsage("prefill")}`);
  else console.error(err);
  process.exit(2);
});
