// The router's view of the workers: who is up with what load, and how to call them. `request-plane-workers.ts`
// implements it over @trtd/request-plane; nothing else in the router knows about the transport.
import type { DecodeChunk, DecodeRequest, GenerateRequest, KvEventPoll, KvEventReply, PrefillResult, WorkerLoad } from "@trtd/apps-common";

export interface WorkerInstance {
  /** The instance id on the request plane. */
  id: string;
  /** Last published load; undefined until the worker has published one. */
  load?: WorkerLoad;
  /** The optional protocol parts it announced (apps-common DecodeFeatures); undefined: none. */
  features?: readonly string[];
}

export type WorkerRole = "prefill" | "decode";

export interface Workers {
  instances(role: WorkerRole): WorkerInstance[];
  /** Context-only run on one prefill instance; resolves with the first token and the KV handle. */
  prefill(instanceId: string, req: GenerateRequest, signal: AbortSignal): Promise<PrefillResult>;
  /** Generation on one decode instance; closing the iterator or aborting `signal` cancels it there. */
  decode(instanceId: string, req: DecodeRequest, signal: AbortSignal): AsyncIterable<DecodeChunk>;
  /** One poll of a worker's prefix-cache events (apps-common kv-events.ts); rejects when it does not answer in time. */
  pollKvEvents?(instanceId: string, poll: KvEventPoll, timeoutMs: number): Promise<KvEventReply>;
}
