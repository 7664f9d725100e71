"""Writes what transformers' logits processors make of models/tiny's logits, as the fixture the executor's logit
controls and logprobs are compared with (packages/trtllm/test/logit-controls.test.ts):
  - greedy generate() with RepetitionPenaltyLogitsProcessor (repetition_penalty), SequenceBiasLogitsProcessor
    (sequence_bias of single ids: OpenAI's logit_bias) and MinNewTokensLengthLogitsProcessor (min_new_tokens, with
    eos ids chosen among the tokens the plain run draws, so the mask has something to hold back), alone and together;
  - the raw logprobs (log_softmax of the model's logits) of the plain greedy run's tokens, with the 20 best;
  - the ids MinPLogitsWarper keeps after TemperatureLogitsWarper for the next token of a prompt.

    python tools/reference/sampling_fixture.py models/tiny packages/trtllm/test/fixtures/logit-controls-hf.json

models/tiny is made from seed 0 (tools/prepare-model); the fixture records its weights' sha256, which the test checks.
Needs torch and transformers (a CPU venv from the local wheels: ../shared/STACK.md).
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import LlamaForCausalLM
from transformers.generation.logits_process import MinPLogitsWarper, TemperatureLogitsWarper

PROMPTS = [[9906, 1917, 11, 1268, 527, 499, 3815, 30], [791, 4062, 14198, 39935, 35308, 927, 279, 16053, 5679, 13, 791, 4062]]
MAX_NEW = 12


def greedy(model, prompt, **kw):
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=0,
                         output_logits=True, return_dict_in_generate=True, **kw)
    return [int(t) for t in out.sequences[0][len(prompt):]], out.logits


def main(model_dir, out_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    # The plain run must not stop on the model's eos: eos_token_id set to an id the tiny model never draws here.
    no_eos = dict(eos_token_id=[model.config.vocab_size - 1])
    cases, logprobs, min_p = [], [], []
    with torch.no_grad():
        for prompt in PROMPTS:
            plain, raw = greedy(model, prompt, **no_eos)
            lp = [torch.log_softmax(r[0].double(), -1) for r in raw]
            logprobs.append({"prompt": prompt, "tokens": plain, "steps": [
                {"logprob": float(l[t]), "top": [[int(i), float(l[i])] for i in torch.topk(l, 20).indices]}
                for t, l in zip(plain, lp)]})
            second = int(torch.topk(raw[0][0], 5).indices[4])  # the 5th best first token, lifted by a bias
            # repetition_penalty > 1 matters where the plain run would repeat an id of its context: the first of these
            # prompts on which it changes the greedy tokens.
            for repeated in (prompt * 2, prompt + plain, prompt + plain[:3] + prompt, prompt * 3):
                if greedy(model, repeated, **no_eos)[0] != greedy(model, repeated, **dict(no_eos, repetition_penalty=1.6))[0]:
                    break
            else:
                raise SystemExit("no prompt on which repetition_penalty 1.6 changes the greedy tokens")
            variants = [
                ("repetition_penalty 1.6", {"repetition_penalty": 1.6}, dict(no_eos, repetition_penalty=1.6)),
                ("repetition_penalty 0.5", {"repetition_penalty": 0.5}, dict(no_eos, repetition_penalty=0.5)),
                ("logit_bias", {"logit_bias": {str(plain[0]): -30.0, str(second): 0.75, str(plain[3]): 4.0}},
                 dict(no_eos, sequence_bias={(plain[0],): -30.0, (second,): 0.75, (plain[3],): 4.0})),
                ("min_new_tokens 4", {"min_new_tokens": 4, "stop_token_ids": [plain[0], plain[2]]},
                 dict(eos_token_id=[plain[0], plain[2]], min_new_tokens=4)),
                ("min_new_tokens 0", {"min_new_tokens": 0, "stop_token_ids": [plain[1]]}, dict(eos_token_id=[plain[1]])),
                ("all together", {"repetition_penalty": 1.3, "logit_bias": {str(second): 1.5}, "min_new_tokens": 3,
                                  "stop_token_ids": [plain[0], plain[5]]},
                 dict(eos_token_id=[plain[0], plain[5]], repetition_penalty=1.3, sequence_bias={(second,): 1.5}, min_new_tokens=3)),
            ]
            for name, controls, kw in variants:
                p = repeated if name == "repetition_penalty 1.6" else prompt
                tokens, _ = greedy(model, p, **kw)
                cases.append({"name": name, "prompt": p, "controls": controls, "tokens": tokens})
            logits = model(torch.tensor([prompt])).logits[0, -1:].float()
            for temperature, p in [(1.0, 0.5), (1.0, 0.3), (0.5, 0.5), (2.0, 0.6)]:
                scaled = TemperatureLogitsWarper(temperature)(None, logits.clone())
                scores = MinPLogitsWarper(min_p=p)(None, scaled.clone())
                kept = [int(i) for i in torch.nonzero(torch.isfinite(scores[0])).flatten()]
                # How far the nearest id lies from the cut, in scaled logits: the executor's logits differ from
                # transformers' by ~1e-6, so a margin well above that makes the kept set the same for both.
                cut = float(scaled[0].max()) + float(torch.log(torch.tensor(p)))
                margin = float((scaled[0].double() - cut).abs().min())
                min_p.append({"prompt": prompt, "temperature": temperature, "min_p": p, "kept": kept, "margin": margin})
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        weights = hashlib.sha256(f.read()).hexdigest()
    with open(out_path, "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "model_sha256": weights,
                   "greedy": cases, "logprobs": logprobs, "min_p": min_p}, f)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
