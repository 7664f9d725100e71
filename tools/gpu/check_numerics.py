#!/usr/bin/env python3
"""Numerics and ABI checks of an executor library against transformers (HF fp32 eager is the truth).

    python3 tools/gpu/check_numerics.py --lib packages/trtllm/build/libtrtd_executor_cuda.so \
        --models /tmp/trtd-models/1b-2l-bf16,/tmp/trtd-models/8b-2l-bf16 --out /tmp/numerics.json

Per model directory:
  a. logits: a seeded random prompt (--prompt-len, default 200) through trtd_executor_compute_logits vs HF fp32
     eager, and HF in the model's dtype (bf16/fp16, sdpa) as a second reference; relative L2 per position.
     Gate: ours <= 2.5e-2 at every position for a bf16/fp16 KV executor (1e-3 for an fp32 one, e.g. the CPU
     reference executor).
  b. greedy: a CONTEXT_AND_GENERATION request of --gen (64) greedy tokens; HF fp32 teacher-forced on
     prompt + our tokens; at every step whose HF top-2 margin exceeds the threshold our token must be HF's
     argmax. The threshold is max(0.05, min(6 x rms logit error of ours vs fp32 from part a, 0.5)): a correct bf16
     executor can flip steps whose margin is within its own logit noise. Agreement at the plain 0.05 margin,
     and HF bf16's own agreement on the same steps, are reported beside it.
  c. batch: 8 greedy requests of different prompt lengths, alone, all together, and staggered (half enqueued
     while the other half decodes) must give the same tokens; a difference is allowed only at a near-tie
     (HF fp32 top-2 margin at the first differing step <= the threshold of b), reported with its margin.
  d. kv: a CONTEXT_ONLY request in a child process (this script, --role exporter) exports its KV as a host
     copy (kv_export_copy into a file in /dev/shm) and as a device descriptor (kv_export_device; UNSUPPORTED is
     a skip); the parent imports it (import_reserve + memmove into import_segments; import_device), runs
     GENERATION_ONLY with the first token and compares with an aggregated CONTEXT_AND_GENERATION run token for
     token, greedy and seeded (temperature 0.8, top_p 0.9, seed 7). The child releases after the parent acks.
Every part ends with the executor idle (no blocks used, no pinned exports, no pending imports): asserted.
Prints a PASS/FAIL table, writes JSON (after every model), exits 1 if anything failed.
"""
import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import trtd  # noqa: E402
from common import log  # noqa: E402

BATCH_LENGTHS = [1, 16, 31, 33, 64, 100, 129, 200]


class Part:
    def __init__(self, name):
        self.name = name
        self.status = "PASS"
        self.notes = []
        self.data = {}
        self.t0 = time.monotonic()

    def fail(self, msg):
        self.status = "FAIL" if self.status != "ERROR" else self.status
        self.notes.append(msg)
        log(f"    FAIL: {msg}")

    def warn(self, msg):
        if self.status == "PASS":
            self.status = "WARN"
        self.notes.append(msg)
        log(f"    WARN: {msg}")

    def skip(self, msg):
        self.status = "SKIP"
        self.notes.append(msg)
        log(f"    SKIP: {msg}")

    def to_json(self):
        return {"status": self.status, "notes": self.notes, "seconds": round(time.monotonic() - self.t0, 2),
                **self.data}


def rel_l2(a, b):
    """Per-row ||a - b|| / ||b|| (torch tensors [n, vocab])."""
    return ((a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-30))


def prompt_of(seed, n, vocab):
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.int32).tolist()


def check_idle(ex, part, where=""):
    idle, st = ex.wait_idle(5.0)
    part.data["stats_end"] = st
    part.data["idle_end"] = idle
    if not idle:
        part.fail(f"executor not idle after the part{where}: active {st['active_requests']}, queued "
                  f"{st['queued_requests']}, blocks used {st['kv_blocks_used']}, pinned exports "
                  f"{st['pinned_exports']}, pending imports {st['pending_imports']}")
    return idle


class Ctx:
    """Everything a model's parts share."""

    def __init__(self, args, model_dir, ex, hf_half, hf32, device):
        self.args, self.model_dir, self.ex, self.hf_half, self.hf32, self.device = args, model_dir, ex, hf_half, hf32, device
        self.vocab = ex.vocab
        self.layout = ex.kv_layout()
        self.half_kv = self.layout["dtype"] != trtd.KV_FLOAT32
        with open(os.path.join(model_dir, "config.json")) as f:
            self.fp8 = json.load(f).get("quantization_config") is not None  # FP8 weights: gate_fp8
        self.margin_thr = args.margin
        self.rms_err = None

    def margin_at(self, seq):
        """HF fp32 (top1, top2, margin, logits row) at the last position of seq."""
        lg = common.hf_logits(self.hf32, seq, self.device)[-1]
        v, i = lg.topk(2)
        return int(i[0]), int(i[1]), float(v[0] - v[1]), lg


# ------------------------------------------------------------------------------------------------
# a. teacher-forced logits
# ------------------------------------------------------------------------------------------------

def part_logits(c, part):
    args = c.args
    prompt = prompt_of(args.seed, args.prompt_len, c.vocab)
    try:
        t0 = time.perf_counter()
        ours_np = c.ex.compute_logits(prompt)
        part.data["compute_logits_s"] = round(time.perf_counter() - t0, 3)
    except trtd.TrtdError as e:
        if e.status == trtd.UNSUPPORTED:
            part.skip(f"compute_logits is UNSUPPORTED: {e.message}")
            return
        raise
    import torch
    n_bad = int((~np.isfinite(ours_np)).sum())
    if n_bad:
        part.fail(f"{n_bad} non-finite logits from compute_logits (NaN-filled buffer not fully written?)")
        ours_np = np.nan_to_num(ours_np, nan=0.0, posinf=0.0, neginf=0.0)
    ours = torch.from_numpy(ours_np).to(c.device)
    truth = common.hf_logits(c.hf32, prompt, c.device)
    half = common.hf_logits(c.hf_half, prompt, c.device)
    r_ours = rel_l2(ours, truth).cpu().numpy()
    r_half = rel_l2(half, truth).cpu().numpy()
    rms = float((ours - truth).pow(2).mean().sqrt())
    c.rms_err = rms
    # capped: an executor whose logits are far off must still be judged on most steps in b/c
    c.margin_thr = max(args.margin, min(6.0 * rms, args.margin_cap))
    agree = float((ours.argmax(-1) == truth.argmax(-1)).float().mean())
    agree_half = float((half.argmax(-1) == truth.argmax(-1)).float().mean())
    top2 = truth.topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).cpu().numpy()
    gate = (args.gate_fp8 if c.fp8 else args.gate) if c.half_kv else args.gate_fp32
    d = part.data
    d.update(prompt_len=len(prompt), gate=gate, kv_dtype=c.layout["dtype_name"],
             ours_max=float(r_ours.max()), ours_mean=float(r_ours.mean()), ours_last=float(r_ours[-1]),
             ours_argmax_pos=int(r_ours.argmax()),
             hf_half_max=float(r_half.max()), hf_half_mean=float(r_half.mean()), hf_half_last=float(r_half[-1]),
             ratio_max=float(r_ours.max() / max(r_half.max(), 1e-30)),
             ratio_mean=float(r_ours.mean() / max(r_half.mean(), 1e-30)),
             ours_rms_abs_err=rms, argmax_agree=agree, hf_half_argmax_agree=agree_half,
             truth_logit_std_last=float(truth[-1].std()), truth_margin_median=float(np.median(margins)),
             truth_margin_frac_lt_0_05=float((margins < 0.05).mean()),
             per_position_ours=[float(f"{x:.3e}") for x in r_ours],
             per_position_hf_half=[float(f"{x:.3e}") for x in r_half])
    log(f"    rel L2 vs HF fp32 over {len(prompt)} positions: ours max {d['ours_max']:.3e} (pos {d['ours_argmax_pos']}) "
        f"mean {d['ours_mean']:.3e} last {d['ours_last']:.3e} | HF {args.half_name} max {d['hf_half_max']:.3e} "
        f"mean {d['hf_half_mean']:.3e} last {d['hf_half_last']:.3e} | ratio max {d['ratio_max']:.2f} "
        f"mean {d['ratio_mean']:.2f}")
    log(f"    argmax agreement with fp32: ours {agree:.3f}, HF {args.half_name} {agree_half:.3f}; logits std (last) "
        f"{d['truth_logit_std_last']:.2f}, top-2 margin median {d['truth_margin_median']:.3f}; rms abs err "
        f"{rms:.4f} -> margin threshold for b/c {c.margin_thr:.3f}")
    if r_ours.max() > gate:
        bad = np.nonzero(r_ours > gate)[0]
        part.fail(f"relative L2 {r_ours.max():.3e} > gate {gate:.1e} at {len(bad)} of {len(prompt)} positions "
                  f"(first {bad[:8].tolist()}); HF {args.half_name}'s own max is {r_half.max():.3e}")
    if r_half.max() > gate and c.half_kv:
        part.notes.append(f"note: HF {args.half_name} itself exceeds the gate ({r_half.max():.3e})")


# ------------------------------------------------------------------------------------------------
# b. greedy decode vs HF fp32 teacher-forced
# ------------------------------------------------------------------------------------------------

def part_greedy(c, part):
    args = c.args
    prompt = prompt_of(args.seed, args.prompt_len, c.vocab)
    t0 = time.perf_counter()
    res = c.ex.generate(prompt, args.gen)
    part.data["generate_s"] = round(time.perf_counter() - t0, 3)
    toks = res.tokens
    part.data.update(finish=res.finish_name, n_tokens=len(toks), tokens=toks)
    if res.error_status or len(toks) != args.gen or res.finish_reason != trtd.FINISH_LENGTH:
        part.fail(f"expected {args.gen} tokens finishing LENGTH, got {len(toks)} finishing {res.finish_name} "
                  f"{res.error_message}")
    if not toks:
        return
    seq = prompt + toks
    L = len(prompt)
    truth = common.hf_logits(c.hf32, seq[:-1], c.device)[L - 1:]
    half = common.hf_logits(c.hf_half, seq[:-1], c.device)[L - 1:]
    v, i = truth.topk(2, dim=-1)
    margin = (v[:, 0] - v[:, 1]).cpu().numpy()
    hf_arg = i[:, 0].cpu().numpy()
    half_arg = half.argmax(-1).cpu().numpy()
    ours = np.asarray(toks)
    thr = c.margin_thr

    def agreement(th):
        el = margin > th
        return int((ours[el] == hf_arg[el]).sum()), int(el.sum()), int((half_arg[el] == hf_arg[el]).sum())

    a, e, ah = agreement(thr)
    a5, e5, ah5 = agreement(args.margin)
    wrong = [int(k) for k in np.nonzero((margin > thr) & (ours != hf_arg))[0]]
    part.data.update(margin_threshold=thr, agree=a, eligible=e, hf_half_agree=ah, agree_at_base=a5,
                     eligible_at_base=e5, hf_half_agree_at_base=ah5, base_margin=args.margin,
                     exact_all_steps=int((ours == hf_arg).sum()),
                     disagreements=[{"step": k, "ours": int(ours[k]), "hf": int(hf_arg[k]),
                                     "margin": float(margin[k])} for k in wrong[:10]])
    log(f"    greedy {len(toks)} tokens: eligible steps (HF fp32 top-2 margin > {thr:.3f}): ours agrees {a}/{e}, "
        f"HF {args.half_name} {ah}/{e}; at margin > {args.margin}: ours {a5}/{e5}, HF {args.half_name} {ah5}/{e5}; "
        f"all steps: {(ours == hf_arg).sum()}/{len(ours)}")
    if e < len(ours) // 4:
        part.fail(f"only {e} of {len(ours)} steps are eligible (margin > {thr:.3f}): too few to judge")
    if wrong:
        part.fail(f"{len(wrong)} eligible steps where our token is not HF's argmax: " +
                  ", ".join(f"step {k} ours {ours[k]} hf {hf_arg[k]} margin {margin[k]:.3f}" for k in wrong[:5]))


# ------------------------------------------------------------------------------------------------
# c. batch self-consistency
# ------------------------------------------------------------------------------------------------

def part_batch(c, part):
    args = c.args
    max_ctx = c.ex.info["max_context_length"]
    lens = [n for n in BATCH_LENGTHS if n + args.gen_batch < max_ctx]
    prompts = [prompt_of(args.seed + 100 + k, n, c.vocab) for k, n in enumerate(lens)]
    G = args.gen_batch
    alone = []
    for p in prompts:
        alone.append(c.ex.generate(p, G).tokens)
    ids = [c.ex.enqueue(p, G) for p in prompts]
    out = c.ex.drain(ids)
    together = [out[i].tokens for i in ids]
    # staggered: the first half decodes while the second half is enqueued (and prefilled)
    half = len(prompts) // 2
    ids1 = [c.ex.enqueue(p, G) for p in prompts[:half]]
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end:
        c.ex.poll(10)
        got = [len(c.ex._results[i].tokens) for i in ids1]
        ended = all(c.ex._results[i].finish_reason != trtd.FINISH_NOT_FINISHED for i in ids1)
        if min(got) >= 2 or ended:  # a request that failed will never reach 2 tokens: stop waiting
            break
    ids2 = [c.ex.enqueue(p, G) for p in prompts[half:]]
    out = c.ex.drain(ids1 + ids2)
    staggered = [out[i].tokens for i in ids1 + ids2]
    rows, n_exact, n_tie, n_bad = [], 0, 0, 0
    for k, (p, a) in enumerate(zip(prompts, alone)):
        for mode, b in (("together", together[k]), ("staggered", staggered[k])):
            if len(a) != G or len(b) != G:
                n_bad += 1
                part.fail(f"prompt len {len(p)} {mode}: {len(a)} tokens alone, {len(b)} {mode}, want {G}")
                continue
            if a == b:
                n_exact += 1
                continue
            j = next(x for x in range(G) if a[x] != b[x])
            t1, t2, m, lg = c.margin_at(p + a[:j])
            row = {"prompt_len": len(p), "mode": mode, "first_diff": j, "alone": a[j], "other": b[j],
                   "hf_top1": t1, "hf_top2": t2, "hf_margin": m,
                   "hf_logit_gap_alone_vs_other": float(lg[a[j]] - lg[b[j]])}
            rows.append(row)
            if m <= c.margin_thr:
                n_tie += 1
                part.warn(f"prompt len {len(p)} {mode}: differs from alone at step {j} ({a[j]} vs {b[j]}), a near-tie "
                          f"(HF fp32 top-2 margin {m:.4f} <= {c.margin_thr:.3f})")
            else:
                n_bad += 1
                part.fail(f"prompt len {len(p)} {mode}: differs from alone at step {j} ({a[j]} vs {b[j]}) where HF fp32's "
                          f"top-2 margin is {m:.4f} > {c.margin_thr:.3f}")
    part.data.update(prompt_lens=lens, new_tokens=G, exact=n_exact, near_ties=n_tie, mismatches=n_bad,
                     compared=2 * len(prompts), differences=rows)
    log(f"    {len(prompts)} prompts (lengths {lens}) x {G} greedy tokens: alone == together/staggered for "
        f"{n_exact}/{2 * len(prompts)}, near-ties {n_tie}, real mismatches {n_bad}")


# ------------------------------------------------------------------------------------------------
# d. KV export / import across processes
# ------------------------------------------------------------------------------------------------

SAMPLINGS = {"greedy": {}, "seeded": {"temperature": 0.8, "top_p": 0.9, "seed": 7}}


def part_kv(c, part, child):
    args = c.args
    prompt = prompt_of(args.seed + 7, args.kv_prompt_len, c.vocab)
    G = args.gen_kv
    ready = child.wait_ready(args.child_timeout)
    d = part.data
    d.update(prompt_len=len(prompt), new_tokens=G, child_load_s=ready.get("load_s"),
             child_uuid=ready.get("uuid"), child_uuid_error=ready.get("uuid_error"))
    try:
        d["parent_uuid"] = c.ex.device_uuid()
    except trtd.TrtdError as e:
        d["parent_uuid_error"] = str(e)
    if ready["layout"]["fingerprint"] != c.layout["fingerprint"]:
        part.fail(f"KV layout fingerprints differ: child {ready['layout']['fingerprint']} parent {c.layout['fingerprint']}")
    jobs = [{"name": n, "prompt": prompt, "max_new": 1, "sampling": s, "host_copy": True, "device": True}
            for n, s in SAMPLINGS.items()]
    reply = child.request({"cmd": "export", "jobs": jobs}, timeout=args.child_timeout)
    exported = {j["name"]: j for j in reply["jobs"]}
    acked = False
    try:
        for name, s in SAMPLINGS.items():
            j = exported[name]
            r = {"first_token_child": j.get("first_token"), "child_finish": j.get("finish")}
            d[name] = r
            if j.get("error") or "info" not in j:
                part.fail(f"{name}: the child's context-only request failed: {j.get('finish')} {j.get('error')}")
                continue
            info = j["info"]
            r.update(export_info=info, segments=j["segments"], segment_kinds=j["segment_kinds"],
                     segments_match_copy=j.get("segments_match_copy"), context_phase_state_bytes=j["context_phase_state_bytes"])
            if info["num_tokens"] != len(prompt) or info["bytes"] != info["num_blocks"] * c.layout["bytes_per_block"]:
                part.fail(f"{name}: export info {info} does not fit the prompt ({len(prompt)} tokens) and layout "
                          f"({c.layout['bytes_per_block']} bytes per block)")
            if j["segments"] != info["num_blocks"] or not j["segment_sizes_ok"]:
                part.fail(f"{name}: {j['segments']} export segments for {info['num_blocks']} blocks (sizes ok: "
                          f"{j['segment_sizes_ok']})")
            if j.get("segments_match_copy") is False:
                part.fail(f"{name}: kv_export_segments views differ from kv_export_copy bytes")
            agg = c.ex.generate(prompt, G, **s)
            r["aggregated"] = agg.tokens
            if len(agg.tokens) != G:
                part.fail(f"{name}: aggregated run gave {len(agg.tokens)} tokens ({agg.finish_name} {agg.error_message})")
            if agg.tokens and j["first_token"] != agg.tokens[0]:
                part.fail(f"{name}: the child's first token {j['first_token']} != the aggregated first token "
                          f"{agg.tokens[0]} (prefill not deterministic across processes?)")
            # host path: import_reserve + memmove into import_segments
            mm = np.memmap(j["file"], dtype=np.uint8, mode="r")
            iid = c.ex.import_reserve(info["num_tokens"])
            segs = c.ex.import_write_host(iid, mm)
            r["import_segments"] = len(segs)
            r["import_segment_kinds"] = sorted({trtd.MEMORY_NAMES.get(x["memory_kind"]) for x in segs})
            if all(x["memory_kind"] in (trtd.MEMORY_HOST, trtd.MEMORY_HOST_PINNED) for x in segs):
                r["import_readback_ok"] = bool(np.array_equal(c.ex.read_host_segments(segs), mm))
                if not r["import_readback_ok"]:
                    part.fail(f"{name}: bytes read back from the import segments differ from what was written")
            del mm
            gen = c.ex.generate(prompt, G, type=trtd.GENERATION_ONLY, import_id=iid, first_token=j["first_token"], **s)
            r["host_import"] = gen.tokens
            _compare(c, part, f"{name} host import", prompt, agg.tokens, gen)
            # device path
            if j.get("desc") is None:
                r["device_import"] = "skipped: " + str(j.get("desc_error"))
                if j.get("desc_unsupported"):
                    log(f"    {name}: device path skipped: kv_export_device is UNSUPPORTED ({j.get('desc_error')})")
                else:
                    part.fail(f"{name}: kv_export_device failed: {j.get('desc_error')}")
                continue
            desc = bytes.fromhex(j["desc"])
            r["descriptor_bytes"] = len(desc)
            iid = c.ex.import_reserve(info["num_tokens"])
            try:
                t0 = time.perf_counter()
                c.ex.import_device(iid, desc)
                r["import_device_s"] = time.perf_counter() - t0
            except trtd.TrtdError as e:
                c.ex.import_abort(iid)
                if e.status == trtd.UNSUPPORTED:
                    r["device_import"] = f"skipped: {e}"
                    log(f"    {name}: device path skipped: kv_import_device is UNSUPPORTED ({e.message})")
                else:
                    part.fail(f"{name}: kv_import_device: {e}")
                continue
            gen = c.ex.generate(prompt, G, type=trtd.GENERATION_ONLY, import_id=iid, first_token=j["first_token"], **s)
            r["device_import"] = gen.tokens
            _compare(c, part, f"{name} device import", prompt, agg.tokens, gen)
        # reserve + abort leaves nothing behind
        iid = c.ex.import_reserve(len(prompt))
        c.ex.import_abort(iid)
        # ack: the child releases its exports only now (after every import call returned)
        rel = child.request({"cmd": "release", "rids": [j["rid"] for j in reply["jobs"] if "info" in j]},
                            timeout=args.child_timeout)
        acked = True
        d["child_idle_after_release"] = rel["idle"]
        d["child_stats_after_release"] = rel["stats"]
        if not rel["idle"]:
            part.fail(f"the child (exporter) is not idle after releasing: {rel['stats']}")
    finally:
        if not acked:
            try:
                child.request({"cmd": "release", "rids": [j["rid"] for j in reply["jobs"] if "info" in j]},
                              timeout=30)
            except Exception as e:  # noqa: BLE001
                log(f"    could not release the child's exports: {e}")
    summary = []
    for name in SAMPLINGS:
        r = d.get(name, {})
        summary.append(f"{name}: host {_tag(r.get('host_import'), r.get('aggregated'))}, "
                       f"device {_tag(r.get('device_import'), r.get('aggregated'))}")
    log("    " + "; ".join(summary))


def _tag(x, ref):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return "skipped"
    return "equal" if x == ref else "DIFFERENT"


def _compare(c, part, what, prompt, ref, res):
    toks = res.tokens
    if res.error_status:
        part.fail(f"{what}: generation-only request failed: {res.finish_name} {res.error_message}")
        return
    if toks == ref:
        return
    j = next((x for x in range(min(len(ref), len(toks))) if ref[x] != toks[x]), min(len(ref), len(toks)))
    extra = ""
    if j < min(len(ref), len(toks)):
        _, _, m, _ = c.margin_at(prompt + ref[:j])
        extra = f"; HF fp32 top-2 margin there {m:.4f}"
    part.fail(f"{what}: {len(toks)} tokens differ from the aggregated run ({len(ref)}) at index {j}{extra}")


# ------------------------------------------------------------------------------------------------

def run_model(args, model_dir, device):
    import torch
    name = os.path.basename(os.path.normpath(model_dir))
    m = {"dir": model_dir, "name": name, "parts": {}}
    log(f"\n== {name} ({model_dir})")
    config = dict(kv_memory_bytes=args.kv_mib << 20, device_id=args.device_id, max_batch_size=16,
                  max_context_length=args.max_ctx)
    config.update(common.parse_config(args.config))
    m["config"] = config
    parts = set(args.parts.split(","))
    child = None
    ex = None
    try:
        # The exporter child (part d) starts early where the GPU holds it beside ours and both HF copies (its load
        # overlaps ours); otherwise (an 8B shape on an 80 GB card: 16 + 16 + 16 + 32 GB of weights) after the HF
        # models are freed.
        wbytes, _ = common.weight_bytes(model_dir)
        gpu_bytes = torch.cuda.get_device_properties(0).total_memory if device.startswith("cuda") else 1 << 62
        child_early = 5 * wbytes + (8 << 30) < gpu_bytes

        def start_child():
            return common.ExporterProc(os.path.abspath(__file__), args.lib, model_dir, config, time_limit=args.time_limit)
        if "d" in parts and child_early:
            child = start_child()
        ex = trtd.Executor.open(args.lib, model_dir, **config)
        m["executor_create_s"] = round(ex.create_s, 2)
        m["model_info"] = ex.info
        m["kv_layout"] = ex.kv_layout()
        dt = common.model_dtype_name(model_dir)
        args.half_name = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dt]
        t0 = time.monotonic()
        hf_half = common.load_hf(model_dir, dt, "sdpa", device)
        with open(os.path.join(model_dir, "config.json")) as f:
            fp8 = json.load(f).get("quantization_config") is not None
        # FP8: the truth is the exactly dequantized model in fp32 (fp8 * scale), not a copy of the bf16 one (whose
        # dequantized weights are rounded to bf16); HF bf16 on those rounded weights stays the second reference.
        hf32 = common.load_hf(model_dir, "float32", "eager", device) if fp8 else common.fp32_copy(hf_half, "eager")
        m["hf_load_s"] = round(time.monotonic() - t0, 2)
        m["dtype"] = dt
        log(f"  executor: {ex.lib.version}; created in {ex.create_s:.2f} s; KV {m['kv_layout']['dtype_name']} "
            f"{m['kv_layout']['memory_kind_name']} {m['kv_layout']['tokens_per_block']} tokens/block "
            f"{m['kv_layout']['bytes_per_block']} B/block; HF {dt} sdpa + fp32 eager loaded in {m['hf_load_s']} s")
        c = Ctx(args, model_dir, ex, hf_half, hf32, device)
        steps = [("a", "logits", part_logits), ("b", "greedy", part_greedy), ("c", "batch", part_batch),
                 ("d", "kv", lambda c_, p_: part_kv(c_, p_, child))]
        for key, pname, fn in steps:
            if key not in parts:
                continue
            if key == "d" and child is None:  # the HF models are not needed by part d: make room for the child
                c.hf_half = c.hf32 = None
                del hf_half, hf32
                hf_half = hf32 = None
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                child = start_child()
            part = Part(pname)
            log(f"  [{key}] {pname}")
            try:
                fn(c, part)
            except Exception as e:  # noqa: BLE001
                part.status = "ERROR"
                part.notes.append(f"{type(e).__name__}: {e}")
                log(f"    ERROR: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            check_idle(ex, part)
            m["parts"][pname] = part.to_json()
            log(f"    -> {part.status} ({m['parts'][pname]['seconds']} s)")
        del hf_half, hf32, c
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001
        m["error"] = f"{type(e).__name__}: {e}"
        log(f"  ERROR: {m['error']}\n{traceback.format_exc()}")
    finally:  # the importer goes first (it may still map the exporter's pool), then the exporter
        if ex is not None:
            ex.close()
        if child is not None:
            last = child.close()
            if last is not None:
                m["child_final"] = last
    return m


def summarize(result):
    rows, ok = [], True
    for m in result["models"]:
        if m.get("error"):
            rows.append([m["name"], "-", "ERROR", m["error"][:100]])
            ok = False
        for pname, p in m["parts"].items():
            if p["status"] in ("FAIL", "ERROR"):
                ok = False
            rows.append([m["name"], pname, p["status"], _figures(pname, p)])
    return ok, rows


def _figures(pname, p):
    try:
        if pname == "logits" and "ours_max" in p:
            return (f"relL2 max {p['ours_max']:.2e} mean {p['ours_mean']:.2e} last {p['ours_last']:.2e} "
                    f"(hf-half max {p['hf_half_max']:.2e}, ratio {p['ratio_max']:.2f}; gate {p['gate']:.1e})")
        if pname == "greedy" and "eligible" in p:
            return (f"agree {p['agree']}/{p['eligible']} at margin>{p['margin_threshold']:.3f} (hf-half "
                    f"{p['hf_half_agree']}); at >{p['base_margin']}: {p['agree_at_base']}/{p['eligible_at_base']} "
                    f"(hf-half {p['hf_half_agree_at_base']})")
        if pname == "batch" and "compared" in p:
            return f"equal {p['exact']}/{p['compared']}, near-ties {p['near_ties']}, mismatches {p['mismatches']}"
        if pname == "kv":
            out = []
            for s in SAMPLINGS:
                r = p.get(s, {})
                out.append(f"{s}: host {_tag(r.get('host_import'), r.get('aggregated'))} device "
                           f"{_tag(r.get('device_import'), r.get('aggregated'))}")
            return "; ".join(out)
    except Exception:  # noqa: BLE001
        pass
    return "; ".join(p.get("notes", []))[:120]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--models", default="", help="comma-separated model directories")
    ap.add_argument("--out", default=None, help="JSON report (rewritten after every model)")
    ap.add_argument("--parts", default="a,b,c,d")
    ap.add_argument("--device", default=None, help="torch device of the HF references (default cuda if available)")
    ap.add_argument("--device-id", type=int, default=0, help="trtd_executor_config.device_id")
    ap.add_argument("--kv-mib", type=int, default=2048, help="KV pool of each executor (MiB)")
    ap.add_argument("--max-ctx", type=int, default=4096, help="max_context_length of the executors")
    ap.add_argument("--config", default="", help="more executor config fields, k=v,k=v")
    ap.add_argument("--prompt-len", type=int, default=200)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=32)
    ap.add_argument("--gen-kv", type=int, default=32)
    ap.add_argument("--kv-prompt-len", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--margin", type=float, default=0.05, help="base top-2 margin for b/c")
    ap.add_argument("--margin-cap", type=float, default=0.5, help="upper bound of the derived margin threshold")
    ap.add_argument("--gate", type=float, default=2.5e-2, help="relative L2 gate, bf16/fp16 KV executors")
    ap.add_argument("--gate-fp8", type=float, default=1e-1,
                    help="relative L2 gate for FP8 checkpoints (against the dequantized model: the activations of "
                         "prefill GEMMs are quantized to E4M3 per row)")
    ap.add_argument("--gate-fp32", type=float, default=1e-3, help="relative L2 gate, fp32 KV executors")
    ap.add_argument("--child-timeout", type=float, default=300)
    ap.add_argument("--time-limit", type=float, default=0, help="dump stacks and exit after this many seconds")
    common.add_exporter_args(ap)
    args = ap.parse_args()
    if args.role == "exporter":
        sys.exit(common.exporter_main(args))
    common.set_time_limit(args.time_limit)
    lib = trtd.Lib.get(args.lib)
    device = common.pick_device(args.device)
    import torch
    torch.manual_seed(0)
    result = {"lib": lib.path, "version": lib.version, "abi": lib.abi_version, "env": common.env_info(),
              "hf_device": device, "args": {k: v for k, v in vars(args).items() if k not in ("cmd_fd", "msg_fd")},
              "models": []}
    log(f"check_numerics: {lib.version} (ABI {lib.abi_version}) from {lib.path}; HF references on {device}")
    for model_dir in [x for x in args.models.split(",") if x]:
        result["models"].append(run_model(args, model_dir, device))
        ok, rows = summarize(result)
        result["ok"] = ok
        common.write_json(args.out, result)
    ok, rows = summarize(result)
    result["ok"] = ok
    result["table"] = rows
    common.write_json(args.out, result)
    log("\n" + common.table(rows, ["model", "part", "status", "figures"]))
    log(f"NUMERICS {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
