"""Writes a tiny random-weight Qwen2 model with transformers' own save_pretrained (config.json in transformers 5's
layout, float32 safetensors), and transformers' logits for a prompt at every position, as the fixture the Qwen2
tests compare the float64 reference and the CPU executor with (QKV bias is what Qwen2 adds to Llama).

    python tools/reference/qwen2_fixture.py packages/model/test/fixtures/qwen2-tiny

Needs torch and transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import json
import os
import sys

import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, rope_theta=1000000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=383)
    model = Qwen2ForCausalLM(cfg).float().eval()
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
