// Full validation of a model directory: config, weights (headers only) and tokenizer.
import { readModelConfig, parameterCount, type ModelConfig } from "./config.js";
import { ModelWeights } from "./weights.js";
import { checkTokenizerFiles, type CheckTokenizerOptions, type TokenizerInfo } from "./tokenizer-files.js";
import { UnsupportedDtypeError } from "./errors.js";
import { safetensorsToTorchDtype, type SafetensorsDtype } from "./dtype.js";

export interface ModelDirReport {
  dir: string;
  config: ModelConfig;
  /** Weight files relative to dir (shards, or model.safetensors) and the index file if any. */
  weightFiles: string[];
  indexFile: string | null;
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
  let tensorCount: number;
  try {
    weights.checkAgainst(config);
    dtypes = weights.dtypes();
    tensorCount = weights.tensorNames.length;
  } finally {
    weights.close();
  }
  const warnings: string[] = [];
  if (dtypes.length > 1) {
    throw new UnsupportedDtypeError(dtypes.join("+"), `weights of ${dir} mix dtypes (${dtypes.join(", ")}); the executor expects one dtype`);
  }
  const stored = safetensorsToTorchDtype(dtypes[0]);
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
