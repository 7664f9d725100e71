"""Writes a tiny random-weight model of an architecture with transformers' own save_pretrained (config.json in
transformers 5's layout, float32 safetensors), and transformers' logits for a prompt at every position, as the
fixture the architecture's tests compare the float64 reference and the CPU executor with:
  qwen2: Llama's layer with biases on q, k and v;
  qwen3: per-head RMSNorm of q and k (q_norm, k_norm) before RoPE, head_dim not hidden / heads;
  mistral: a sliding window of 5 positions over a 12-token prompt;
  llama-fp8-channel, llama-fp8-tensor: a Llama (llama3 RoPE) whose decoder linear layers are quantized to FP8 E4M3
    and saved in the compressed-tensors "float-quantized" layout that llm-compressor writes (as published for
    Llama-3.1-8B-Instruct FP8): per output channel with F32 weight_scale [out, 1], weight-only, untied lm_head; or
    per tensor with a scalar BF16 weight_scale and a static per-tensor input_scale, tied embeddings. The rest
    (embedding, norms, lm_head) is stored in bf16. The logits are LlamaForCausalLM's in float32 on the DEQUANTIZED
    weights (torch's float8_e4m3fn -> float32, times the stored scale) and the bf16 values of the rest; and in
    hf-logits-w8a8.json, the same with the quantized layers' inputs quantized to E4M3 per row (W8A8, as the CUDA
    executor runs prompts of more than 8 rows), in float32 and in bfloat16.

    python tools/reference/hf_model_fixture.py qwen2 packages/model/test/fixtures/qwen2-tiny
    python tools/reference/hf_model_fixture.py qwen3 packages/model/test/fixtures/qwen3-tiny
    python tools/reference/hf_model_fixture.py mistral packages/model/test/fixtures/mistral-tiny
    python tools/reference/hf_model_fixture.py llama-fp8-channel packages/model/test/fixtures/llama-fp8-channel-tiny
    python tools/reference/hf_model_fixture.py llama-fp8-tensor packages/model/test/fixtures/llama-fp8-tensor-tiny

Needs torch and transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import copy
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quant_args(strategy, dynamic):
    """A config group's weights / input_activations entry as llm-compressor writes it."""
    return {"actorder": None, "block_structure": None, "dynamic": dynamic, "group_size": None, "num_bits": 8,
            "observer": "minmax", "observer_kwargs": {}, "strategy": strategy, "symmetric": True, "type": "float"}


def write_logits(model, out):
    prompt = [int(x) for x in torch.randint(0, model.config.vocab_size, (12,), generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].double()
    with open(os.path.join(out, "hf-logits.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "prompt": prompt,
                   "logits": [[float(v) for v in row] for row in logits]}, f)
        f.write("\n")
    return prompt


def quantize_rows_e4m3(x):
    """Each row of x (the last dimension) quantized to E4M3 and back with the scale amax / 448 (1 for a zero row):
    what the CUDA executor's W8A8 GEMMs do to their input rows (fp8.cu, quantize_rows_k: x * (1 / scale), rounded to
    the nearest E4M3 value, saturating)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (x.float() * (1.0 / scale)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return (q.float() * scale).to(x.dtype)


def write_w8a8_logits(model, out, prompt):
    """hf-logits-w8a8.json: the same model and prompt with the input of every quantized linear layer quantized per
    row by quantize_rows_e4m3 (forward pre-hooks on transformers' own modules), in float32 ("logits") and with the
    model in bfloat16 ("logits_bf16"): W8A8 as the CUDA executor runs prompts of more than 8 rows. On a model this
    small the two land ~0.1 (rel. L2) apart: a bf16 rounding that moves an activation across an E4M3 rounding
    boundary changes it by a whole step, so two faithful W8A8 runs differ by about that much."""
    def run(m):
        hooks = [mod.register_forward_pre_hook(lambda _m, args: (quantize_rows_e4m3(args[0]),) + tuple(args[1:]))
                 for name, mod in m.named_modules() if name.startswith("model.layers.") and name.split(".")[-1] in LINEARS]
        try:
            with torch.no_grad():
                return m(torch.tensor([prompt])).logits[0].double()
        finally:
            for h in hooks:
                h.remove()

    logits, logits_bf16 = run(model), run(copy.deepcopy(model).to(torch.bfloat16))
    with open(os.path.join(out, "hf-logits-w8a8.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "prompt": prompt, "activations": "E4M3 per row, amax / 448",
                   "logits": [[float(v) for v in row] for row in logits],
                   "logits_bf16": [[float(v) for v in row] for row in logits_bf16]}, f)
        f.write("\n")


def fp8_main(variant, out):
    if variant not in ("channel", "tensor"):
        raise SystemExit(f"unknown FP8 variant {variant} (channel, tensor)")
    per_channel = variant == "channel"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
                      tie_word_embeddings=not per_channel, bos_token_id=None, eos_token_id=383)
    model = LlamaForCausalLM(cfg).float().eval()
    tensors = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.15)
            if name.startswith("model.layers.") and name.split(".")[-2] in LINEARS:
                prefix = name[: -len(".weight")]
                if per_channel:
                    scale = (p.abs().amax(dim=1, keepdim=True) / FP8_MAX).float()  # [out, 1] F32
                else:
                    scale = (p.abs().max() / FP8_MAX).to(torch.bfloat16)  # [] BF16: the scale as stored
                q = (p / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
                p.copy_(q.float() * scale.float())  # the dequantized weight the logits are computed with
                tensors[name] = q.contiguous()
                tensors[prefix + ".weight_scale"] = scale.contiguous()
                if not per_channel:
                    tensors[prefix + ".input_scale"] = torch.tensor([0.0125], dtype=torch.float32)  # static, unused
            else:
                stored = p.to(torch.bfloat16)
                p.copy_(stored.float())
                tensors[name] = stored.contiguous()
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    model.config.dtype = torch.bfloat16
    model.config.architectures = ["LlamaForCausalLM"]  # save_pretrained of a model sets it; of a config, not
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    path = os.path.join(out, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["quantization_config"] = {
        "config_groups": {"group_0": {
            "input_activations": None if per_channel else quant_args("tensor", False),
            "output_activations": None,
            "targets": ["Linear"],
            "weights": quant_args("channel" if per_channel else "tensor", False),
        }},
        "format": "float-quantized",
        "global_compression_ratio": None,
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
    }
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    prompt = write_logits(model, out)
    write_w8a8_logits(model, out, prompt)
    print(f"wrote {out} ({transformers.__version__}, torch {torch.__version__}); prompt {prompt}")


def main():
    family, out = sys.argv[1], sys.argv[2]
    if family.startswith("llama-fp8-"):
        return fp8_main(family[len("llama-fp8-"):], out)
    torch.manual_seed(0)
    common = dict(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=383)
    if family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=32))  # 4 heads x 32 != hidden 64, as Qwen3 models have
    elif family == "mistral":
        del common["use_sliding_window"]
        model = MistralForCausalLM(MistralConfig(**common, sliding_window=5))
    else:
        raise SystemExit(f"unknown family {family}")
    cfg = model.config
    model = model.float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)  # large enough that a reader that drops the biases is far off
            elif "norm" in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.15)
    model.save_pretrained(out, safe_serialization=True)
    prompt = write_logits(model, out)
    print(f"wrote {out} ({transformers.__version__}); prompt {prompt}")


if __name__ == "__main__":
    main()
