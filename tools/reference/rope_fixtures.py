"""Writes the RoPE inverse frequencies and attention factors that transformers computes for a set of config.json
variants (both layouts: top-level rope_theta / rope_scaling, and transformers 5's rope_parameters), as the fixture
that packages/model/test/rope.test.ts checks the float64 reference's config reader against (and, through it, the
executors' reader, whose logits the trtllm suites compare with the reference).

    python tools/reference/rope_fixtures.py packages/model/test/fixtures/rope-hf.json

Needs torch and transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import json
import sys

import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

BASE = dict(vocab_size=128, hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096)

CASES = {
    "default, old layout": dict(rope_theta=10000.0),
    "default, rope_parameters": dict(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "llama3, old layout": dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}),
    "llama3, rope_parameters": dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 512}),
    "llama3, original from max_position_embeddings": dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                                           "factor": 8.0, "low_freq_factor": 1.0,
                                                                           "high_freq_factor": 4.0}),
    "linear, old layout (type key)": dict(rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 4.0}),
    "linear, rope_parameters": dict(rope_parameters={"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0}),
    "dynamic, rope_parameters": dict(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
    "yarn, old layout": dict(rope_theta=1000000.0, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                                 "original_max_position_embeddings": 1024}),
    "yarn, rope_parameters with mscale": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                                               "original_max_position_embeddings": 1024, "beta_fast": 32,
                                                               "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
    "yarn, attention_factor and no truncation": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0,
                                                                      "factor": 8.0, "original_max_position_embeddings": 512,
                                                                      "attention_factor": 1.25, "truncate": False,
                                                                      "beta_fast": 16, "beta_slow": 2}),
    "yarn, factor from the context lengths": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": None,
                                                                   "original_max_position_embeddings": 1024}),
}


def main():
    out = {"transformers": transformers.__version__, "base": BASE, "cases": []}
    for name, extra in CASES.items():
        cfg = LlamaConfig(**BASE, **extra)
        config_json = cfg.to_dict()
        # The config.json exactly as save_pretrained writes it (the layout under test), and what transformers makes of it.
        raw = {k: v for k, v in {**BASE, **extra}.items()}
        rope_type = cfg.rope_parameters.get("rope_type", "default")
        inv, attention = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu") if rope_type != "default" else (None, 1.0)
        if inv is None:
            base = cfg.rope_parameters["rope_theta"]
            dim = cfg.hidden_size // cfg.num_attention_heads
            import torch
            inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        out["cases"].append({"name": name, "config": raw, "saved_rope_parameters": config_json.get("rope_parameters"),
                             "inv_freq": [float(x) for x in inv], "attention_factor": float(attention)})
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(out['cases'])} cases ({transformers.__version__}) to {sys.argv[1]}")


if __name__ == "__main__":
    main()
