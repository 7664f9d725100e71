// A TEST DOUBLE of the decode worker, for `nx run api:bench`'s throughput part: it serves trtd/decode/generate on the
// request plane like a decode worker, runs no model, and streams `maxTokens` chunks of one token each as fast as the
// request plane takes them (the token ids cycle through `--tokens`, ids of ordinary text). It measures the api and
// the request plane, never an engine.
// It announces the model and tokenizer identity of --model-dir (the api refuses a worker of another model) and
// stand-in weights, KV layout and ABI values, which the first worker to register fixes for the deployment.
//   node --import tsx --conditions=source apps/api/bench/decode-double.ts --request-plane-uri nats://127.0.0.1:4222 --model-dir models/tiny --tokens 1,2,3
import { parseArgs } from "node:util";
import { modelDirIdentity } from "@trtd/model";
import { DEFAULT_NAMESPACE, Endpoints, onShutdownSignal, workerReadyLine, type DecodeChunk, type DecodeRequest } from "@trtd/apps-common";
import { connect } from "@trtd/request-plane";

const { values } = parseArgs({
  options: { "request-plane-uri": { type: "string" }, "model-dir": { type: "string" }, tokens: { type: "string" } },
});
const uri = values["request-plane-uri"];
const ids = (values.tokens ?? "").split(",").filter(Boolean).map(Number);
const modelDir = values["model-dir"];
if (!uri || !modelDir || ids.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0)) {
  console.error("usage: decode-double.ts --request-plane-uri URI --model-dir DIR --tokens ID,ID,...");
  process.exit(2);
}

const plane = await connect(uri, { name: "trtd-decode-double" });
let active = 0;
let generated = 0;
const served = await plane.endpoint(DEFAULT_NAMESPACE, Endpoints.decode.component, Endpoints.decode.endpoint).serve<DecodeRequest, DecodeChunk>(
  async function* decodeDouble(req, ctx) {
    active++;
    try {
      for (let i = 0; i < req.maxTokens && !ctx.signal.aborted; i++) {
        const last = i === req.maxTokens - 1;
        generated++;
        yield {
          tokens: [ids[i % ids.length]],
          ...(i === 0 ? { mode: "aggregated" as const } : {}),
          ...(last ? { finishReason: "length" as const } : {}),
        };
      }
    } finally {
      active--;
    }
  },
  {
    metrics: () => ({ activeRequests: active, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 1, generatedTokens: generated, pinnedExports: 0, draining: false }),
    meta: { role: "decode", testDouble: true, identity: { ...modelDirIdentity(modelDir), weights: "decode-test-double", kvLayout: "decode-test-double", abi: 0 } },
  },
);
// The decode worker's own ready line (the bench waits for it as for a real worker's), after one naming the double.
console.log(`decode worker TEST DOUBLE (no model) ${served.instanceId}`);
console.log(workerReadyLine({ role: "decode", instanceId: served.instanceId, namespace: DEFAULT_NAMESPACE, ...Endpoints.decode, pid: process.pid }));
onShutdownSignal(
  async () => {
    await served.stop({ graceMs: 1000 });
    await plane.close();
  },
  { log: (l) => console.error(l), graceMs: 5000 },
);
