// Field checks shared by the endpoint parsers. Each throws InvalidRequestError naming the field (`param`).
import { ApiErrorCodes, InvalidRequestError, NotFoundError } from "../errors.js";
import * as L from "./limits.js";

export type Body = Record<string, unknown>;

export function asBody(v: unknown): Body {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvalidRequestError("the request body must be a JSON object", null, ApiErrorCodes.invalidRequest);
  }
  return v as Body;
}

/**
 * Unknown fields are refused, known fields we do not implement are refused unless they hold their neutral
 * value (null counts as neutral). A client is never silently given something else than it asked for.
 * `prefix` is the path of `body` inside the request (e.g. "messages[2]."), so errors name the field as sent.
 */
export function checkFields(body: Body, known: ReadonlySet<string>, neutral: Readonly<Record<string, (v: unknown) => boolean>>, prefix = ""): void {
  for (const [key, value] of Object.entries(body)) {
    if (known.has(key)) continue;
    const param = `${prefix}${key}`;
    // Own properties only: "constructor" or "__proto__" must not find Object.prototype's members.
    const isNeutral = Object.hasOwn(neutral, key) ? neutral[key] : undefined;
    if (isNeutral) {
      if (value === null || value === undefined || isNeutral(value)) continue;
      throw new InvalidRequestError(`'${param}' is not supported by this server`, param, ApiErrorCodes.unsupported);
    }
    throw new InvalidRequestError(`unknown field '${param}'`, param, ApiErrorCodes.unknownField);
  }
}

/** Known OpenAI fields that are accepted when they ask for the default behaviour. */
export const NEUTRAL_FIELDS: Readonly<Record<string, (v: unknown) => boolean>> = {
  best_of: (v) => v === 1,
  echo: (v) => v === false,
  suffix: (v) => v === "",
  store: (v) => v === false,
  metadata: () => true,
  service_tier: (v) => v === "auto" || v === "default",
  // Chat completions read it (openai/response-format.ts); here it stands for the endpoints without it.
  response_format: (v) => typeof v === "object" && v !== null && (v as Body).type === "text",
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === "text",
};

/**
 * The logit controls both endpoints take: OpenAI's frequency_penalty, presence_penalty and logit_bias, and vLLM's
 * extensions repetition_penalty, min_p, min_tokens, ignore_eos and stop_token_ids, at the top level as vLLM takes them.
 */
export const CONTROL_FIELDS = [
  "frequency_penalty", "presence_penalty", "logit_bias", "repetition_penalty", "min_p", "min_tokens", "ignore_eos", "stop_token_ids",
] as const;

/** The logit controls of a request (absent fields: off). */
export interface ControlFields {
  frequencyPenalty: number;
  presencePenalty: number;
  repetitionPenalty: number;
  minP: number;
  /** Token id → bias; ids are checked against the vocabulary when the request is built. */
  logitBias: Record<string, number>;
  minTokens: number;
  /** Generation does not stop at the model's eos ids (they may still be drawn). */
  ignoreEos: boolean;
  /** Ids that end generation besides the model's eos ids (each the last output token, finish_reason "stop"). */
  stopTokenIds: number[];
}

function parseLogitBias(body: Body): Record<string, number> {
  const v = body.logit_bias;
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new InvalidRequestError("'logit_bias' must be an object mapping token ids to numbers", "logit_bias");
  const entries = Object.entries(v as Body);
  if (entries.length > L.MAX_LOGIT_BIAS_ENTRIES) throw new InvalidRequestError(`'logit_bias' takes at most ${L.MAX_LOGIT_BIAS_ENTRIES} entries`, "logit_bias");
  const out: Record<string, number> = {};
  for (const [id, bias] of entries) {
    if (!/^(0|[1-9]\d{0,9})$/.test(id)) throw new InvalidRequestError(`'logit_bias' key '${id.slice(0, 20)}' is not a token id`, "logit_bias");
    if (typeof bias !== "number" || !Number.isFinite(bias) || bias < L.LOGIT_BIAS_MIN || bias > L.LOGIT_BIAS_MAX) {
      throw new InvalidRequestError(`'logit_bias' values must be numbers from ${L.LOGIT_BIAS_MIN} to ${L.LOGIT_BIAS_MAX} (token ${id})`, "logit_bias");
    }
    out[String(Number(id))] = bias;
  }
  return out;
}

function parseStopTokenIds(body: Body): number[] {
  const v = body.stop_token_ids;
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t) && t >= 0)) {
    throw new InvalidRequestError("'stop_token_ids' must be a list of token ids", "stop_token_ids");
  }
  if (v.length > L.MAX_STOP_TOKEN_IDS) throw new InvalidRequestError(`'stop_token_ids' takes at most ${L.MAX_STOP_TOKEN_IDS} ids`, "stop_token_ids");
  return v as number[];
}

export function parseControls(body: Body): ControlFields {
  return {
    frequencyPenalty: optNumber(body, "frequency_penalty", L.PENALTY_MIN, L.PENALTY_MAX, 0),
    presencePenalty: optNumber(body, "presence_penalty", L.PENALTY_MIN, L.PENALTY_MAX, 0),
    repetitionPenalty: optNumber(body, "repetition_penalty", L.REPETITION_PENALTY_MIN_EXCLUSIVE, L.REPETITION_PENALTY_MAX, 1, { minExclusive: true }),
    minP: optNumber(body, "min_p", 0, 1, 0),
    logitBias: parseLogitBias(body),
    minTokens: optInt(body, "min_tokens", 0, Number.MAX_SAFE_INTEGER) ?? 0,
    ignoreEos: optBool(body, "ignore_eos", false),
    stopTokenIds: parseStopTokenIds(body),
  };
}

/** Whether and how many alternatives to return per token (chat: logprobs + top_logprobs; completions: logprobs). */
export interface LogprobsFields {
  logprobs: boolean;
  topLogprobs: number;
}

export function optNumber(body: Body, key: string, min: number, max: number, fallback: number, { minExclusive = false } = {}): number {
  const v = body[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new InvalidRequestError(`'${key}' must be a number`, key);
  if ((minExclusive ? v <= min : v < min) || v > max) {
    throw new InvalidRequestError(`'${key}' must be ${minExclusive ? ">" : ">="} ${min} and <= ${max}, got ${v}`, key);
  }
  return v;
}

export function optInt(body: Body, key: string, min: number, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw new InvalidRequestError(`'${key}' must be an integer`, key);
  if (v < min || v > max) throw new InvalidRequestError(`'${key}' must be between ${min} and ${max}, got ${v}`, key);
  return v;
}

export function optBool(body: Body, key: string, fallback: boolean): boolean {
  const v = body[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw new InvalidRequestError(`'${key}' must be a boolean`, key);
  return v;
}

/** The model must be the one this server serves (404 model_not_found otherwise, as OpenAI answers). */
export function requireModel(body: Body, served: string): string {
  const v = body.model;
  if (typeof v !== "string" || v.length === 0) throw new InvalidRequestError("'model' is required", "model", ApiErrorCodes.invalidRequest);
  if (v !== served) throw new NotFoundError(`model '${v}' does not exist; this server serves '${served}'`, ApiErrorCodes.modelNotFound, "model");
  return v;
}

export function parseStop(body: Body): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw new InvalidRequestError("'stop' must be a string or a list of strings", "stop");
  }
  if (list.length > L.MAX_STOP_SEQUENCES) throw new InvalidRequestError(`'stop' takes at most ${L.MAX_STOP_SEQUENCES} sequences`, "stop");
  for (const s of list) {
    if (s.length === 0 || s.length > L.MAX_STOP_SEQUENCE_CHARS) {
      throw new InvalidRequestError(`each stop sequence must have 1 to ${L.MAX_STOP_SEQUENCE_CHARS} characters`, "stop");
    }
  }
  return list;
}

/**
 * `n`: how many choices, 1 to MAX_N (choices.ts runs them). `best_of` stays refused beyond 1 (NEUTRAL_FIELDS): it
 * would generate choices the client never sees. Choice i samples with `seed + i`, so a seeded request must leave
 * room for its n seeds below SEED_MAX.
 */
export function parseN(body: Body, sampling: SamplingFields): number {
  const n = optInt(body, "n", 1, L.MAX_N) ?? 1;
  if (sampling.seed !== undefined && sampling.seed + n - 1 > L.SEED_MAX) {
    throw new InvalidRequestError(`with n=${n}, choice i samples with seed + i: 'seed' must be at most ${L.SEED_MAX - n + 1}`, "seed");
  }
  return n;
}

export function parseUser(body: Body): string | undefined {
  const v = body.user;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v.length > L.MAX_USER_CHARS) {
    throw new InvalidRequestError(`'user' must be a string of at most ${L.MAX_USER_CHARS} characters`, "user");
  }
  return v;
}

export interface StreamFlags {
  stream: boolean;
  includeUsage: boolean;
}

export function parseStream(body: Body): StreamFlags {
  const stream = optBool(body, "stream", false);
  const so = body.stream_options;
  if (so === undefined || so === null) return { stream, includeUsage: false };
  if (!stream) throw new InvalidRequestError("'stream_options' is only allowed with stream: true", "stream_options");
  if (typeof so !== "object" || Array.isArray(so)) throw new InvalidRequestError("'stream_options' must be an object", "stream_options");
  const o = so as Body;
  for (const k of Object.keys(o)) {
    if (k !== "include_usage" && k !== "include_obfuscation") {
      throw new InvalidRequestError(`unknown field 'stream_options.${k}'`, `stream_options.${k}`, ApiErrorCodes.unknownField);
    }
  }
  return { stream, includeUsage: optBool(o, "include_usage", false) };
}

/** Sampling fields common to both endpoints. */
export interface SamplingFields {
  temperature: number;
  topP: number;
  seed?: number;
}

export function parseSampling(body: Body): SamplingFields {
  return {
    temperature: optNumber(body, "temperature", L.TEMPERATURE_MIN, L.TEMPERATURE_MAX, L.TEMPERATURE_DEFAULT),
    topP: optNumber(body, "top_p", L.TOP_P_MIN_EXCLUSIVE, L.TOP_P_MAX, L.TOP_P_DEFAULT, { minExclusive: true }),
    seed: optInt(body, "seed", L.SEED_MIN, L.SEED_MAX),
  };
}
