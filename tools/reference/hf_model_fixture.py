"""Writes a tiny random-weight model of an architecture with transformers' own save_pretrained (config.json in
transformers 5's layout, float32 safetensors), and transformers' logits for a prompt at every position, as the
fixture the architecture's tests compare the float64 reference and the CPU executor with:
  qwen2: Llama's layer with biases on q, k and v;
  qwen3: per-head RMSNorm of q and k (q_norm, k_norm) before RoPE, head_dim not hidden / heads;
  mistral: a sliding window of 5 positions over a 12-token prompt.

    python tools/reference/hf_model_fixture.py qwen2 packages/model/test/fixtures/qwen2-tiny
    python tools/reference/hf_model_fixture.py qwen3 packages/model/test/fixtures/qwen3-tiny
    python tools/reference/hf_model_fixture.py mistral packages/model/test/fixtures/mistral-tiny

Needs torch and transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import json
import os
import sys

import torch
import transformers
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM


def main():
    family, out = sys.argv[1], sys.argv[2]
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
    prompt = [int(x) for x in torch.randint(0, cfg.vocab_size, (12,), generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].double()
    with open(os.path.join(out, "hf-logits.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "prompt": prompt,
                   "logits": [[float(v) for v in row] for row in logits]}, f)
        f.write("\n")
    print(f"wrote {out} ({transformers.__version__}); prompt {prompt}")


if __name__ == "__main__":
    main()
