// POST /v1/completions (legacy): the request type and its validation.
import { ApiErrorCodes, InvalidRequestError } from "../errors.js";
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
  stop: string[];
  stream: V.StreamFlags;
  user?: string;
}

const KNOWN = new Set(["model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "logprobs", "user", "stream", "stream_options"]);

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
  if (body.logprobs !== undefined && body.logprobs !== null) {
    throw new InvalidRequestError("logprobs are not supported by this server", "logprobs", ApiErrorCodes.unsupported);
  }
  if (body.prompt === undefined) throw new InvalidRequestError("'prompt' is required", "prompt", ApiErrorCodes.invalidRequest);
  const sampling = V.parseSampling(body);
  return {
    model,
    prompt: parsePrompt(body.prompt),
    maxTokens: V.optInt(body, "max_tokens", 1, Number.MAX_SAFE_INTEGER),
    sampling,
    n: V.parseN(body, sampling),
    stop: V.parseStop(body),
    stream: V.parseStream(body),
    user: V.parseUser(body),
  };
}
