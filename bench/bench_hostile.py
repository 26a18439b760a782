"""Hostile input files against `graphinv load`: time, peak memory and the error given.

Builds, in a scratch folder, a small valid platform plus one hostile file per case, then runs
``graphinv load`` on each in a child process under ``/usr/bin/time -v`` (peak resident set
size as the kernel reports it) and prints one table row per case:

* ``gzip bomb``: ``links.csv.gz`` of ~1 MB that inflates to 1 GiB of valid-looking rows;
* ``endless line``: ``links.csv.gz`` inflating to 1 GiB of one line without a newline;
* ``wide header``: ``accounts.csv`` whose header has 1,000,000 columns.

Usage::

    python bench/bench_hostile.py [--inflated-mib 1024] [--work /tmp/graphinv-hostile]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

MiB = 1024 * 1024
GOOD = {
    "accounts.csv": "account_id,created_at\na1,2024-01-01T00:00:00Z\n",
    "links.csv": "account_id,kind,value,first_seen,last_seen,count\n",
    "usage.csv": "account_id,hour,model,requests,input_tokens,output_tokens\n",
}
ROW = b"a1,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,10\n"


def gzip_stream(path: Path, head: bytes, unit: bytes, total: int) -> None:
    """Write a gzip file of ``head`` then ``unit`` repeated to ``total`` bytes, streamed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = unit * max(1, MiB // len(unit))
    with path.open("wb") as out:
        out.write(compressor.compress(head))
        written = len(head)
        while written < total:
            piece = block[: total - written]
            out.write(compressor.compress(piece))
            written += len(piece)
        out.write(compressor.flush())


def build(work: Path, inflated: int) -> dict[str, Path]:
    cases = {}
    for case in ("gzip bomb", "endless line", "wide header"):
        folder = work / case.replace(" ", "_")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, text in GOOD.items():
            (folder / name).write_text(text)
        cases[case] = folder
    header = GOOD["links.csv"].encode()
    (cases["gzip bomb"] / "links.csv").unlink()
    gzip_stream(cases["gzip bomb"] / "links.csv.gz", header, ROW, inflated)
    (cases["endless line"] / "links.csv").unlink()
    gzip_stream(cases["endless line"] / "links.csv.gz", header, b"x" * 4096, inflated)
    wide = ",".join(f"c{i}" for i in range(1_000_000)) + "\n"
    (cases["wide header"] / "accounts.csv").write_text(wide)
    return cases


def run_load(folder: Path, work: Path) -> tuple[int, float, float, str]:
    """Exit status, wall seconds, peak RSS (MB) and the last output line of one load."""
    command = [
        "/usr/bin/time", "-v", sys.executable, "-m", "graphinv.cli.main", "--quiet",
        "--db", str(work / f"{folder.name}.duckdb"), "load", str(folder),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    seconds = time.perf_counter() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    lines = [
        line for line in (done.stdout + done.stderr).splitlines()
        if line.startswith("Error")
    ]
    return done.returncode, seconds, int(peak.group(1)) / 1024 if peak else float("nan"), (
        lines[-1] if lines else ""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflated-mib", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path("/tmp/graphinv-hostile"))
    args = parser.parse_args()
    cases = build(args.work, args.inflated_mib * MiB)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; inflated size {args.inflated_mib:,} MiB")
    print(f"| case | file MB | exit | seconds | peak MB | message |\n|{'---|' * 6}")
    for case, folder in cases.items():
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        code, seconds, peak, message = run_load(folder, args.work)
        print(f"| {case} | {size:.1f} | {code} | {seconds:.1f} | {peak:,.0f} | {message[:150]} |")


if __name__ == "__main__":
    main()
