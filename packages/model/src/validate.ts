// Full validation of a model directory: config, weights (headers only) and tokenizer.
import { readModelConfig, parameterCount, type ModelConfig } from "./config.js";
import { ModelWeights } from "./weights.js";
import { checkTokenizerFiles, type CheckTokenizerOptions, type TokenizerInfo } from "./tokenizer-files.js";
import { UnsupportedDtypeError } from "./errors.js";
import { isQuantizedLinear } from "./fp8.js";
import { safetensorsToTorchDtype, type SafetensorsDtype } from "./dtype.js";

export interface ModelDirReport {
  dir: string;
  config: ModelConfig;
  /** Weight files relative to dir (shards, or model.safetensors) and the index file if any. */
  weightFiles: string[];
  indexFile: string | null;
  /** Distinct stored dtypes (an FP8 checkpoint: F8_E4M3, its scales' and the model dtype). */
  dtypes: SafetensorsDtype[];
  tensorCount: number;
  parameterCount: number;
  tokenizer: TokenizerInfo;
  /** Non-fatal findings (e.g. no chat template, torch_dtype differs from the stored dtype). */
  warnings: string[];
}

/**
 * Validates everything the executor and tokenizer need, reading only file headers. Throws the typed error of the
 * first problem (UnsupportedArchitectureError, MissingFileError, MissingTensorError, ShapeMismatchError, ...).
 */
export function validateModelDir(dir: string, options: CheckTokenizerOptions = {}): ModelDirReport {
  const config = readModelConfig(dir);
  const weights = ModelWeights.open(dir);
  let dtypes: SafetensorsDtype[];
  let modelDtypes: SafetensorsDtype[];
  let tensorCount: number;
  try {
    weights.checkAgainst(config);
    dtypes = weights.dtypes();
    // The FP8 weights and their scales aside, one dtype for the rest (embedding, norms, lm_head).
    const rest = new Set<SafetensorsDtype>();
    for (const name of weights.tensorNames) {
      if (!(config.fp8 && (isQuantizedLinear(name) || /\.(weight|input)_scale$/.test(name)))) rest.add(weights.info(name)!.dtype);
    }
    modelDtypes = [...rest].sort();
    tensorCount = weights.tensorNames.length;
  } finally {
    weights.close();
  }
  const warnings: string[] = [];
  if (modelDtypes.length > 1) {
    throw new UnsupportedDtypeError(modelDtypes.join("+"), `weights of ${dir} mix dtypes (${modelDtypes.join(", ")}); the executor expects one dtype`);
  }
  const stored = safetensorsToTorchDtype(modelDtypes[0]);
  if (stored !== config.torchDtype) warnings.push(`config.json torch_dtype is ${config.torchDtype} but the weights are stored as ${stored}`);
  const tokenizer = checkTokenizerFiles(dir, config, options);
  if (!tokenizer.hasChatTemplate) warnings.push("tokenizer_config.json has no chat_template (chat completions will not work)");
  if (config.eosTokenIds.length === 0) warnings.push("config.json has no eos_token_id");
  return {
    dir,
    config,
    weightFiles: weights.files,
    indexFile: weights.indexFile,
    dtypes,
    tensorCount,
    parameterCount: parameterCount(config),
    tokenizer,
    warnings,
  };
}
