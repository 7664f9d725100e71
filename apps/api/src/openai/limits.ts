// Ranges and limits of the OpenAI endpoints, as named constants (validation reads only these).

export const TEMPERATURE_MIN = 0;
export const TEMPERATURE_MAX = 2;
export const TEMPERATURE_DEFAULT = 1;
export const TOP_P_MIN_EXCLUSIVE = 0;
export const TOP_P_MAX = 1;
export const TOP_P_DEFAULT = 1;
export const SEED_MIN = 0;
export const SEED_MAX = 0xffff_ffff;
/** Choices per request (`n`): each is a request on the decode worker, so n multiplies the work of one request. */
export const MAX_N = 16;
export const MAX_STOP_SEQUENCES = 4;
/** OpenAI's range of frequency_penalty and presence_penalty. */
export const PENALTY_MIN = -2;
export const PENALTY_MAX = 2;
/** repetition_penalty (vLLM's extension, CTRL's penalty): > 0; the upper end is ours. */
export const REPETITION_PENALTY_MIN_EXCLUSIVE = 0;
export const REPETITION_PENALTY_MAX = 10;
/** OpenAI's range of a logit_bias value, and the most entries we take (OpenAI documents none; vLLM none either). */
export const LOGIT_BIAS_MIN = -100;
export const LOGIT_BIAS_MAX = 100;
export const MAX_LOGIT_BIAS_ENTRIES = 1024;
/** top_logprobs (chat) and logprobs (completions): OpenAI's chat limit, also for completions (OpenAI's is 5; vLLM's 20). */
export const MAX_TOP_LOGPROBS = 20;
/** stop_token_ids (vLLM's extension): the most ids a request may list. */
export const MAX_STOP_TOKEN_IDS = 64;
export const MAX_STOP_SEQUENCE_CHARS = 256;
export const MAX_MESSAGES = 1024;
export const MAX_USER_CHARS = 256;
/** Tools per request (OpenAI's limit) and tool calls per assistant message sent back. */
export const MAX_TOOLS = 128;
export const MAX_TOOL_CALLS = 128;
/** Completions default to 16 new tokens, as OpenAI's legacy endpoint does. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
/** Chat defaults to the rest of the context, capped here. */
export const CHAT_DEFAULT_MAX_TOKENS = 1024;

/** Server-wide limits, set by flags. */
export interface ServerLimits {
  /** Largest accepted body, bytes (413 request_too_large beyond, connection closed). */
  maxBodyBytes: number;
  /** Largest prompt, tokens (400 context_length_exceeded beyond); also bounded by the model's context. */
  maxPromptTokens: number;
  /** The model's context length: prompt + max_tokens must fit. */
  contextLength: number;
  /** Per-request deadline. */
  requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxBodyBytes: 1 << 20,
  maxPromptTokens: 4096,
  contextLength: 4096,
  requestTimeoutMs: 300_000,
};
