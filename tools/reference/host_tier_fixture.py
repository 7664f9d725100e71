"""Writes transformers' greedy continuations of the prompts packages/trtllm/test/host-kv-tier.test.ts runs through the
host KV tier, so that output whose prefix came back from the tier is checked against an implementation nobody here
wrote (not only against the executor without a cache):

    python tools/reference/host_tier_fixture.py models/tiny packages/trtllm/test/fixtures/host-tier-hf.json

The prompts are pseudoTokens(49, 900 + i), i = 0..5 (tools/test-support/src/prng.ts), recomputed here with the same
32-bit recurrence; the test checks both the prompts and the model's sha256.
Needs torch and transformers (a CPU venv).
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import LlamaForCausalLM

MAX_NEW = 8
M32 = 0xFFFFFFFF


def pseudo_tokens(n, salt, vocab=100_000):
    """pseudoTokens() of prng.ts: x = salt * 2654435761; x = imul(x ^ (x >>> 15), 2246822519) + 374761393, all mod 2^32."""
    out, x = [], (salt * 2654435761) & M32
    for _ in range(n):
        x = (((x ^ (x >> 15)) * 2246822519) + 374761393) & M32
        out.append(x % vocab)
    return out


def main(model_dir, out_path):
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    cases = []
    with torch.no_grad():
        for i in range(6):
            p = pseudo_tokens(49, 900 + i)
            out = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=0,
                                 eos_token_id=[model.config.vocab_size - 1])
            cases.append({"prompt": p, "tokens": [int(t) for t in out[0][len(p):]]})
    sha = hashlib.sha256(open(os.path.join(model_dir, "model.safetensors"), "rb").read()).hexdigest()
    with open(out_path, "w") as f:
        json.dump({"transformers": transformers.__version__, "model_sha256": sha, "max_new_tokens": MAX_NEW, "cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
