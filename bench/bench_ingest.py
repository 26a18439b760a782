"""Request-log ingest: requests per second and peak memory, and detection from logs vs planted.

Two parts (a benchmark, not a test):

``speed``: synthetic request logs of growing size (``graphinv.synth.logs``, the small preset
scaled so the platform sends about the asked number of requests), each ingested in a fresh
process under ``/usr/bin/time -v`` (CPU seconds of the process and its workers, threads
included; largest single-process peak resident memory) with each asked number of workers
(``--workers``) as threads or forked processes (``--parallel``). The whole process tree's
memory (sum of proportional set sizes, so pages the forked workers share with the parent
count once) is sampled every 0.2 s; its peak is the "peak MB (all)" column. The table also
gives the 1-minute load average before and after the run: on a shared machine it says how
much CPU the ingest had.

``quality``: on the small preset, per seed, mean best-match F1 of extraction rings detected
from the planted tables vs from the tables ``ingest`` builds out of the same platform's
logs (plus the account export), and the ARI of recovered vs planted templates.

Run::

    .venv/bin/python bench/bench_ingest.py speed --requests 1000000 10000000   # the defaults
    .venv/bin/python bench/bench_ingest.py speed --requests 1000000 --workers 0 1 2 \
        --parallel threads processes --chunk-mb 32
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

from graphinv.config import Settings
from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.evaluate import evaluate
from graphinv.ingest.load import read_dir
from graphinv.ingest.logs import (
    CHUNK_BYTES,
    assignment_ari,
    default_parallel,
    default_workers,
    ingest_logs,
)
from graphinv.synth.logs import write_logs

# The small preset sends about this many requests per account (measured: 1.82M / 6,000).
REQUESTS_PER_ACCOUNT = 303
ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    return (f"{host.node()} · {os.cpu_count()} CPUs · Python {host.python_version()} · "
            f"load {os.getloadavg()[0]:.1f}")


def tree_pss_kb(root: int) -> int:
    """Proportional set size (kB) of ``root`` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
        total += int(found[1]) if found else 0
    return total


def speed(sizes: list[int], workers: list[int] | None, kinds: list[str] | None,
          workdir: Path, console: Console, chunk_mb: int | None = None) -> None:
    table = Table(title=f"graphinv ingest — {machine()}")
    for heading in ("requests", "log MB (gz)", "workers", "seconds", "requests/s", "CPU s",
                    "requests/CPU-s", "peak MB (largest process)", "peak MB (all)",
                    "templates", "load before → after"):
        table.add_column(heading, justify="right")
    for size in sizes:
        data = workdir / f"logs-{size}"
        if not (data / "logs").exists():
            write_logs(data, preset="small", seed=7,
                       n_accounts=max(100, round(size / REQUESTS_PER_ACCOUNT)))
        # No workers is one setting whatever their kind; None: the command's default.
        settings = list(dict.fromkeys((n, kind if n != 0 else None) for n in workers or [None]
                                      for kind in kinds or [None]))
        for n_workers, kind in settings:
            tag = f"{'default' if n_workers is None else n_workers}-{kind or 'default'}"
            out = workdir / f"out-{size}-{tag}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            report_file = workdir / f"report-{size}-{tag}.json"
            command = ["/usr/bin/time", "-v", sys.executable, "-m", "graphinv.cli.main",
                       "--quiet", "ingest", str(data / "logs"), str(out), "--base",
                       str(data / "base"), "--json", str(report_file)] + (
                       ["--workers", str(n_workers)] if n_workers is not None else []) + (
                       ["--parallel", kind] if kind else []) + (
                       ["--chunk-mb", str(chunk_mb)] if chunk_mb else [])
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            peak_all = 0
            while process.poll() is None:
                peak_all = max(peak_all, tree_pss_kb(process.pid))
                time.sleep(0.2)
            stdout, stderr = process.communicate()
            seconds = time.perf_counter() - started
            if process.returncode not in (0, 3):
                console.print(stdout, stderr)
                raise SystemExit(f"ingest failed for {size:,}")
            peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)[1])
            cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", stderr)[1])
                      for kind in ("User", "System"))
            report = pd.read_json(report_file, typ="series")
            gz = sum(p.stat().st_size for p in (data / "logs").iterdir()) / 1e6
            n = int(report["requests_read"])
            count = default_workers() if n_workers is None else n_workers
            shown = " ".join([str(count)] + ([kind or default_parallel()] if count else []))
            shown += f", {chunk_mb or CHUNK_BYTES >> 20} MB chunks"
            if n_workers is None and kind is None and chunk_mb is None:
                shown += " (defaults)"
            table.add_row(f"{n:,}", f"{gz:,.0f}", shown,
                          f"{seconds:,.1f}",
                          f"{n / seconds:,.0f}", f"{cpu:,.1f}", f"{n / cpu:,.0f}",
                          f"{peak / 1024:,.0f}", f"{peak_all / 1024:,.0f}",
                          f"{int(report['templates']):,}",
                          f"{load_before:.1f} → {os.getloadavg()[0]:.1f}")
            console.print(table)


def quality(seeds: list[int], workdir: Path, console: Console, n_accounts: int | None) -> None:
    table = Table(title=f"detection from logs vs planted fingerprints (small preset"
                        f"{'' if n_accounts is None else f', {n_accounts:,} accounts'}) — "
                        f"{machine()}")
    for heading in ("seed", "requests", "F1 planted", "F1 from logs", "difference",
                    "ARI user text", "ARI system prompt", "ingest s"):
        table.add_column(heading, justify="right")
    diffs = []
    settings = Settings()
    for seed in seeds:
        data = workdir / f"quality-{seed}"
        summary = write_logs(data, preset="small", seed=seed, n_accounts=n_accounts)
        out = workdir / f"quality-out-{seed}"
        report = ingest_logs(data / "logs", out, base=data / "base", keep_assignments=True)
        scores = []
        for folder in (data, out):
            platform, _ = read_dir(folder, extra_kinds=["api_client"])
            # The shipped settings, as `graphinv sweep` runs them.
            found = detect_rings(project(platform, options=settings.projection),
                                 platform=platform, options=settings.detection)
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
    s.add_argument("--workers", type=int, nargs="+", default=None,
                   help="Workers of each run (default: the command's).")
    s.add_argument("--parallel", nargs="+", choices=["threads", "processes"], default=None,
                   help="Kinds of workers of each run (default: the command's).")
    s.add_argument("--chunk-mb", type=int, default=None,
                   help="JSON read per chunk (default: the ingest command's).")
    q = sub.add_parser("quality")
    q.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    q.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Keep generated logs here (default: a temporary folder).")
    args = parser.parse_args()
    console = Console(width=200)
    scratch = ROOT / "data" if (ROOT / "data").exists() else None
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.part == "speed":
            speed(args.requests, args.workers, args.parallel, workdir, console, args.chunk_mb)
        else:
            quality(args.seeds, workdir, console, args.accounts)


if __name__ == "__main__":
    main()
