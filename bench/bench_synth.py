"""Benchmark the synthetic platform generator: time, peak memory, rows and bytes written.

Each preset runs in a fresh subprocess so peak RSS is that preset's own.

Usage::

    .venv/bin/python bench/bench_synth.py                   # small, medium, case-24k
    .venv/bin/python bench/bench_synth.py small --fmt csv.gz
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine


def run_one(preset: str, fmt: str, seed: int) -> dict:
    """Generate and write one preset in this process; return its figures."""
    from graphinv.synth import generate, write_platform

    t0 = time.perf_counter()
    plat = generate(preset=preset, seed=seed)
    t_gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t1 = time.perf_counter()
        written = write_platform(plat, Path(out), fmt=fmt)
        t_write = time.perf_counter() - t1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "preset": preset,
        "accounts": len(plat.accounts),
        "generate_s": round(t_gen, 1),
        "write_s": round(t_write, 1),
        "peak_rss_mb": round(peak_mb),
        "written": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=["small", "medium", "case-24k"])
    parser.add_argument("--fmt", default="parquet", choices=["parquet", "csv", "csv.gz"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.presets[0], args.fmt, args.seed)))
        return
    print(f"machine: {machine()}; format {args.fmt}")
    results = []
    for preset in args.presets:
        cmd = [sys.executable, __file__, preset, "--fmt", args.fmt, "--seed", str(args.seed)]
        out = subprocess.run([*cmd, "--child"], check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    tables = list(results[0]["written"])
    head = ["preset", "accounts", "gen s", "write s", "peak MB", *tables, "MB written"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in results:
        w = r["written"]
        cells = [r["preset"], f"{r['accounts']:,}", r["generate_s"], r["write_s"], r["peak_rss_mb"]]
        cells += [f"{w[t][0]:,}" for t in tables]
        cells.append(f"{sum(b for _, b in w.values()) / 1e6:.1f}")
        print(" | ".join(str(c) for c in cells))
    print("\nbytes per table:")
    for r in results:
        sizes = ", ".join(f"{t} {b / 1e6:.1f} MB" for t, (_, b) in r["written"].items())
        print(f"  {r['preset']}: {sizes}")


if __name__ == "__main__":
    main()
