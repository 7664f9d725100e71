// Loading a whole model into memory as float32 tensors, validated against its config.
import { readModelConfig, type ModelConfig, expectedTensorShapes } from "./config.js";
import { ModelWeights } from "./weights.js";
import type { GeneratedModel } from "./generate.js";

/** A model in memory: validated config and float32 weights by HF tensor name (tied models have no lm_head). */
export interface LoadedModel {
  config: ModelConfig;
  tensors: Map<string, Float32Array>;
}

/**
 * Reads config.json and all weights of a model directory (any of F32/F16/BF16, single file or sharded). An FP8
 * checkpoint's linear layers come back dequantized (e4m3 * scale, in float32, as the executors compute them), so
 * `tensors` holds the dequantized model and no weight scales.
 */
export function loadModel(dir: string): LoadedModel {
  const config = readModelConfig(dir);
  const weights = ModelWeights.open(dir);
  try {
    weights.checkAgainst(config);
    const tensors = new Map<string, Float32Array>();
    for (const name of expectedTensorShapes(config).keys()) {
      if (config.fp8 && name.endsWith(".weight_scale")) continue; // folded into their layers
      tensors.set(name, weights.readWeight(name, config));
    }
    return { config, tensors };
  } finally {
    weights.close();
  }
}

/** Views a generated (not yet written) model as a LoadedModel, sharing its buffers. */
export function loadedModelFromGenerated(model: GeneratedModel): LoadedModel {
  const tensors = new Map<string, Float32Array>();
  for (const [name, t] of model.tensors) tensors.set(name, t.data);
  return { config: model.modelConfig, tensors };
}
