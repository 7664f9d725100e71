"""Encodes texts with Python tiktoken (its native Rust core) for the parity test and the bench.

usage: tiktoken_ids.py RANKS_FILE PATTERN_FILE TEXTS_JSON OUT_BIN [--time SECONDS]
RANKS_FILE holds `<base64> <rank>` lines; TEXTS_JSON a list of strings. Writes, per text, its number of ids and
the ids (little-endian uint32) to OUT_BIN. With --time, then encodes all texts repeatedly for at least SECONDS
(and 5 passes) and prints one JSON line: {"tokens": total ids, "medianSeconds": median time of one pass}.
"""
import base64
import json
import statistics
import struct
import sys
import time

import tiktoken


def main() -> None:
    ranks_file, pattern_file, texts_file, out_file = sys.argv[1:5]
    ranks = {}
    with open(ranks_file, "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    with open(pattern_file, encoding="utf-8") as f:
        pattern = f.read()
    with open(texts_file, encoding="utf-8", errors="surrogatepass") as f:
        texts = json.load(f)
    enc = tiktoken.Encoding("trtd-parity", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    total = 0
    with open(out_file, "wb") as out:
        for t in texts:
            ids = enc.encode(t, disallowed_special=())
            total += len(ids)
            out.write(struct.pack(f"<I{len(ids)}I", len(ids), *ids))
    if "--time" in sys.argv:
        seconds = float(sys.argv[sys.argv.index("--time") + 1])
        for t in texts:  # warm-up
            enc.encode(t, disallowed_special=())
        times = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 5:
            t0 = time.perf_counter()
            for t in texts:
                enc.encode(t, disallowed_special=())
            times.append(time.perf_counter() - t0)
        print(json.dumps({"tokens": total, "medianSeconds": statistics.median(times), "passes": len(times)}))


if __name__ == "__main__":
    main()
