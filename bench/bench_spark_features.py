"""Benchmark: ring features and baselines on Spark beside one machine, on one platform.

Run ``.venv/bin/python bench/bench_spark_features.py data/p300k`` on a folder written by
``graphinv synth``. Rings come from the single-machine detection (the Spark detection gives
the same ones, ``bench/bench_spark.py``); then, in this order and in one process:

* ``ring_features`` on the tables pandas read (links in the store's key order);
* :func:`graphinv.engines.spark_features.spark_ring_features` in ``local[N]`` on the
  folder's Parquet; peak RSS summed over the process tree (driver, JVM, workers).

Every feature value, detail, baseline, reference and rate limit is compared (relative
tolerance 1e-9); the table names the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_spark import TreePeak
from machine import machine


def differences(local, spark) -> list[str]:
    """Columns, baselines and references that differ beyond rounding."""
    out = []
    if list(local.values.columns) != list(spark.values.columns):
        out.append("columns")
    for column in local.values.columns:
        mine, theirs = local.values[column], spark.values[column]
        if not pd.api.types.is_numeric_dtype(mine):
            same = mine.astype(str).tolist() == theirs.astype(str).tolist()
        else:
            same = np.allclose(theirs.to_numpy(float), mine.to_numpy(float), rtol=1e-9,
                               atol=1e-12, equal_nan=True)
        if not same:
            out.append(column)
    for name in ("baseline", "reference"):
        mine, theirs = getattr(local, name), getattr(spark, name)
        if not np.allclose(theirs.reindex(mine.index), mine, rtol=1e-9, equal_nan=True):
            out.append(name)
    if local.rate_limits.sort_index().to_dict() != spark.rate_limits.sort_index().to_dict():
        out.append("rate_limits")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()

    from graphinv.detect.communities import detect_rings
    from graphinv.detect.projection import project
    from graphinv.engines.spark import SparkOptions, spark_session
    from graphinv.engines.spark_features import spark_ring_features
    from graphinv.schema import Platform
    from graphinv.score.features import ring_features

    names = ("accounts", "links", "usage", "ips", "payment_methods", "prompt_fingerprints")
    tables = {t: pd.read_parquet(args.folder / f"{t}.parquet") for t in names}
    tables["links"] = tables["links"].sort_values(["account_id", "kind", "value"],
                                                  ignore_index=True)
    platform = Platform(**tables)
    members = detect_rings(project(platform), platform=platform).members
    start = time.perf_counter()
    local = ring_features(members, platform)
    local_s = time.perf_counter() - start

    peak = TreePeak()
    options = SparkOptions(master=args.master, shuffle_partitions=args.partitions,
                           driver_memory=args.driver_memory)
    spark = spark_session(options)
    start = time.perf_counter()
    found = spark_ring_features(members, str(args.folder), spark=spark)
    spark_s = time.perf_counter() - start
    spark.stop()
    tree = peak.stop()

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{len(platform.accounts):,} accounts, {len(local.values):,} rings, "
          f"{len(platform.usage):,} usage rows; master {args.master}, "
          f"{args.partitions} shuffle partitions")
    print("| engine | features time | peak memory |")
    print("| --- | --- | --- |")
    print(f"| one process | {local_s:.1f} s | (whole bench process) |")
    print(f"| Spark {args.master} | {spark_s:.1f} s | {tree:.2f} GiB (process tree) |")
    print("differences:", differences(local, found) or "none")


if __name__ == "__main__":
    main()
