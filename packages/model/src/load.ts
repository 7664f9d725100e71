// Loading a whole model into memory as float32 tensors, validated against its config.
import { join } from "node:path";
import { readModelConfig, type ModelConfig, expectedTensorShapes } from "./config.js";
import { ModelWeights } from "./weights.js";
import { dequantizeFp8, isQuantizedLinear } from "./fp8.js";
import { MalformedSafetensorsError } from "./errors.js";
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
    const shapes = expectedTensorShapes(config);
    for (const [name, shape] of shapes) {
      if (name.endsWith(".weight_scale") && config.fp8) continue;
      if (config.fp8 && isQuantizedLinear(name)) {
        const scaleName = `${name.slice(0, -".weight".length)}.weight_scale`;
        const scales = weights.read(scaleName).data;
        for (const s of scales) {
          if (!(s > 0) || !Number.isFinite(s)) {
            throw new MalformedSafetensorsError(`tensor ${scaleName}: scales must be positive and finite`, { path: join(dir, weights.info(scaleName)!.file) });
          }
        }
        tensors.set(name, dequantizeFp8(weights.readBytes(name), scales, shape[0], shape[1]));
      } else {
        tensors.set(name, weights.read(name).data);
      }
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
