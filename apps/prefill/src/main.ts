// `nx run prefill:serve` / `node --import tsx --conditions=source apps/prefill/src/main.ts --request-plane-uri ... --help`
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runWorkerProcess } from "@trtd/apps-common";
import { startPrefillWorker } from "./worker.js";

runWorkerProcess("prefill", resolve(fileURLToPath(import.meta.url), "../../../../models/tiny"), (cli, plane, log) =>
  startPrefillWorker({
    plane,
    executor: cli.executor,
    namespace: cli.namespace,
    kvHost: cli.kvHost,
    kvAdvertiseHost: cli.kvAdvertiseHost,
    kvPort: cli.kvPort,
    kvOfferTtlMs: cli.kvOfferTtlMs,
    log,
  }),
);
