export { Tokenizer, ASYNC_ENCODE_THRESHOLD_CHARS } from "./tokenizer.js";
export { IncrementalDetokenizer, MAX_STOP_STRINGS, MAX_STOP_LENGTH } from "./detokenizer.js";
export { LLAMA3_CHAT_TEMPLATE, PLAIN_TEMPLATE, normalizeMessages } from "./chat-template.js";
export { ENCODING_NAMES, LLAMA3_PATTERN, llama3DefaultSpecials } from "./encodings.js";
export { validateRanksText } from "./ranks-file.js";
export {
  TokenizerErrorCode,
  TokenizerError,
  isClientInputError,
  ModelDirError,
  RanksFormatError,
  UnknownEncodingError,
  SpecialTokensError,
  SpecialTokenNotAllowedError,
  InvalidTokenIdError,
  ChatTemplateError,
  InvalidMessagesError,
  InvalidOptionsError,
  TokenizerFreedError,
  EncodeTimeoutError,
  EncodeAbortedError,
  EncodeWorkerError,
  DetokenizerFinishedError,
} from "./errors.js";

export type {
  EncodeOptions,
  EncodeAsyncOptions,
  DecodeOptions,
  EncodeChatOptions,
  TokenizerOptions,
  RanksOptions,
} from "./tokenizer.js";
export type { DetokenizerOptions, DetokenizerOutput, TokenSource } from "./detokenizer.js";
export type { ChatMessage, ChatContentPart, ChatTemplateOptions } from "./chat-template.js";
export type { EncodingName } from "./encodings.js";
export type { RanksInfo } from "./ranks-file.js";
