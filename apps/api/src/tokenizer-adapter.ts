// TextCodec over @trtd/tokenizer. Tokenizer errors are split here: those the client's input causes (the tokenizer
// package's isClientInputError: bad token ids, special-token text, messages the template refuses) become 400
// invalid_value naming the field; the others (encode worker crashed or timed out, tokenizer freed) are the
// server's, 500 tokenizer_failed.
import { Tokenizer, TokenizerError, isClientInputError, type ChatMessage as TokChatMessage } from "@trtd/tokenizer";
import { ApiErrorCodes, InvalidRequestError, TokenizerFailedError } from "./errors.js";
import type { ChatEncodeOptions, ChatMessage, StreamingDetokenizer, TextCodec } from "./text-codec.js";

function tokenizerError(err: unknown, param: string): never {
  if (isClientInputError(err)) throw new InvalidRequestError(err.message, param, ApiErrorCodes.invalidValue, { cause: err });
  if (err instanceof TokenizerError) throw new TokenizerFailedError(`tokenizer failed: ${err.message}`, { cause: err });
  throw err;
}

export class TokenizerCodec implements TextCodec {
  readonly eosTokenIds: number[];
  constructor(readonly tokenizer: Tokenizer) {
    this.eosTokenIds = [...tokenizer.eosTokenIds];
  }

  static fromModelDir(dir: string): TokenizerCodec {
    return new TokenizerCodec(Tokenizer.fromModelDir(dir));
  }

  async encode(text: string, signal?: AbortSignal): Promise<number[]> {
    // Special-token text in a raw completion prompt is treated as plain text, never as control tokens.
    return this.tokenizer.encodeAsync(text, { disallowedSpecial: "text", signal }).catch((err) => tokenizerError(err, "prompt"));
  }

  async encodeChat(messages: ChatMessage[], options: ChatEncodeOptions = {}): Promise<number[]> {
    const { tools, signal } = options;
    return this.tokenizer.encodeChatAsync(messages as unknown as TokChatMessage[], { tools, signal }).catch((err) => tokenizerError(err, "messages"));
  }

  checkTokenIds(ids: number[], param = "prompt"): void {
    try {
      this.tokenizer.decodeBytes(ids);
    } catch (err) {
      tokenizerError(err, param);
    }
  }

  tokenBytes(id: number): Uint8Array {
    return this.tokenizer.decodeBytes([id]);
  }

  createDetokenizer(stop: string[]): StreamingDetokenizer {
    const d = this.tokenizer.createDetokenizer({ stop });
    return {
      push: (ids) => {
        const out = d.push(ids);
        return { text: out.text, stopped: out.stopped !== undefined };
      },
      finish: () => d.flush().text,
    };
  }

  free(): void {
    this.tokenizer.free();
  }
}
