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
