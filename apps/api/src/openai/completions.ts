// POST /v1/completions (legacy): the request type and its validation.
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
import * as L from "./limits.js";
import * as V from "./validate.js";

export interface CompletionParams {
  model: string;
  /** Text to tokenize, or token ids given by the client. */
  prompt: { text: string } | { tokens: number[] };
  /** Undefined: COMPLETIONS_DEFAULT_MAX_TOKENS. */
  maxTokens?: number;
  sampling: V.SamplingFields;
  /** Choices to generate (`n`, 1 to MAX_N); choice i samples with seed + i (choices.ts). */
  n: number;
  controls: V.ControlFields;
  /** `logprobs: k` (0-20): each token's logprob and its k best alternatives; null or absent: none. */
  logprobs: V.LogprobsFields;
  stop: string[];
  stream: V.StreamFlags;
  user?: string;
}

const KNOWN = new Set([
  "model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "logprobs", "user", "stream", "stream_options", ...V.CONTROL_FIELDS,
]);

function parsePrompt(v: unknown): CompletionParams["prompt"] {
  if (typeof v === "string") return { text: v };
  if (Array.isArray(v)) {
    if (v.length === 1 && typeof v[0] === "string") return { text: v[0] };
    if (v.length > 0 && v.every((t) => Number.isInteger(t) && t >= 0)) return { tokens: v as number[] };
    if (v.length > 1 && v.every((t) => typeof t === "string" || Array.isArray(t))) {
      throw new InvalidRequestError("batched prompts are not supported; send one prompt per request", "prompt", ApiErrorCodes.unsupported);
    }
  }
  throw new InvalidRequestError("'prompt' must be a string or a list of token ids", "prompt");
}

export function parseCompletion(raw: unknown, servedModel: string): CompletionParams {
  const body = V.asBody(raw);
  V.checkFields(body, KNOWN, V.NEUTRAL_FIELDS);
  const model = V.requireModel(body, servedModel);
  const logprobs = V.optInt(body, "logprobs", 0, L.MAX_TOP_LOGPROBS);
  if (body.prompt === undefined) throw new InvalidRequestError("'prompt' is required", "prompt", ApiErrorCodes.invalidRequest);
  const sampling = V.parseSampling(body);
  return {
    model,
    prompt: parsePrompt(body.prompt),
    maxTokens: V.optInt(body, "max_tokens", 1, Number.MAX_SAFE_INTEGER),
    sampling,
    n: V.parseN(body, sampling),
    controls: V.parseControls(body),
    logprobs: { logprobs: logprobs !== undefined, topLogprobs: logprobs ?? 0 },
    stop: V.parseStop(body),
    stream: V.parseStream(body),
    user: V.parseUser(body),
  };
}
