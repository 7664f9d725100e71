// @trtd/model: the model directory format (HF Llama layout), safetensors I/O, validation, generated models and
// the float64 reference forward pass.
export {
  ModelErrorCode,
  ModelError,
  UnsupportedArchitectureError,
  InvalidConfigError,
  MissingFileError,
  MissingTensorError,
  UnexpectedTensorError,
  ShapeMismatchError,
  MalformedSafetensorsError,
  UnsupportedDtypeError,
  TokenizerNotFoundError,
  InvalidTokenizerError,
} from "./errors.js";
export {
  DTYPE_BYTES,
  isSafetensorsDtype,
  isTorchDtype,
  torchToSafetensorsDtype,
  safetensorsToTorchDtype,
  float32ToBf16Bits,
  bf16BitsToFloat32,
  float32ToF16Bits,
  f16BitsToFloat32,
  bytesToFloat32,
  float32ToBytes,
  e4m3BitsToFloat32,
  float32ToE4m3Bits,
  FP8_E4M3_MAX,
} from "./dtype.js";
export { isQuantizedLinear, parseQuantizationConfig, fp8QuantizationConfig, quantizeFp8, dequantizeFp8 } from "./fp8.js";
export {
  numel,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  readSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  writeSafetensors,
  SafetensorsFile,
} from "./safetensors.js";
export { readModelConfig, parseModelConfig, expectedTensorShapes, parameterCount } from "./config.js";
export { ModelWeights, writeShardedSafetensors, SINGLE_FILE, INDEX_FILE } from "./weights.js";
export { loadModel, loadedModelFromGenerated } from "./load.js";
export { checkTokenizerFiles, checkTiktokenRanks, locateTokenizer, readChatTemplate, TIKTOKEN_ENCODINGS, type TokenizerSource } from "./tokenizer-files.js";
export { validateModelDir } from "./validate.js";
export { modelDirIdentity, weightsIdentity, tokenizerIdentity, IDENTITY_SAMPLE_BYTES, type ModelDirIdentity } from "./identity.js";
export {
  generateModel,
  generatedModelFiles,
  writeModelDir,
  MODEL_PRESETS,
  CHATML_SPECIAL_TOKENS,
  CL100K_REGULAR_TOKENS,
  GENERATED_VOCAB_SIZE,
} from "./generate.js";
export { CHATML_TEMPLATE } from "./chat-template.js";
export { KV_DTYPES, KV_LAYOUT_FIELDS, isKvDtype } from "./kv-layout.js";
export { prefixBlockHashes } from "./prefix-hash.js";
export { Rng, hashString } from "./prng.js";
export { referenceForward, ropeInverseFrequencies, ropeAttentionFactor, argmax } from "./reference.js";

export type { SafetensorsDtype, TorchDtype } from "./dtype.js";
export type { KvDtype, KvLayout } from "./kv-layout.js";
export type { TensorInfo, SafetensorsHeader, Tensor, TensorInput, WriteSafetensorsOptions } from "./safetensors.js";
export type { Fp8Config } from "./fp8.js";
export type { ModelConfig, Llama3RopeScaling, RopeScaling, LinearRopeScaling, DynamicRopeScaling, YarnRopeScaling } from "./config.js";
export type { LoadedModel } from "./load.js";
export type { WriteShardedOptions } from "./weights.js";
export type { TokenizerInfo, CheckTokenizerOptions } from "./tokenizer-files.js";
export type { ModelDirReport } from "./validate.js";
export type { ModelDims, GenerateModelOptions, GeneratedModel, WriteModelDirOptions } from "./generate.js";
export type { ReferenceForwardOptions, ReferenceForwardResult } from "./reference.js";
