/** Failure codes of the benchmark tool; one Error subclass per failure below. */
export const BenchErrorCodes = {
  InvalidOption: "INVALID_OPTION",
  InvalidDistribution: "INVALID_DISTRIBUTION",
  PromptsFile: "PROMPTS_FILE",
  SseProtocol: "SSE_PROTOCOL",
  ServerStartup: "SERVER_STARTUP",
} as const;
export type BenchErrorCode = (typeof BenchErrorCodes)[keyof typeof BenchErrorCodes];

export class BenchError extends Error {
  readonly code: BenchErrorCode;
  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BenchError";
    this.code = code;
  }
}

/** A CLI flag or run option that is missing, malformed or out of range. */
export class InvalidOptionError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BenchErrorCodes.InvalidOption, message, options);
    this.name = "InvalidOptionError";
  }
}

/** A length-distribution spec such as `uniform:100:200` that cannot be parsed. */
export class InvalidDistributionError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BenchErrorCodes.InvalidDistribution, message, options);
    this.name = "InvalidDistributionError";
  }
}

/** A prompts file that cannot be read or holds no usable prompt. */
export class PromptsFileError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BenchErrorCodes.PromptsFile, message, options);
    this.name = "PromptsFileError";
  }
}

/** A server-sent event stream that breaks the protocol (bad JSON in a data frame, oversized frame). */
export class SseProtocolError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BenchErrorCodes.SseProtocol, message, options);
    this.name = "SseProtocolError";
  }
}

/** A process the experiment starts (nats-server, the launcher) that did not come up in time. */
export class ServerStartupError extends BenchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BenchErrorCodes.ServerStartup, message, options);
    this.name = "ServerStartupError";
  }
}
