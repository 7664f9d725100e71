// `nx run decode:serve` / `node --import tsx --conditions=source apps/decode/src/main.ts --request-plane-uri ... --help`
import { DEFAULT_MODEL_DIR, runWorkerProcess } from "@trtd/apps-common";
import { startDecodeWorker } from "./worker.js";

runWorkerProcess("decode", DEFAULT_MODEL_DIR, (cli, plane, log) =>
  startDecodeWorker({ plane, executor: cli.executor, namespace: cli.namespace, kvPullTimeoutMs: cli.kvPullTimeoutMs, stallTimeoutMs: cli.stallTimeoutMs, log }),
);
