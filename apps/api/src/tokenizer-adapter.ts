// TextCodec over @trtd/tokenizer. Tokenizer errors caused by client input become 400s here.
import { Tokenizer, TokenizerError, type ChatMessage as TokChatMessage } from "@trtd/tokenizer";
import { ApiErrorCodes, InvalidRequestError } from "./errors.js";
import type { ChatMessage, StreamingDetokenizer, TextCodec } from "./text-codec.js";

function clientError(err: unknown, param: string): never {
  if (err instanceof TokenizerError) {
    throw new InvalidRequestError(err.message, param, ApiErrorCodes.invalidValue, { cause: err });
  }
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
    return this.tokenizer.encodeAsync(text, { disallowedSpecial: "text", signal }).catch((err) => clientError(err, "prompt"));
  }

  async encodeChat(messages: ChatMessage[], signal?: AbortSignal): Promise<number[]> {
    return this.tokenizer.encodeChatAsync(messages as TokChatMessage[], { signal }).catch((err) => clientError(err, "messages"));
  }

  checkTokenIds(ids: number[]): void {
    try {
      this.tokenizer.decodeBytes(ids);
    } catch (err) {
      clientError(err, "prompt");
    }
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
