"""Per-kernel times of a steady decode step, for finding where a batch-1 step goes beyond the weight stream.

    ncu --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --launch-skip S --launch-count N \
        python3 tools/gpu/profile_decode.py --lib LIB --model DIR [--batch 1] [--new 64]

Runs one warm-up request (graphs captured), then B greedy requests; under ncu each kernel is replayed alone, so the
sum of kernel times against the step time of a plain run (printed last, measured without ncu) shows the gaps.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import trtd  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    a = ap.parse_args()
    vocab = json.load(open(os.path.join(a.model, "config.json")))["vocab_size"]
    rng = np.random.default_rng(0)
    ex = trtd.Executor(a.lib, a.model, max_batch_size=max(8, a.batch), kv_memory_bytes=2 << 30,
                       max_tokens_per_iteration=2048)
    try:
        warm = [ex.enqueue(rng.integers(0, vocab, a.prompt).tolist(), 8) for _ in range(a.batch)]
        ex.drain(warm)
        t0 = time.perf_counter()
        ids = [ex.enqueue(rng.integers(0, vocab, a.prompt).tolist(), a.new) for _ in range(a.batch)]
        out = ex.drain(ids)
        dt = time.perf_counter() - t0
        n = sum(len(r.tokens) for r in out.values())
        print(json.dumps({"batch": a.batch, "tokens": n, "seconds": dt, "step_ms": 1e3 * dt / a.new}))
    finally:
        ex.close()


if __name__ == "__main__":
    main()
