// The wire protocol between the api (router) and the workers, carried as JSON over the request plane.
// Workers own the engine; the api owns text. Only token ids cross this boundary.

/** Sampling as the executor understands it. temperature 0 means greedy. */
export interface WireSampling {
  temperature: number;
  topP: number;
  topK: number;
  /** Seeded sampling is reproducible across processes: the n-th draw depends only on (seed, n). */
  seed?: number;
}

/** The internal generate request the api builds from an OpenAI body (ARCHITECTURE.md, step 1). */
export interface GenerateRequest {
  id: string;
  tokens: number[];
  sampling: WireSampling;
  maxTokens: number;
  /** Token ids that end generation (the model's eos ids); stop strings are applied by the api on text. */
  stopTokenIds: number[];
  /** Absolute deadline, epoch milliseconds. */
  deadline: number;
}

/** What a prefill worker returns: the first generated token and where decode can fetch the KV cache. */
export interface PrefillResult {
  firstToken: number;
  /** A `@trtd/kv-transfer` handle, JSON as kv-transfer serialises it; opaque to the api. */
  kvHandle: unknown;
  /** Size of the offered KV, for metrics. */
  kvBytes: number;
  prefillMs: number;
}

/** A decode request: aggregated when `prefill` is absent, generation-only after a remote prefill otherwise. */
export interface DecodeRequest extends GenerateRequest {
  prefill?: PrefillResult;
}

export const FinishReasons = {
  length: "length",
  stop: "stop",
  cancelled: "cancelled",
  error: "error",
} as const;
export type FinishReason = (typeof FinishReasons)[keyof typeof FinishReasons];

/** How the decode worker ran a request; reported once, on its first chunk. */
export const ExecutionModes = {
  aggregated: "aggregated",
  disaggregated: "disaggregated",
  /** Remote prefill happened but the KV pull failed: decode recomputed the prompt locally. */
  recomputed: "recomputed",
} as const;
export type ExecutionMode = (typeof ExecutionModes)[keyof typeof ExecutionModes];

/** One streamed item from a decode worker. */
export interface DecodeChunk {
  tokens: number[];
  /** Present on the last chunk only. */
  finishReason?: FinishReason;
  /** Present on the first chunk. */
  mode?: ExecutionMode;
  /** KV transfer figures, on the first chunk of a disaggregated request. */
  kv?: { bytes: number; transferMs: number };
  error?: string;
}

/** Load a worker publishes with its instance (request-plane metrics). */
export interface WorkerLoad {
  activeRequests: number;
  queuedRequests: number;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Tokens this worker's executor generated since it started (cumulative). */
  generatedTokens: number;
  /** Finished context-only requests whose KV is still pinned for export (prefill: offers not yet pulled). */
  pinnedExports: number;
  /** Draining workers take no new work. */
  draining: boolean;
}

/** Names on the request plane (Dynamo style namespace / component / endpoint). */
export const Endpoints = {
  namespace: "trtd",
  prefill: { component: "prefill", endpoint: "generate" },
  decode: { component: "decode", endpoint: "generate" },
} as const;

export class ProtocolError extends Error {
  readonly code = "invalid_worker_request" as const;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0);
}

/** Checks a request that arrived over the wire; throws ProtocolError naming the first bad field. */
export function parseDecodeRequest(v: unknown): DecodeRequest {
  if (typeof v !== "object" || v === null) throw new ProtocolError("request is not an object");
  const r = v as Record<string, unknown>;
  if (typeof r.id !== "string" || r.id.length === 0) throw new ProtocolError("id must be a non-empty string");
  if (!isIntArray(r.tokens) || r.tokens.length === 0) throw new ProtocolError("tokens must be a non-empty list of token ids");
  if (!Number.isInteger(r.maxTokens) || (r.maxTokens as number) < 1) throw new ProtocolError("maxTokens must be a positive integer");
  if (!isIntArray(r.stopTokenIds)) throw new ProtocolError("stopTokenIds must be a list of token ids");
  if (typeof r.deadline !== "number" || !Number.isFinite(r.deadline)) throw new ProtocolError("deadline must be epoch milliseconds");
  const s = r.sampling as Record<string, unknown> | undefined;
  if (typeof s !== "object" || s === null) throw new ProtocolError("sampling must be an object");
  for (const k of ["temperature", "topP", "topK"] as const) {
    if (typeof s[k] !== "number" || !Number.isFinite(s[k])) throw new ProtocolError(`sampling.${k} must be a number`);
  }
  if (s.seed !== undefined && !Number.isInteger(s.seed)) throw new ProtocolError("sampling.seed must be an integer");
  if (r.prefill !== undefined) {
    const p = r.prefill as Record<string, unknown>;
    if (typeof p !== "object" || p === null || !Number.isInteger(p.firstToken)) {
      throw new ProtocolError("prefill.firstToken must be a token id");
    }
  }
  return r as unknown as DecodeRequest;
}
