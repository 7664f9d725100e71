/** Error codes of @trtd/model, one per failure class. */
export const ModelErrorCode = {
  UnsupportedArchitecture: "UNSUPPORTED_ARCHITECTURE",
  InvalidConfig: "INVALID_CONFIG",
  MissingFile: "MISSING_FILE",
  MissingTensor: "MISSING_TENSOR",
  UnexpectedTensor: "UNEXPECTED_TENSOR",
  ShapeMismatch: "SHAPE_MISMATCH",
  MalformedSafetensors: "MALFORMED_SAFETENSORS",
  UnsupportedDtype: "UNSUPPORTED_DTYPE",
  TokenizerNotFound: "TOKENIZER_NOT_FOUND",
  InvalidTokenizer: "INVALID_TOKENIZER",
} as const;
export type ModelErrorCode = (typeof ModelErrorCode)[keyof typeof ModelErrorCode];

/** Base class: every error thrown by @trtd/model for bad input is a ModelError with a `code`. */
export class ModelError extends Error {
  readonly code: ModelErrorCode;
  constructor(code: ModelErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ModelError";
    this.code = code;
  }
}

/** config.json names an architecture, model type or feature the executor does not implement. */
export class UnsupportedArchitectureError extends ModelError {
  /** The config field refused, where one is (e.g. "quantization_config.format"). */
  readonly field?: string;
  constructor(message: string, options?: ErrorOptions & { field?: string }) {
    super(ModelErrorCode.UnsupportedArchitecture, message, options);
    this.name = "UnsupportedArchitectureError";
    this.field = options?.field;
  }
}

/** config.json is unreadable, not JSON, or has a missing / invalid field. */
export class InvalidConfigError extends ModelError {
  readonly field?: string;
  constructor(message: string, options?: ErrorOptions & { field?: string }) {
    super(ModelErrorCode.InvalidConfig, message, options);
    this.name = "InvalidConfigError";
    this.field = options?.field;
  }
}

/** A file the model directory needs is absent. */
export class MissingFileError extends ModelError {
  readonly path: string;
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(ModelErrorCode.MissingFile, message, options);
    this.name = "MissingFileError";
    this.path = path;
  }
}

/** A tensor the config requires is not in the weights. */
export class MissingTensorError extends ModelError {
  readonly tensor: string;
  constructor(tensor: string, message: string, options?: ErrorOptions) {
    super(ModelErrorCode.MissingTensor, message, options);
    this.name = "MissingTensorError";
    this.tensor = tensor;
  }
}

/** The weights hold a tensor the Llama layout does not know (e.g. a bias the executor would ignore). */
export class UnexpectedTensorError extends ModelError {
  readonly tensor: string;
  constructor(tensor: string, message: string, options?: ErrorOptions) {
    super(ModelErrorCode.UnexpectedTensor, message, options);
    this.name = "UnexpectedTensorError";
    this.tensor = tensor;
  }
}

/** A tensor's shape differs from what config.json implies. */
export class ShapeMismatchError extends ModelError {
  readonly tensor: string;
  readonly expected: readonly number[];
  readonly actual: readonly number[];
  constructor(tensor: string, expected: readonly number[], actual: readonly number[], options?: ErrorOptions) {
    super(
      ModelErrorCode.ShapeMismatch,
      `tensor ${tensor} has shape [${actual.join(", ")}], expected [${expected.join(", ")}]`,
      options,
    );
    this.name = "ShapeMismatchError";
    this.tensor = tensor;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A .safetensors file (or its index) is not well formed. */
export class MalformedSafetensorsError extends ModelError {
  readonly path?: string;
  constructor(message: string, options?: ErrorOptions & { path?: string }) {
    super(ModelErrorCode.MalformedSafetensors, options?.path ? `${options.path}: ${message}` : message, options);
    this.name = "MalformedSafetensorsError";
    this.path = options?.path;
  }
}

/** A tensor dtype (or torch_dtype) other than F32 / F16 / BF16, or F8_E4M3 where the config does not quantize. */
export class UnsupportedDtypeError extends ModelError {
  readonly dtype: string;
  constructor(dtype: string, message: string, options?: ErrorOptions) {
    super(ModelErrorCode.UnsupportedDtype, message, options);
    this.name = "UnsupportedDtypeError";
    this.dtype = dtype;
  }
}

/** Neither tokenizer.model nor tokenizer_config.json `tiktoken_encoding` is present. */
export class TokenizerNotFoundError extends ModelError {
  constructor(message: string, options?: ErrorOptions) {
    super(ModelErrorCode.TokenizerNotFound, message, options);
    this.name = "TokenizerNotFoundError";
  }
}

/** tokenizer.model / tokenizer_config.json exist but are malformed or disagree with config.json. */
export class InvalidTokenizerError extends ModelError {
  constructor(message: string, options?: ErrorOptions) {
    super(ModelErrorCode.InvalidTokenizer, message, options);
    this.name = "InvalidTokenizerError";
  }
}
