// What the api needs from a tokenizer. `tokenizer-adapter.ts` implements it over @trtd/tokenizer; the HTTP
// layer and the generation loop only see this interface.

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
  /** An assistant message's calls, arguments as an object (templates write them with `tojson`). */
  tool_calls?: ChatToolCall[];
  /** A tool message's answer to this call id. */
  tool_call_id?: string;
}

export interface ChatToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: Record<string, unknown> };
}

/** A tool as OpenAI's `tools` entries give it; chat templates read this shape. */
export interface ChatTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

export interface ChatEncodeOptions {
  /** Tools for the chat template (templates that support tool calling render them). */
  tools?: ChatTool[];
  signal?: AbortSignal;
}

export interface StreamingDetokenizer {
  /** Adds generated tokens; returns the text that is safe to emit now and whether a stop string was reached
   * (the text then ends just before the stop string). */
  push(tokens: number[]): { text: string; stopped: boolean };
  /** Releases the text held back at the end (an incomplete UTF-8 sequence or a possible stop-string prefix). */
  finish(): string;
}

export interface TextCodec {
  /** Token ids that end generation (the model's eos ids). */
  readonly eosTokenIds: number[];
  /** Tokenizes client text; bad input throws InvalidRequestError. */
  encode(text: string, signal?: AbortSignal): Promise<number[]>;
  /** Renders messages (and tools) with the model's chat template (generation prompt appended) and tokenizes it. */
  encodeChat(messages: ChatMessage[], options?: ChatEncodeOptions): Promise<number[]>;
  /** Checks client-given token ids; bad ids throw InvalidRequestError naming `param` (default "prompt"). */
  checkTokenIds(ids: number[], param?: string): void;
  /** The bytes one token stands for (logprobs' `bytes`; a token may hold part of a UTF-8 character). */
  tokenBytes(id: number): Uint8Array;
  createDetokenizer(stop: string[]): StreamingDetokenizer;
}
