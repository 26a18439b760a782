"""MinHash signatures per second: graphinv's vectorised one-permutation MinHash vs datasketch.

Both hash word 3-grams of the same normalised texts (synthetic prompts from
``graphinv.synth.logs``) into 60 values; datasketch runs its usual per-text
``MinHash.update_batch`` loop. The table gives texts, seconds, texts/s and CPU seconds.

Run::

    .venv/bin/python bench/bench_minhash.py --texts 50000
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform as host
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from datasketch import MinHash
from rich.console import Console
from rich.table import Table

from graphinv.ingest.fingerprint import FingerprintParams, mask, minhash, normalise
from graphinv.synth.logs import write_logs


def texts_from_synthetic(n: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        write_logs(Path(tmp), preset="small", seed=3, n_accounts=max(300, n // 200))
        with gzip.open(next((Path(tmp) / "logs").iterdir()), "rt") as handle:
            rows = [json.loads(line) for line in itertools.islice(handle, n)]
    return [r["prompt"] if "prompt" in r else r["messages"][-1]["content"] for r in rows]


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=50_000)
    args = parser.parse_args()
    texts = texts_from_synthetic(args.texts)
    params = FingerprintParams()
    array = pa.array(texts)
    words = [t.split() for t in normalise(array).to_pylist()]

    def ours() -> None:
        minhash(mask(array), params)

    def theirs() -> None:
        for w in words:
            m = MinHash(num_perm=params.num_perm, seed=1)
            m.update_batch([" ".join(w[i : i + 3]).encode() for i in range(max(1, len(w) - 2))])

    table = Table(title=f"MinHash of {len(texts):,} prompts — {host.node()}, "
                        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for heading in ("implementation", "seconds", "texts/s", "CPU s", "texts per CPU-s"):
        table.add_column(heading, justify="right")
    for name, fn in (("graphinv (numpy, one-permutation)", ours),
                     ("datasketch MinHash.update_batch", theirs)):
        wall, cpu = timed(fn)
        table.add_row(name, f"{wall:.2f}", f"{len(texts) / wall:,.0f}", f"{cpu:.2f}",
                      f"{len(texts) / cpu:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
