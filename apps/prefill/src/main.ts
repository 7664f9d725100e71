// `nx run prefill:serve` / `node --import tsx --conditions=source apps/prefill/src/main.ts --request-plane-uri ... --help`
import { DEFAULT_MODEL_DIR, runWorkerProcess } from "@trtd/apps-common";
import { startPrefillWorker } from "./worker.js";

runWorkerProcess("prefill", DEFAULT_MODEL_DIR, async (cli, plane, log) => {
  const worker = await startPrefillWorker({
    plane,
    executor: cli.executor,
    namespace: cli.namespace,
    kvHost: cli.kvHost,
    kvAdvertiseHost: cli.kvAdvertiseHost,
    kvPort: cli.kvPort,
    kvOfferTtlMs: cli.kvOfferTtlMs,
    stallTimeoutMs: cli.stallTimeoutMs,
    log,
  });
  const kv = worker.offers.address;
  log(`KV offers at ${kv.host}:${kv.port} (listening on ${cli.kvHost})`);
  // The usual multi-host mistake: the request plane is remote but the KV is advertised on loopback, so decode
  // workers on other hosts connect to themselves and every request is recomputed.
  if (isLoopback(kv.host) && cli.requestPlaneUri.split(",").some((u) => !isLoopback(hostOf(u)))) {
    log(`warning: KV is advertised on ${kv.host} while the request plane is remote; decode workers on other hosts cannot pull it (set --kv-host / --kv-advertise-host)`);
  }
  return worker;
});

function hostOf(uri: string): string {
  try {
    return new URL(/^[a-z]+:\/\//.test(uri.trim()) ? uri.trim() : `nats://${uri.trim()}`).hostname;
  } catch {
    return uri;
  }
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "[::1]" || host === "::1" || /^127\./.test(host);
}
