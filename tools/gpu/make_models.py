#!/usr/bin/env python3
"""Random-weight models for the executor checks, written by transformers' save_pretrained: Llama-3.x shapes, and
Qwen2.5, Qwen3 and Mistral shapes in each architecture's own config class (so their config.json has the layout
published checkpoints of that family have).

    python3 tools/gpu/make_models.py OUT_DIR [--shapes 1b,8b,1b-2l,8b-2l] [--dtype bfloat16|float16]
                                     [--device cuda|cpu] [--seed 0] [--legacy-copy] [--force]

Each shape goes to OUT_DIR/<shape>-<bf16|fp16|fp32>/ (config.json, model*.safetensors, make_models.json).
The model is built directly on the device in the target dtype (no fp32 CPU init), so an 8B shape is made
and saved in well under a minute on a GPU.

Init ("unit gain", scale-free so that the tiny CPU shapes behave like the real ones):
  - v/o/gate/up/down projections: normal(0, G/sqrt(fan_in)) with G = 0.6, so every sublayer adds O(G) to the
    residual whatever the width;
  - q/k projections: normal(0, sqrt(A/hidden)) with A = 1, so attention logits have std ~A (attention is
    neither flat nor one-hot; RoPE or masking mistakes move the logits visibly);
  - untied lm_head: normal(0, T/sqrt(hidden)) with T = 3: last-position logits have std ~3 and top-2 margins
    are mostly well above 0.05 (median ~0.5);
  - untied embedding: normal(0, 0.02) (normalized by the first RMSNorm anyway);
  - tied embedding (1B): normal(0, E/sqrt(hidden)) with E = 0.16, and the logit scale comes from the final
    RMSNorm weight instead (uniform(0.6, 1.4) * T / E, ~19): a tied embedding as large as an untied lm_head
    (or even 0.02 at hidden 2048) keeps the input token's own direction in the residual stream and the
    2-layer model then mostly predicts its input token (greedy output degenerates into repeats);
  - every other RMSNorm weight: uniform(0.6, 1.4), so that the executor's order of "normalize, cast, scale" is
    tested.
Measured on CPU (transformers 5.18, 200 random tokens): HF bf16 sdpa vs HF fp32 eager relative L2 of the logits
is ~1.0e-2 mean / 1.2e-2 max per position for the 1B shape and 2-layer shapes (GPU.md: ~1.4e-2 measured on
the H200). Sharper attention (A = 2.5) or G = 1 pushed HF bf16's own error to 2-3e-2, too close to the 2.5e-2
gate of check_numerics.py.

Rope: transformers 5 writes the rope settings as config.json "rope_parameters" (with rope_theta inside);
older files have top-level "rope_theta" + "rope_scaling". --legacy-copy also writes <dir>-legacy/ with the
same weights (symlinked) and the old layout, to test an executor's reader of both.
"""
import argparse
import json
import os
import sys
import time

SHAPES = {
    # name: (hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, tied, rope factor)
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
               intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_factor=32.0),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
               intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, rope_factor=8.0),
    # CPU-sized shapes for validating the scripts against the reference executor.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 intermediate_size=160, vocab_size=512, tie_word_embeddings=True, rope_factor=32.0),
    "tiny-untied": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                        head_dim=32, intermediate_size=256, vocab_size=1000, tie_word_embeddings=False,
                        rope_factor=8.0),
}
for _base in ("1b", "8b"):
    SHAPES[_base + "-2l"] = dict(SHAPES[_base], num_hidden_layers=2)

# Other architectures: the published models' dimensions (their config.json files), random weights. "arch" picks the
# transformers config/model class; "extra" goes to the config as is. Mistral's window is cut to 128 positions (the
# published v0.1 has 4096) so that the checks' 200-token prompts and 64 generated tokens cross it.
ARCH_SHAPES = {
    "qwen2.5-0.5b": dict(arch="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
                         max_position_embeddings=32768, rms_norm_eps=1e-6,
                         extra=dict(use_sliding_window=False, sliding_window=32768, max_window_layers=21)),
    "qwen2.5-7b-2l": dict(arch="qwen2", hidden_size=3584, num_hidden_layers=2, num_attention_heads=28, num_key_value_heads=4,
                          intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False, rope_theta=1e6,
                          max_position_embeddings=32768, rms_norm_eps=1e-6,
                          extra=dict(use_sliding_window=False, sliding_window=131072, max_window_layers=28)),
    "qwen3-0.6b": dict(arch="qwen3", hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
                       max_position_embeddings=40960, rms_norm_eps=1e-6, extra=dict(use_sliding_window=False)),
    "qwen3-8b-2l": dict(arch="qwen3", hidden_size=4096, num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
                        head_dim=128, intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False, rope_theta=1e6,
                        max_position_embeddings=40960, rms_norm_eps=1e-6, extra=dict(use_sliding_window=False)),
    "mistral-7b-2l-sw128": dict(arch="mistral", hidden_size=4096, num_hidden_layers=2, num_attention_heads=32,
                                num_key_value_heads=8, head_dim=128, intermediate_size=14336, vocab_size=32000,
                                tie_word_embeddings=False, rope_theta=10000.0, max_position_embeddings=32768,
                                rms_norm_eps=1e-5, extra=dict(sliding_window=128)),
    # CPU-sized, for dry runs of the scripts against the reference executor
    "qwen2-tiny": dict(arch="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=160, vocab_size=512, tie_word_embeddings=True, rope_theta=1e6,
                       max_position_embeddings=4096, rms_norm_eps=1e-6, extra=dict(use_sliding_window=False)),
    "qwen3-tiny": dict(arch="qwen3", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=32, intermediate_size=160, vocab_size=512, tie_word_embeddings=True, rope_theta=1e6,
                       max_position_embeddings=4096, rms_norm_eps=1e-6, extra=dict(use_sliding_window=False)),
    "mistral-tiny-sw16": dict(arch="mistral", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              head_dim=16, intermediate_size=160, vocab_size=512, tie_word_embeddings=False,
                              rope_theta=10000.0, max_position_embeddings=4096, rms_norm_eps=1e-5,
                              extra=dict(sliding_window=16)),
}
ARCH_CLASSES = {"qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
                "mistral": ("MistralConfig", "MistralForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM")}
BIAS_STD = 0.3  # Qwen2's q/k/v biases: large enough that a missing or misplaced bias moves the logits well past the gate

DTYPE_TAG = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
ATTN_SHARPNESS = 1.0   # std of q.k/sqrt(d) at init
PROJ_GAIN = 0.6        # v/o/gate/up/down: normal(0, PROJ_GAIN/sqrt(fan_in))
LOGIT_STD = 3.0        # std of the logits at init
EMBED_STD = 0.02       # untied embedding
TIED_EMBED_GAIN = 0.16  # tied embedding: normal(0, TIED_EMBED_GAIN/sqrt(hidden))
NORM_LOW, NORM_HIGH = 0.6, 1.4


def build_arch_config(name):
    import transformers
    s = dict(ARCH_SHAPES[name])
    arch, extra = s.pop("arch"), s.pop("extra")
    cfg_cls, model_cls = ARCH_CLASSES[arch]
    vocab = s["vocab_size"]
    cfg = getattr(transformers, cfg_cls)(**s, **extra, hidden_act="silu", initializer_range=0.02, bos_token_id=vocab - 2,
                                         eos_token_id=vocab - 1, pad_token_id=None, use_cache=True)
    cfg.architectures = [model_cls]
    return cfg


def build_config(name, dtype_name):
    if name in ARCH_SHAPES:
        return build_arch_config(name)
    from transformers import LlamaConfig
    s = dict(SHAPES[name])
    factor = s.pop("rope_factor")
    vocab = s["vocab_size"]
    big_vocab = vocab > 128001
    cfg = LlamaConfig(
        **s,
        hidden_act="silu",
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        initializer_range=0.02,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=128000 if big_vocab else vocab - 2,
        eos_token_id=128001 if big_vocab else vocab - 1,
        pad_token_id=None,
        use_cache=True,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    return cfg


def make_model(cfg, dtype, device):
    import torch
    import transformers
    model_cls = getattr(transformers, cfg.architectures[0])
    with torch.device(device):
        if hasattr(model_cls, "_from_config"):
            model = model_cls._from_config(cfg, dtype=dtype)
        else:  # older transformers
            prev = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                model = model_cls(cfg)
            finally:
                torch.set_default_dtype(prev)
    return model.to(device=device, dtype=dtype).eval()


def init_weights(model, cfg, seed):
    """Re-initializes every parameter as described in the module docstring (on its device, in its dtype)."""
    import torch
    torch.manual_seed(seed)
    H = cfg.hidden_size
    tied = bool(cfg.tie_word_embeddings)
    counts = {}
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied lm_head is yielded once, as embed_tokens
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.uniform_(NORM_LOW, NORM_HIGH)
                kind = "norm"
            elif name.endswith("q_proj.weight") or name.endswith("k_proj.weight"):
                p.normal_(0.0, (ATTN_SHARPNESS / H) ** 0.5)
                kind = "qk"
            elif name == "lm_head.weight":
                p.normal_(0.0, LOGIT_STD / H ** 0.5)
                kind = "lm_head"
            elif name.endswith("embed_tokens.weight"):
                p.normal_(0.0, TIED_EMBED_GAIN / H ** 0.5 if tied else EMBED_STD)
                kind = "embed"
            elif name.endswith(".weight") and p.dim() == 2:
                p.normal_(0.0, PROJ_GAIN / p.shape[1] ** 0.5)  # fan_in = in_features
                kind = "proj"
            elif name.endswith("_proj.bias") and p.dim() == 1:  # Qwen2's q/k/v biases
                p.normal_(0.0, BIAS_STD)
                kind = "bias"
            else:
                raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")
            counts[kind] = counts.get(kind, 0) + p.numel()
    if tied:
        with torch.no_grad():
            model.model.norm.weight.mul_(LOGIT_STD / TIED_EMBED_GAIN)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    return counts


LINEAR_SUFFIXES = (".q_proj.weight", ".k_proj.weight", ".v_proj.weight", ".o_proj.weight", ".gate_proj.weight",
                   ".up_proj.weight", ".down_proj.weight")


def write_fp8_copy(d, strategy, device):
    """<d>-fp8 (per-channel scales) or <d>-fp8t (per-tensor): the decoder's linear weights of d quantized to E4M3
    with scale = absmax / 448, in the compressed-tensors float-quantized layout of the published FP8 checkpoints
    (Llama-3.1-8B-Instruct-FP8: weight_scale beside each weight, lm_head, embedding and norms unquantized),
    weight-only. The executors' truth for it is the dequantized model (common.dequantize_fp8)."""
    import torch
    import safetensors.torch as st
    out_dir = d + ("-fp8" if strategy == "channel" else "-fp8t")
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for f in sorted(fn for fn in os.listdir(d) if fn.endswith(".safetensors")):
        tensors.update(st.load_file(os.path.join(d, f), device=device))
    out = {}
    for name, t in tensors.items():
        if name.startswith("model.layers.") and name.endswith(LINEAR_SUFFIXES):
            w = t.float()
            amax = w.abs().amax(dim=1, keepdim=True) if strategy == "channel" else w.abs().amax().reshape(1)
            scale = (amax / 448.0).clamp(min=1e-12)
            out[name] = (w / scale).to(torch.float8_e4m3fn)
            out[name[: -len(".weight")] + ".weight_scale"] = scale.float()
        else:
            out[name] = t
    st.save_file({k: v.contiguous().cpu() for k, v in out.items()}, os.path.join(out_dir, "model.safetensors"),
                 metadata={"format": "pt"})
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {
        "config_groups": {"group_0": {
            "input_activations": None, "output_activations": None, "targets": ["Linear"],
            "weights": {"actorder": None, "block_structure": None, "dynamic": False, "group_size": None, "num_bits": 8,
                        "observer": "minmax", "observer_kwargs": {}, "strategy": strategy, "symmetric": True, "type": "float"}}},
        "format": "float-quantized", "ignore": ["lm_head"], "kv_cache_scheme": None, "quant_method": "compressed-tensors",
        "quantization_status": "compressed"}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for fn in ("generation_config.json",):
        if os.path.exists(os.path.join(d, fn)):
            with open(os.path.join(d, fn)) as a, open(os.path.join(out_dir, fn), "w") as b:
                b.write(a.read())
    print(f"  fp8 ({strategy}) copy -> {out_dir}", flush=True)
    return out_dir


def legacy_config(cfg_json):
    """The pre-transformers-5 layout: top-level rope_theta + rope_scaling, no rope_parameters."""
    out = dict(cfg_json)
    rp = out.pop("rope_parameters", None) or {}
    out["rope_theta"] = rp.get("rope_theta", 500000.0)
    out["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--shapes", default="1b-2l,8b-2l", help="comma list of " + ",".join(list(SHAPES) + list(ARCH_SHAPES)))
    ap.add_argument("--dtype", default="bfloat16", choices=list(DTYPE_TAG))
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--legacy-copy", action="store_true", help="also write <dir>-legacy with the old rope layout")
    ap.add_argument("--force", action="store_true", help="rewrite a model that already exists")
    ap.add_argument("--max-shard-size", default="5GB")
    ap.add_argument("--fp8", default="", help="also write FP8 copies: channel (<dir>-fp8), tensor (<dir>-fp8t) or both")
    args = ap.parse_args()

    import torch
    import transformers
    try:
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    print(f"make_models: torch {torch.__version__}, transformers {transformers.__version__}, device {device}, "
          f"dtype {args.dtype}", flush=True)
    os.makedirs(args.out_dir, exist_ok=True)
    made = []
    for name in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        if name not in SHAPES and name not in ARCH_SHAPES:
            sys.exit(f"make_models: unknown shape {name!r} (known: {', '.join(list(SHAPES) + list(ARCH_SHAPES))})")
        d = os.path.join(args.out_dir, f"{name}-{DTYPE_TAG[args.dtype]}")
        card_path = os.path.join(d, "make_models.json")
        if os.path.exists(card_path) and not args.force:
            print(f"  {name}: exists: {d}", flush=True)
        else:
            t0 = time.time()
            cfg = build_config(name, args.dtype)
            model = make_model(cfg, dtype, device)
            counts = init_weights(model, cfg, args.seed)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t1 = time.time()
            model.save_pretrained(d, safe_serialization=True, max_shard_size=args.max_shard_size)
            t2 = time.time()
            n_params = sum(counts.values())
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            with open(os.path.join(d, "config.json")) as f:
                cfg_json = json.load(f)
            rope_layout = ("rope_parameters" if "rope_parameters" in cfg_json else "") + \
                          ("+rope_scaling" if "rope_scaling" in cfg_json else "") + \
                          ("+rope_theta" if "rope_theta" in cfg_json else "")
            files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
            card = {
                "shape": name, "dtype": args.dtype, "seed": args.seed, "device": device,
                "params": n_params, "param_counts": counts,
                "bytes_on_disk": sum(os.path.getsize(os.path.join(d, f)) for f in files),
                "safetensors": files, "rope_layout": rope_layout.strip("+"),
                "rope_config": cfg_json.get("rope_parameters", cfg_json.get("rope_scaling")),
                "init": {"proj": f"normal(0, {PROJ_GAIN}/sqrt(fan_in))", "qk": f"normal(0, sqrt({ATTN_SHARPNESS}/hidden))",
                         "lm_head_untied": f"normal(0, {LOGIT_STD}/sqrt(hidden))",
                         "embed_untied": f"normal(0, {EMBED_STD})", "embed_tied": f"normal(0, {TIED_EMBED_GAIN}/sqrt(hidden))",
                         "norm": f"uniform({NORM_LOW}, {NORM_HIGH})",
                         "final_norm_tied": f"uniform({NORM_LOW}, {NORM_HIGH}) * {LOGIT_STD}/{TIED_EMBED_GAIN}"},
                "make_s": round(t1 - t0, 2), "save_s": round(t2 - t1, 2),
                "transformers": transformers.__version__, "torch": torch.__version__,
            }
            with open(card_path, "w") as f:
                json.dump(card, f, indent=1)
            print(f"  {name}: {n_params / 1e6:.1f} M params, {card['bytes_on_disk'] / 1e9:.2f} GB in {len(files)} "
                  f"file(s), made {card['make_s']} s, saved {card['save_s']} s, rope layout "
                  f"{card['rope_layout']}: {json.dumps(card['rope_config'])} -> {d}", flush=True)
        made.append(d)
        for strategy in [x for x in args.fp8.split(",") if x]:
            if strategy not in ("channel", "tensor"):
                sys.exit(f"make_models: --fp8 takes channel and/or tensor, not {strategy!r}")
            made.append(write_fp8_copy(d, strategy, device))
        if args.legacy_copy:
            ld = d + "-legacy"
            os.makedirs(ld, exist_ok=True)
            with open(os.path.join(d, "config.json")) as f:
                cfg_json = json.load(f)
            with open(os.path.join(ld, "config.json"), "w") as f:
                json.dump(legacy_config(cfg_json), f, indent=2)
            for fn in os.listdir(d):
                if fn == "config.json":
                    continue
                dst = os.path.join(ld, fn)
                if os.path.lexists(dst):
                    os.remove(dst)
                os.symlink(os.path.abspath(os.path.join(d, fn)), dst)
            print(f"  {name}: legacy rope layout (rope_theta + rope_scaling) copy -> {ld}", flush=True)
            made.append(ld)
    print("MODELS " + ",".join(made), flush=True)


if __name__ == "__main__":
    main()
