import { KvTransportError } from "../errors.js";
import type { EngineEndpoint } from "../handle.js";
import type { PullTransport } from "./types.js";

/** The engine (TensorRT-LLM's cache transceiver) moves the bytes: the sink takes the opaque state, then ACK. */
export const engineTransport: PullTransport<EngineEndpoint> = {
  name: "engine",
  sizeCheck: "none",
  releasesOnFailure: false,
  usable: (_ep, _handle, sink) => typeof sink?.importEngineState === "function",
  canContinue: (_ep, job) => job.lease === undefined,
  async pull(ep, job, env) {
    try {
      await job.sink.importEngineState!(Buffer.from(ep.state, "base64"));
    } catch (err) {
      throw new KvTransportError(`engine import failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    await env.ack(job.handle);
  },
};
