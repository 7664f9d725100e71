// `nx run decode:serve` / `node --import tsx --conditions=source apps/decode/src/main.ts --request-plane-uri ... --help`
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runWorkerProcess } from "@trtd/apps-common";
import { startDecodeWorker } from "./worker.js";

runWorkerProcess("decode", resolve(fileURLToPath(import.meta.url), "../../../../models/tiny"), (cli, plane, log) =>
  startDecodeWorker({ plane, executor: cli.executor, namespace: cli.namespace, kvPullTimeoutMs: cli.kvPullTimeoutMs, log }),
);
