"""Benchmark: the sweep's detection on Spark (local mode) beside the single-machine one.

Run ``.venv/bin/python bench/bench_spark.py data/p1m`` on a folder written by
``graphinv synth OUT --preset case-24k --accounts N``. Both engines read that folder's
Parquet, in this order, in separate subprocesses so each peak memory is its own:

* ``local``: pandas reads the tables (links in the store's key order), then
  ``project`` + ``detect_rings``; peak RSS of the process.
* ``spark``: :func:`graphinv.engines.spark.detect_on_spark` in ``local[N]``; peak RSS summed
  over the whole process tree (driver, JVM, Python workers), sampled every 0.5 s.

Rings are compared (identical members, ring table and campaigns); the table names the
machine and its load average, since the cores are shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from machine import machine


class TreePeak:
    """Peak of the summed RSS of this process and all its descendants (JVM, workers)."""

    def __init__(self) -> None:
        import psutil

        self.me, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            total = 0
            for proc in [self.me, *self.me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def run_local(folder: Path, out: Path) -> None:
    import pandas as pd

    from graphinv.detect.communities import detect_rings
    from graphinv.detect.projection import project
    from graphinv.schema import Platform

    start = time.perf_counter()
    tables = {t: pd.read_parquet(folder / f"{t}.parquet") for t in ("accounts", "links",
                                                                      "usage", "ips")}
    # The store returns links ordered by their key; token order (and so float sums) follow.
    tables["links"] = tables["links"].sort_values(["account_id", "kind", "value"],
                                                  ignore_index=True)
    platform = Platform(**tables)
    read = time.perf_counter() - start
    start = time.perf_counter()
    projection = project(platform)
    detection = detect_rings(projection, platform=platform)
    seconds = time.perf_counter() - start
    detection.members.to_parquet(out / "local_members.parquet")
    detection.rings.to_parquet(out / "local_rings.parquet")
    (out / "local.json").write_text(json.dumps({
        "read_s": read, "detect_s": seconds, "edges": projection.stats.edges,
        "rings": len(detection.rings),
               "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def run_spark(folder: Path, out: Path, master: str, partitions: int, memory: str,
              conf: dict[str, str]) -> None:
    import logging

    from graphinv.engines.spark import SparkOptions, detect_on_spark, spark_session

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    peak = TreePeak()
    options = SparkOptions(master=master, shuffle_partitions=partitions, driver_memory=memory,
                           conf=conf)
    start = time.perf_counter()
    spark = spark_session(options)
    started = time.perf_counter() - start
    start = time.perf_counter()
    found = detect_on_spark(str(folder), spark=spark, options=options)
    seconds = time.perf_counter() - start
    spark.stop()
    found.detection.members.to_parquet(out / "spark_members.parquet")
    found.detection.rings.to_parquet(out / "spark_rings.parquet")
    (out / "spark.json").write_text(json.dumps({
        "start_s": started, "detect_s": seconds, "steps": found.seconds,
               "edges": found.projection.stats.edges, "rings": len(found.detection.rings),
               "giants": found.giant_components, "peak_gib": peak.stop()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: FOLDER/bench_spark")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="Spark setting (repeatable), e.g. spark.driver.maxResultSize=4g")
    parser.add_argument("--role", choices=["local", "spark"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if bad := [item for item in args.conf if "=" not in item]:
        parser.error(f"--conf takes KEY=VALUE, not {bad[0]!r}")
    conf = dict(item.split("=", 1) for item in args.conf)
    out = args.out or args.folder / "bench_spark"
    out.mkdir(parents=True, exist_ok=True)
    if args.role == "local":
        return run_local(args.folder, out)
    if args.role == "spark":
        return run_spark(args.folder, out, args.master, args.partitions, args.driver_memory,
                         conf)
    for role in ("local", "spark"):
        if role == "local" and args.skip_local:
            continue
        subprocess.run([sys.executable, __file__, str(args.folder), "--out", str(out),
                        "--master", args.master, "--partitions", str(args.partitions),
                        "--driver-memory", args.driver_memory, "--role", role,
                        *(f"--conf={item}" for item in args.conf)], check=True)
    import pandas as pd

    spark = json.loads((out / "spark.json").read_text())
    accounts = pd.read_parquet(args.folder / "accounts.parquet", columns=["account_id"])
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{len(accounts):,} accounts, {spark['edges']:,} projection edges, "
          f"master {args.master}, {args.partitions} shuffle partitions")
    print("| engine | detection time | peak memory | rings |")
    print("| --- | --- | --- | --- |")
    if not args.skip_local:
        local = json.loads((out / "local.json").read_text())
        print(f"| single machine | {local['detect_s']:.1f} s (+ {local['read_s']:.1f} s read) | "
              f"{local['peak_gib']:.2f} GiB | {local['rings']} |")
    print(f"| Spark {args.master} | {spark['detect_s']:.1f} s (+ {spark['start_s']:.1f} s "
          f"JVM start) | {spark['peak_gib']:.2f} GiB (driver + JVM + workers) | "
          f"{spark['rings']} |")
    print("Spark steps (s):", json.dumps(spark["steps"]))
    print("giant components (Leiden on the driver):", spark["giants"])
    if not args.skip_local:
        same = pd.read_parquet(out / "local_members.parquet").equals(
            pd.read_parquet(out / "spark_members.parquet")
        ) and pd.read_parquet(out / "local_rings.parquet").equals(
            pd.read_parquet(out / "spark_rings.parquet"))
        print("identical rings:", same)


if __name__ == "__main__":
    main()
