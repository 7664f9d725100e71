#!/usr/bin/env python3
"""Short summary of numerics.json and bench.json (either may be missing or partial).

    python3 tools/gpu/summarize.py OUT/numerics.json OUT/bench.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except Exception as e:  # noqa: BLE001
        print(f"{path}: unreadable ({e})")
        return None


def main():
    import common
    from check_numerics import summarize as num_rows
    from bench_cuda import summary_rows as bench_rows
    num = load(sys.argv[1] if len(sys.argv) > 1 else None)
    bench = load(sys.argv[2] if len(sys.argv) > 2 else None)
    if num:
        ok, rows = num_rows(num)
        print(f"\nNUMERICS {'PASS' if ok else 'FAIL'}  ({num.get('version')})")
        print(common.table(rows, ["model", "part", "status", "figures"]))
    else:
        print("\nNUMERICS: no report")
    if bench:
        print(f"\nBENCH ({bench.get('version')}; copy bandwidth {bench.get('copy_bandwidth_GBps', 0):.0f} GB/s)")
        print(common.table(bench_rows(bench), ["model", "figure", "ours", "roofline", "ours/roof", "hf", "ratio"]))
        for name, m in bench.get("models", {}).items():
            for e in m.get("errors", []):
                print(f"  {name}: {e[:200]}")
    else:
        print("\nBENCH: no report")


if __name__ == "__main__":
    main()
