"""Request-log ingest: requests per second and peak memory, and detection from logs vs planted.

Two parts (a benchmark, not a test):

``speed``: synthetic request logs of growing size (``graphinv.synth.logs``, the small preset
scaled so the platform sends about the asked number of requests), each ingested in a fresh
process under ``/usr/bin/time -v`` (peak resident memory of the whole process). The table
gives requests, seconds, requests/s, peak MB, and the 1-minute load average after the run:
on a shared machine it says how much CPU the ingest had.

``quality``: on the small preset, per seed, mean best-match F1 of extraction rings detected
from the planted tables vs from the tables ``ingest`` builds out of the same platform's
logs (plus the account export), and the ARI of recovered vs planted templates.

Run::

    .venv/bin/python bench/bench_ingest.py speed --requests 1000000 3000000 10000000
    .venv/bin/python bench/bench_ingest.py quality --seeds 21 22 23
"""

from __future__ import annotations

import argparse
import os
import platform as host
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.evaluate import evaluate
from graphinv.ingest.load import read_dir
from graphinv.ingest.logs import assignment_ari, ingest_logs
from graphinv.synth.logs import write_logs

# The small preset sends about this many requests per account (measured: 1.82M / 6,000).
REQUESTS_PER_ACCOUNT = 303
ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    return (f"{host.node()} · {os.cpu_count()} CPUs · Python {host.python_version()} · "
            f"load {os.getloadavg()[0]:.1f}")


def speed(sizes: list[int], workdir: Path, console: Console) -> None:
    table = Table(title=f"graphinv ingest — {machine()}")
    for heading in ("requests", "log MB (gz)", "seconds", "requests/s", "CPU s",
                    "requests/CPU-s", "peak MB", "templates", "load after"):
        table.add_column(heading, justify="right")
    for size in sizes:
        data = workdir / f"logs-{size}"
        if not (data / "logs").exists():
            write_logs(data, preset="small", seed=7,
                       n_accounts=max(100, round(size / REQUESTS_PER_ACCOUNT)))
        out = workdir / f"out-{size}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        command = ["/usr/bin/time", "-v", sys.executable, "-m", "graphinv.cli.main", "--quiet",
                   "ingest", str(data / "logs"), str(out), "--base", str(data / "base"),
                   "--json", str(workdir / f"report-{size}.json")]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - started
        if done.returncode not in (0, 3):
            console.print(done.stdout, done.stderr)
            raise SystemExit(f"ingest failed for {size:,}")
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])
        cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", done.stderr)[1])
                  for kind in ("User", "System"))
        report = pd.read_json(workdir / f"report-{size}.json", typ="series")
        gz = sum(p.stat().st_size for p in (data / "logs").iterdir()) / 1e6
        n = int(report["requests_read"])
        table.add_row(f"{n:,}", f"{gz:,.0f}", f"{seconds:,.1f}", f"{n / seconds:,.0f}",
                      f"{cpu:,.1f}", f"{n / cpu:,.0f}", f"{peak / 1024:,.0f}",
                      f"{int(report['templates']):,}",
                      f"{os.getloadavg()[0]:.1f}")
        console.print(table)


def quality(seeds: list[int], workdir: Path, console: Console, n_accounts: int | None) -> None:
    table = Table(title=f"detection from logs vs planted fingerprints (small preset"
                        f"{'' if n_accounts is None else f', {n_accounts:,} accounts'}) — "
                        f"{machine()}")
    for heading in ("seed", "requests", "F1 planted", "F1 from logs", "difference",
                    "ARI user text", "ARI system prompt", "ingest s"):
        table.add_column(heading, justify="right")
    diffs = []
    for seed in seeds:
        data = workdir / f"quality-{seed}"
        summary = write_logs(data, preset="small", seed=seed, n_accounts=n_accounts)
        out = workdir / f"quality-out-{seed}"
        report = ingest_logs(data / "logs", out, base=data / "base", keep_assignments=True)
        scores = []
        for folder in (data, out):
            platform, _ = read_dir(folder, extra_kinds=["api_client"])
            found = detect_rings(project(platform), platform=platform)
            scores.append(evaluate(found.members, platform.labels).extraction_mean_f1)
        assignments = pd.read_parquet(out / "ingest_state" / "assignments.parquet")
        labels = pd.read_parquet(data / "request_labels.parquet")
        diffs.append(scores[1] - scores[0])
        table.add_row(str(seed), f"{summary['requests']:,}", f"{scores[0]:.3f}",
                      f"{scores[1]:.3f}", f"{scores[1] - scores[0]:+.3f}",
                      f"{assignment_ari(assignments, labels, 'user'):.4f}",
                      f"{assignment_ari(assignments, labels, 'system'):.4f}",
                      f"{report.seconds:,.0f}")
        console.print(table)
    worst = max(diffs, key=abs)
    console.print(f"largest |difference|: {abs(worst):.3f} (target ≤ 0.02)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--requests", type=int, nargs="+", default=[1_000_000, 3_000_000])
    q = sub.add_parser("quality")
    q.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    q.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Keep generated logs here (default: a temporary folder).")
    args = parser.parse_args()
    console = Console()
    scratch = ROOT / "data" if (ROOT / "data").exists() else None
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.part == "speed":
            speed(args.requests, workdir, console)
        else:
            quality(args.seeds, workdir, console, args.accounts)


if __name__ == "__main__":
    main()
