// TEST DOUBLE of the decode worker: it serves the decode endpoint on a request plane as a decode worker does, runs no
// model, and answers each request with the tokens `reply` gives for its prompt (one token per chunk, finishing with
// "stop" at an eos id, else "length" at maxTokens), or fails it before any token as `fail` says. It records every
// request it is sent. For api tests whose point is what the api sends and how it reads a given completion (a
// random-weight model never writes a tool call), or what it does when a worker fails a request.
import { DEFAULT_NAMESPACE, Endpoints, type DecodeChunk, type DecodeRequest } from "@trtd/apps-common";
import { modelDirIdentity } from "@trtd/model";
import type { RequestPlane } from "@trtd/request-plane";

export interface ScriptedDecodeWorkerTestDouble {
  /** The prompt tokens of every request, in arrival order. */
  readonly prompts: number[][];
  /** Every request, in arrival order. */
  readonly requests: DecodeRequest[];
  stop(): Promise<void>;
}

/**
 * How the double fails a request before its first token: `throw` (the handler throws: the request plane's error
 * frame) or `error-chunk` (a chunk with finishReason "error", as a worker reports an executor's failure).
 */
export type ScriptedFailure = "throw" | "error-chunk";

export async function startScriptedDecodeWorkerTestDouble(o: {
  plane: RequestPlane;
  modelDir: string;
  reply: (prompt: number[]) => number[];
  /** Which requests fail, and how (default none). */
  fail?: (req: DecodeRequest) => ScriptedFailure | undefined;
}): Promise<ScriptedDecodeWorkerTestDouble> {
  const prompts: number[][] = [];
  const requests: DecodeRequest[] = [];
  let active = 0;
  let generated = 0;
  const served = await o.plane.endpoint(DEFAULT_NAMESPACE, Endpoints.decode.component, Endpoints.decode.endpoint).serve<DecodeRequest, DecodeChunk>(
    async function* scriptedDecode(req, ctx) {
      prompts.push([...req.tokens]);
      requests.push(req);
      active++;
      try {
        const failure = o.fail?.(req);
        if (failure === "throw") throw new Error(`decode test double: request ${req.id} fails`);
        if (failure === "error-chunk") {
          yield { tokens: [], mode: "aggregated" as const, finishReason: "error" as const, error: `decode test double: request ${req.id} fails` };
          return;
        }
        const tokens = o.reply(req.tokens).slice(0, req.maxTokens);
        for (let i = 0; i < tokens.length && !ctx.signal.aborted; i++) {
          const eos = req.stopTokenIds.includes(tokens[i]);
          const last = eos || i === tokens.length - 1;
          generated++;
          yield { tokens: [tokens[i]], ...(i === 0 ? { mode: "aggregated" as const } : {}), ...(last ? { finishReason: eos ? ("stop" as const) : ("length" as const) } : {}) };
          if (eos) return;
        }
      } finally {
        active--;
      }
    },
    {
      metrics: () => ({ activeRequests: active, queuedRequests: 0, kvBlocksUsed: 0, kvBlocksTotal: 1, generatedTokens: generated, pinnedExports: 0, draining: false }),
      meta: { role: "decode", testDouble: true, identity: { ...modelDirIdentity(o.modelDir), weights: "decode-test-double", kvLayout: "decode-test-double", abi: 0 } },
    },
  );
  return { prompts, requests, stop: () => served.stop({ graceMs: 1000 }) };
}
