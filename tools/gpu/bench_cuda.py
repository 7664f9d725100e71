#!/usr/bin/env python3
"""Throughput bench of an executor library (meant for libtrtd_executor_cuda.so on one GPU).

    python3 tools/gpu/bench_cuda.py --lib packages/trtllm/build/libtrtd_executor_cuda.so \
        --models /tmp/trtd-models/8b-bf16,/tmp/trtd-models/1b-bf16 [--out bench.json]

  a. device copy bandwidth, measured in this run (torch copy_ of --copy-gib GiB, read + write bytes / time,
     best of 10);
  b. weight bytes from the safetensors headers; decode roofline tok/s = B * bandwidth / (weight bytes +
     B * KV bytes read per step) (B = 1: the batch-1 roofline; the KV term uses the mean context);
  c. our decode tok/s at each --batches B: B greedy requests of --prompt tokens and --new new tokens each (after
     a warm-up round that also captures the CUDA graph of that batch); steady state = tokens that arrive after
     the last request's first token, over that time; ratio to the roofline;
  d. transformers eager generate (the model's dtype, sdpa, no compile) at --hf-batches, --hf-new tokens,
     tok/s including its prefill; our ratio to it at the same batch;
  e. prefill: our TTFT of a CONTEXT_ONLY request (max_new 1) of each --prefill length vs one HF forward of the
     same tokens (sdpa, logits_to_keep=1, synchronized, after a warm-up), best of 3; ratio;
  f. KV device to device: a child process (this script, --role exporter) exports context-only requests of
     about --kv-mib-targets MiB of KV (kv_export_device) and this process kv_import_device's them (timed call,
     best of 3 after the first, which maps the peer pool); GB/s vs a torch device copy of the same bytes.
     UNSUPPORTED is a skip.
The last output line is one JSON object with every figure and ratio (also written to --out).
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


def ints(s):
    return [int(x) for x in str(s).split(",") if x.strip()]


class Dev:
    """torch device timing helpers (CUDA events on a GPU, perf_counter on the CPU)."""

    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = device
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn, reps=3, warmup=1):
        for _ in range(warmup):
            fn()
        self.sync()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            self.sync()
            best = min(best, time.perf_counter() - t0)
        return best

    def time_loop(self, fn, reps=5, min_s=0.005):
        """Best seconds per call of fn, timing back-to-back loops of k calls (k so that a loop takes >= min_s):
        a single small device copy is shorter than the host's launch + synchronize overhead."""
        fn()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        k = max(1, int(min_s / max(time.perf_counter() - t0, 1e-7)))
        best = float("inf")
        for _ in range(reps):
            self.sync()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            self.sync()
            best = min(best, (time.perf_counter() - t0) / k)
        return best

    def copy_single_s(self, nbytes, reps=10):
        """Best wall seconds of ONE device copy of nbytes followed by a synchronize: what a blocking transfer of
        that size costs with a plain copy (the launch and the wait included, as in kv_import_device)."""
        torch = self.torch
        src = torch.empty(int(nbytes), dtype=torch.uint8, device=self.device)
        dst = torch.empty_like(src)
        src.fill_(1)
        best = float("inf")
        for _ in range(reps + 1):
            self.sync()
            t0 = time.perf_counter()
            dst.copy_(src)
            self.sync()
            best = min(best, time.perf_counter() - t0)
        del src, dst
        if self.cuda:
            torch.cuda.empty_cache()
        return best

    def copy_gbps(self, nbytes, reps=10):
        """Best read+write GB/s of a device copy of nbytes (and the seconds of one copy)."""
        torch = self.torch
        src = torch.empty(int(nbytes), dtype=torch.uint8, device=self.device)
        dst = torch.empty_like(src)
        src.fill_(1)
        t = self.time_loop(lambda: dst.copy_(src), reps=reps)
        del src, dst
        if self.cuda:
            torch.cuda.empty_cache()
        return 2 * nbytes / t / 1e9, t


def prompts_for(seed, n, length, vocab):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=length).astype(np.int32).tolist() for _ in range(n)]


# ------------------------------------------------------------------------------------------------

def bench_decode(ex, args, B, vocab):
    ps = prompts_for(1000 + B, B, args.prompt, vocab)
    ids = [ex.enqueue(p, args.warmup_new) for p in ps]  # warm-up: the batch's graph gets captured here
    ex.drain(ids)
    ps = prompts_for(2000 + B, B, args.prompt, vocab)
    s0 = ex.stats()
    t0 = time.perf_counter()
    ids = [ex.enqueue(p, args.new) for p in ps]
    out = ex.drain(ids, timeout_s=args.drain_timeout)
    t1 = time.perf_counter()
    s1 = ex.stats()
    res = list(out.values())
    bad = [r for r in res if len(r.tokens) != args.new]
    start = max(r.t_first for r in res if r.t_first is not None)
    end = max(r.t_final for r in res)
    in_window = sum(n for r in res for (t, n) in r.arrivals if t > start)
    window = end - start
    method = "after the last first token"
    if in_window < max(B, 8) or window <= 0:  # responses came in too few drains to see a steady state
        start = min(r.t_first for r in res if r.t_first is not None)
        window = end - start
        in_window = sum(len(r.tokens) for r in res) - B
        method = "approx: (all tokens - B) / (last final - first first token)"
    d = {"batch": B, "prompt": args.prompt, "new": args.new,
         "tok_s": in_window / window if window > 0 and in_window > 0 else None,
         "step_ms": 1e3 * window / (in_window / B) if in_window > 0 else None,
         "window_s": window, "window_tokens": in_window, "method": method,
         "ttft_max_s": start - t0, "total_s": t1 - t0,
         "total_tok_s": B * args.new / (t1 - t0),
         "iterations": s1["iterations"] - s0["iterations"],
         "generated": s1["generated_tokens"] - s0["generated_tokens"]}
    if bad:
        d["error"] = f"{len(bad)} requests gave != {args.new} tokens (e.g. {bad[0]})"
    return d


def bench_prefill_ours(ex, L, vocab, reps=3):
    p = prompts_for(3000 + L, 1, L, vocab)[0]
    times = []
    for k in range(reps + 1):
        rid = ex.enqueue(p, 1, type=trtd.CONTEXT_ONLY)
        r = ex.drain([rid])[rid]
        if r.error_status or not r.tokens:
            raise RuntimeError(f"context-only request of {L} tokens failed: {r}")
        times.append(r.t_first - r.t_enqueue)
        ex.export_release(rid)
    return {"ttft_ms": 1e3 * min(times[1:]), "first_ms": 1e3 * times[0], "all_ms": [round(1e3 * t, 3) for t in times]}


def bench_kv(ex, child, args, dev, layout, vocab, max_ctx):
    bpt = layout["bytes_per_block"] / layout["tokens_per_block"]
    jobs = []
    for mib in args.kv_mib_targets:
        n = int(min(max(1, -(-mib * (1 << 20) // bpt)), max_ctx - 1, args.kv_max_tokens))
        if any(j["prompt_len"] == n for j in jobs):
            continue
        jobs.append({"name": f"{mib}MiB", "prompt_len": n,
                     "prompt": prompts_for(4000 + n, 1, n, vocab)[0], "max_new": 1, "host_copy": False,
                     "device": True})
    ready = child.wait_ready(args.child_timeout)
    out = {"child_load_s": ready.get("load_s"), "child_uuid": ready.get("uuid") or ready.get("uuid_error"),
           "runs": []}
    try:
        out["parent_uuid"] = ex.device_uuid()
    except trtd.TrtdError as e:
        out["parent_uuid"] = str(e)
    reply = child.request({"cmd": "export", "jobs": [{k: v for k, v in j.items() if k != "prompt_len"} for j in jobs]},
                          timeout=args.child_timeout)
    rids = [j["rid"] for j in reply["jobs"] if "info" in j]
    try:
        for j in reply["jobs"]:
            run = {"name": j["name"], "child_context_s": j.get("t_context_s")}
            out["runs"].append(run)
            if "info" not in j:
                run["error"] = f"context-only failed: {j.get('finish')} {j.get('error')}"
                continue
            info = j["info"]
            run.update(tokens=info["num_tokens"], bytes=info["bytes"], blocks=info["num_blocks"])
            if j.get("desc") is None:
                run["skipped"] = j.get("desc_error")
                log(f"    kv {j['name']}: device path skipped: {j.get('desc_error')}")
                continue
            desc = bytes.fromhex(j["desc"])
            times = []
            for k in range(args.kv_reps + 1):
                iid = ex.import_reserve(info["num_tokens"])
                try:
                    t0 = time.perf_counter()
                    ex.import_device(iid, desc)
                    times.append(time.perf_counter() - t0)
                except trtd.TrtdError as e:
                    ex.import_abort(iid)
                    run["skipped" if e.status == trtd.UNSUPPORTED else "error"] = str(e)
                    log(f"    kv {j['name']}: kv_import_device: {e}")
                    break
                ex.import_abort(iid)
            if len(times) < 2:
                continue
            best = min(times[1:])
            torch_gbps, torch_s = dev.copy_gbps(info["bytes"], reps=5)
            run.update(first_call_ms=1e3 * times[0], import_ms=1e3 * best,
                       import_GBps=info["bytes"] / best / 1e9,
                       torch_copy_ms=1e3 * torch_s, torch_copy_GBps=info["bytes"] / torch_s / 1e9,
                       torch_copy_rw_GBps=torch_gbps)
            run["ratio_vs_torch_copy"] = run["import_GBps"] / run["torch_copy_GBps"]
            single = dev.copy_single_s(info["bytes"])
            run.update(torch_single_copy_ms=1e3 * single, torch_single_copy_GBps=info["bytes"] / single / 1e9,
                       ratio_vs_single_copy=single / best)
            log(f"    kv {j['name']}: {info['bytes'] / 2**20:.1f} MiB ({info['num_tokens']} tokens, {info['num_blocks']} "
                f"blocks): import_device {run['import_ms']:.3f} ms = {run['import_GBps']:.1f} GB/s (first call "
                f"{run['first_call_ms']:.2f} ms); torch copy of the same bytes {run['torch_copy_ms']:.3f} ms = "
                f"{run['torch_copy_GBps']:.1f} GB/s; ratio {run['ratio_vs_torch_copy']:.2f}")
    finally:
        child.request({"cmd": "release", "rids": rids}, timeout=args.child_timeout)
    return out


def bench_hf(model_dir, args, dev, vocab, dtype):
    torch = dev.torch
    out = {"generate": {}, "prefill": {}}
    t0 = time.monotonic()
    model = common.load_hf(model_dir, dtype, args.hf_attn, dev.device)
    out["load_s"] = round(time.monotonic() - t0, 2)
    gen_kw = dict(do_sample=False, max_new_tokens=args.hf_new, min_new_tokens=args.hf_new, pad_token_id=0,
                  use_cache=True)
    for B in args.hf_batches:
        try:
            ids = torch.tensor(prompts_for(5000 + B, B, args.prompt, vocab), device=dev.device, dtype=torch.long)
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=mask, **dict(gen_kw, max_new_tokens=2, min_new_tokens=2))
                dev.sync()
                t0 = time.perf_counter()
                o = model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
                dev.sync()
                dt = time.perf_counter() - t0
            n_new = int(o.shape[1] - ids.shape[1])
            out["generate"][str(B)] = {"tok_s": B * n_new / dt, "seconds": dt, "new": n_new}
            log(f"    HF generate batch {B}: {B * n_new / dt:.1f} tok/s ({n_new} new tokens in {dt:.2f} s)")
        except Exception as e:  # noqa: BLE001
            out["generate"][str(B)] = {"error": f"{type(e).__name__}: {e}"}
            log(f"    HF generate batch {B}: ERROR {e}")
    for L in args.prefill:
        try:
            ids = torch.tensor(prompts_for(3000 + L, 1, L, vocab), device=dev.device, dtype=torch.long)

            def fwd():
                with torch.inference_mode():
                    model(input_ids=ids, logits_to_keep=1, use_cache=False)
            t = dev.time(fwd, reps=3, warmup=1)
            out["prefill"][str(L)] = {"ms": 1e3 * t}
        except Exception as e:  # noqa: BLE001
            out["prefill"][str(L)] = {"error": f"{type(e).__name__}: {e}"}
    del model
    if dev.cuda:
        torch.cuda.empty_cache()
    return out


def run_model(args, model_dir, dev, bw_gbps):
    name = os.path.basename(os.path.normpath(model_dir))
    log(f"\n== {name} ({model_dir})")
    m = {"dir": model_dir, "errors": []}
    wbytes, sizes = common.weight_bytes(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    embed = sizes.get("model.embed_tokens.weight", 0)
    tied = "lm_head.weight" not in sizes
    m.update(weight_bytes=wbytes, weight_bytes_streamed=wbytes if tied else wbytes - embed, tied=tied)
    kv_bpt = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * (
        cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]) * 2  # bf16/fp16 K and V
    m["kv_bytes_per_token"] = kv_bpt
    mean_ctx = args.prompt + args.new / 2

    def roofline(B):
        return B * bw_gbps * 1e9 / (wbytes + B * mean_ctx * kv_bpt)
    m["roofline_tok_s_b1"] = roofline(1)
    log(f"  weights {wbytes / 1e9:.3f} GB ({'tied' if tied else 'untied'}; {m['weight_bytes_streamed'] / 1e9:.3f} GB "
        f"read per step without the embedding table), KV {kv_bpt / 1024:.0f} KiB/token; roofline at batch 1 "
        f"{m['roofline_tok_s_b1']:.0f} tok/s at {bw_gbps:.0f} GB/s")
    config = dict(kv_memory_bytes=args.kv_mib << 20, device_id=args.device_id,
                  max_batch_size=max(args.batches + [8]), max_tokens_per_iteration=args.max_tokens_per_iter,
                  max_context_length=args.max_ctx)
    config.update(common.parse_config(args.config))
    m["config"] = config
    child = None
    ex = None
    try:
        if "f" in args.parts:
            cc = dict(config, kv_memory_bytes=args.child_kv_mib << 20, max_batch_size=8)
            child = common.ExporterProc(os.path.abspath(__file__), args.lib, model_dir, cc,
                                        time_limit=args.time_limit)
        ex = trtd.Executor.open(args.lib, model_dir, **config)
        vocab = ex.vocab
        layout = ex.kv_layout()
        m.update(create_s=round(ex.create_s, 2), version=ex.lib.version, kv_layout=layout)
        log(f"  executor created in {ex.create_s:.1f} s; KV {layout['dtype_name']} {layout['tokens_per_block']} "
            f"tokens/block, {ex.stats()['kv_blocks_total']} blocks")
        if child is not None:
            child.wait_ready(args.child_timeout)  # its load overlapped ours; idle from now on
        if "c" in args.parts:
            m["decode"] = {}
            for B in args.batches:
                try:
                    d = bench_decode(ex, args, B, vocab)
                    d["roofline_tok_s"] = roofline(B)
                    d["ratio_to_roofline"] = d["tok_s"] / d["roofline_tok_s"] if d["tok_s"] else None
                    m["decode"][str(B)] = d
                    log(f"    decode batch {B}: {_f(d['tok_s'])} tok/s ({_f(d['step_ms'], 2)} ms/step), roofline "
                        f"{d['roofline_tok_s']:.0f} -> {_f(d['ratio_to_roofline'], 3)}; TTFT(max) "
                        f"{d['ttft_max_s'] * 1e3:.1f} ms; {d['iterations']} iterations"
                        + ("" if d["method"].startswith("after") else f" ({d['method']})")
                        + (f"; {d['error']}" if "error" in d else ""))
                except Exception as e:  # noqa: BLE001
                    m["decode"][str(B)] = {"error": f"{type(e).__name__}: {e}"}
                    m["errors"].append(f"decode {B}: {e}")
                    log(f"    decode batch {B}: ERROR {e}\n{traceback.format_exc()}")
        if "e" in args.parts:
            m["prefill"] = {}
            for L in args.prefill:
                if L >= ex.info["max_context_length"]:
                    continue
                try:
                    m["prefill"][str(L)] = bench_prefill_ours(ex, L, vocab)
                    log(f"    prefill {L} tokens: our TTFT {m['prefill'][str(L)]['ttft_ms']:.2f} ms")
                except Exception as e:  # noqa: BLE001
                    m["prefill"][str(L)] = {"error": f"{type(e).__name__}: {e}"}
                    m["errors"].append(f"prefill {L}: {e}")
                    log(f"    prefill {L}: ERROR {e}")
        if "f" in args.parts:
            try:
                m["kv_transfer"] = bench_kv(ex, child, args, dev, layout, vocab, ex.info["max_context_length"])
            except Exception as e:  # noqa: BLE001
                m["kv_transfer"] = {"error": f"{type(e).__name__}: {e}"}
                m["errors"].append(f"kv: {e}")
                log(f"    kv transfer: ERROR {e}\n{traceback.format_exc()}")
        idle, st = ex.wait_idle(5.0)
        m["idle_end"] = idle
        if not idle:
            m["errors"].append(f"executor not idle at the end: {st}")
    except Exception as e:  # noqa: BLE001
        m["errors"].append(f"{type(e).__name__}: {e}")
        log(f"  ERROR: {e}\n{traceback.format_exc()}")
    finally:  # the importer goes first (it may still map the exporter's pool), then the exporter
        if ex is not None:
            ex.close()
        if child is not None:
            child.close()
    if "d" in args.parts or "e" in args.parts:
        try:
            hf = bench_hf(model_dir, args, dev, cfg.get("vocab_size"), common.model_dtype_name(model_dir))
            m["hf"] = hf
            for B, g in hf["generate"].items():
                ours = m.get("decode", {}).get(B, {}).get("tok_s")
                if ours and g.get("tok_s"):
                    g["ours_tok_s"] = ours
                    g["ratio_ours_to_hf"] = ours / g["tok_s"]
            for L, p in hf["prefill"].items():
                ours = m.get("prefill", {}).get(L, {})
                if p.get("ms") and ours.get("ttft_ms"):
                    ours["hf_ms"] = p["ms"]
                    ours["ratio_hf_to_ours"] = p["ms"] / ours["ttft_ms"]  # > 1: we are faster
                    log(f"    prefill {L}: ours {ours['ttft_ms']:.2f} ms vs HF forward {p['ms']:.2f} ms "
                        f"-> HF/ours {ours['ratio_hf_to_ours']:.2f}")
        except Exception as e:  # noqa: BLE001
            m["errors"].append(f"hf: {e}")
            log(f"  HF: ERROR {e}\n{traceback.format_exc()}")
    return name, m


def summary_rows(result):
    rows = []
    for name, m in result["models"].items():
        for B, d in m.get("decode", {}).items():
            hf = m.get("hf", {}).get("generate", {}).get(B, {})
            rows.append([name, f"decode b{B}", _f(d.get("tok_s")), _f(d.get("roofline_tok_s")),
                         _f(d.get("ratio_to_roofline"), 3), _f(hf.get("tok_s")), _f(hf.get("ratio_ours_to_hf"), 2)])
        for L, p in m.get("prefill", {}).items():
            rows.append([name, f"prefill {L} (ms)", _f(p.get("ttft_ms"), 2), "", "", _f(p.get("hf_ms"), 2),
                         _f(p.get("ratio_hf_to_ours"), 2)])
        kv = m.get("kv_transfer", {})
        for r in kv.get("runs", []) if isinstance(kv, dict) else []:
            rows.append([name, f"kv import {r.get('name')} (GB/s)", _f(r.get("import_GBps")), "", "",
                         _f(r.get("torch_copy_GBps")) if "torch_copy_GBps" in r else (r.get("skipped") or r.get("error") or "")[:40],
                         _f(r.get("ratio_vs_torch_copy"), 2)])
            if "torch_single_copy_GBps" in r:
                rows.append([name, f"kv import {r.get('name')} vs 1 copy+sync", _f(r.get("import_GBps")), "", "",
                             _f(r.get("torch_single_copy_GBps")), _f(r.get("ratio_vs_single_copy"), 2)])
    return rows


def _f(x, nd=1):
    return "" if x is None else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--models", default="", help="comma-separated model directories (e.g. the 8B, then the 1B)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--parts", default="a,b,c,d,e,f")
    ap.add_argument("--device", default=None)
    ap.add_argument("--device-id", type=int, default=0)
    ap.add_argument("--copy-gib", type=float, default=2.0)
    ap.add_argument("--batches", type=ints, default=[1, 8, 32, 128])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--warmup-new", type=int, default=8)
    ap.add_argument("--hf-batches", type=ints, default=[1, 32])
    ap.add_argument("--hf-new", type=int, default=32)
    ap.add_argument("--hf-attn", default="sdpa")
    ap.add_argument("--prefill", type=ints, default=[1024, 8192])
    ap.add_argument("--kv-mib-targets", type=ints, default=[16, 512])
    ap.add_argument("--kv-max-tokens", type=int, default=8192)
    ap.add_argument("--kv-reps", type=int, default=10,
                    help="timed imports per size, best kept: the same estimator as the one-copy baseline (best of 10)")
    ap.add_argument("--kv-mib", type=int, default=6144, help="KV pool of the measured executor (MiB)")
    ap.add_argument("--child-kv-mib", type=int, default=2048, help="KV pool of the exporter child (MiB)")
    ap.add_argument("--max-ctx", type=int, default=16384)
    ap.add_argument("--max-tokens-per-iter", type=int, default=8192)
    ap.add_argument("--config", default="", help="more executor config fields, k=v,k=v")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--child-timeout", type=float, default=300)
    ap.add_argument("--time-limit", type=float, default=0)
    common.add_exporter_args(ap)
    args = ap.parse_args()
    if args.role == "exporter":
        sys.exit(common.exporter_main(args))
    common.set_time_limit(args.time_limit)
    args.parts = set(args.parts.split(","))
    lib = trtd.Lib.get(args.lib)
    dev = Dev(common.pick_device(args.device))
    result = {"lib": lib.path, "version": lib.version, "env": common.env_info(), "torch_device": dev.device,
              "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()
                       if k not in ("cmd_fd", "msg_fd")},
              "models": {}}
    log(f"bench_cuda: {lib.version} from {lib.path}; torch device {dev.device}")
    bw = None
    if "a" in args.parts or "b" in args.parts:
        nbytes = int(args.copy_gib * (1 << 30))
        bw, t = dev.copy_gbps(nbytes)
        result["copy_bandwidth_GBps"] = bw
        result["copy_bytes"] = nbytes
        log(f"  device copy of {nbytes / 2**30:.2f} GiB: {t * 1e3:.3f} ms -> {bw:.0f} GB/s (read + write)")
    for model_dir in [x for x in args.models.split(",") if x]:
        name, m = run_model(args, model_dir, dev, bw or 1.0)
        result["models"][name] = m
        common.write_json(args.out, result)
    rows = summary_rows(result)
    result["table"] = rows
    common.write_json(args.out, result)
    log("\n" + common.table(rows, ["model", "figure", "ours", "roofline", "ours/roof", "hf", "ratio"]))
    log("(decode ratio = ours/HF tok/s at the same batch; prefill ratio = HF ms / our TTFT ms, > 1 = faster; "
        f"kv ratio = import GB/s / torch copy GB/s; bandwidth {bw and round(bw)} GB/s)")
    print(json.dumps(result, default=common.json_default, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
