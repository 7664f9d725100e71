// The prefill worker's request handler: a context-only run, then the KV offered through kv-transfer.
// Replies exactly once with {firstToken, kvHandle}.
import {
  executorControls,
  executorSampling,
  parseDecodeRequest,
  traceStage,
  type GenerateRequest,
  type PrefillResult,
  type WireTokenLogprobs,
  type WorkerGrammars,
} from "@trtd/apps-common";
import { executorKvSource, type KvOfferServer } from "@trtd/kv-transfer";
import type { Handler, RequestContext } from "@trtd/request-plane";
import type { Executor } from "@trtd/trtllm";
import type { KvFaultInjector } from "./fault-injection.js";

export class PrefillFailedError extends Error {
  readonly code = "prefill_failed" as const;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PrefillFailedError";
  }
}

export interface PrefillHandlerDeps {
  executor: Executor;
  /**
   * The grammars of constrained requests: the first token is sampled here, under its grammar's first mask. Without
   * it a request with a grammar is refused.
   */
  grammars?: WorkerGrammars;
  offers: KvOfferServer;
  /** Test-only fault injection (TRTD_FAULT_INJECT_KV); undefined in normal operation. */
  faults?: KvFaultInjector;
}

export function createPrefillHandler({ executor, grammars, offers, faults }: PrefillHandlerDeps): Handler<GenerateRequest, PrefillResult> {
  return async function prefill(raw: GenerateRequest, ctx: RequestContext): Promise<PrefillResult> {
    traceStage?.("prefill.handler");
    const req = parseDecodeRequest(raw);
    const started = performance.now();
    let firstToken: number | undefined;
    let firstTokenLogprobs: WireTokenLogprobs | undefined;
    let requestId: number | undefined;
    if (req.grammar && !grammars) throw new PrefillFailedError("grammar: this prefill handler has no grammars (constrained decoding)");
    const constraint = req.grammar ? await grammars!.matcher(req.grammar) : undefined;
    try {
      for await (const c of executor.generate(
        {
          type: "context_only",
          prompt: req.tokens,
          maxNewTokens: req.maxTokens,
          stopTokenIds: req.stopTokenIds,
          sampling: executorSampling(req),
          ...executorControls(req),
          ...(constraint ? { constraint } : {}),
        },
        { signal: ctx.signal },
      )) {
        if (!c.final) continue;
        if (c.finishReason === "cancelled") throw new PrefillFailedError("prefill cancelled", { cause: ctx.signal.reason });
        if (c.finishReason === "error" || c.tokens.length !== 1) {
          throw new PrefillFailedError(`context-only request failed: ${c.error?.message ?? `${c.tokens.length} tokens`}`, { cause: c.error });
        }
        traceStage?.("prefill.first_token");
        firstToken = c.tokens[0];
        firstTokenLogprobs = c.logprobs?.[0];
        requestId = c.requestId;
      }
    } finally {
      constraint?.free(); // decode builds its own matcher and feeds it the first token
    }
    if (firstToken === undefined || requestId === undefined) throw new PrefillFailedError("context-only request ended without a result");
    // The pinned export (with a device descriptor on a device executor), or the context state alone on an engine
    // that moves KV itself (the TensorRT-LLM shim): kv-transfer's one KV source, the one its fault tests offer.
    const kv = executorKvSource(executor, requestId, req.tokens.length);
    if (ctx.signal.aborted) {
      // Cancelled while its last iteration ran: nobody will read the reply, so nothing is offered.
      kv.release();
      throw new PrefillFailedError("prefill cancelled", { cause: ctx.signal.reason });
    }
    // From here the offer server owns the pinned blocks: released on decode's ack, a failed pull, or expiry.
    const kvHandle = faults ? faults.offer(offers, kv) : offers.offer(kv);
    traceStage?.("prefill.offered");
    return { firstToken, ...(firstTokenLogprobs ? { firstTokenLogprobs } : {}), kvHandle, kvBytes: kv.bytes, prefillMs: performance.now() - started };
  };
}
