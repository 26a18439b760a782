"""Scaling of the main job: load, sweep (per stage) and case, per platform size (a
benchmark, not a test).

For each size it writes a ``case-24k`` platform scaled to that many accounts (once; kept
under ``data/bench_scale/``), then runs each step in its own process so each step's peak
memory is its own:

* ``load``: ``graphinv load`` into a fresh embedded store;
* ``sweep``: ``run_sweep`` on it, wall seconds per stage;
* ``case``: the whole ``graphinv case RING --html --csv`` command on the top ring, in its
  own interpreter (imports, store open, the ring's neighbourhood and stored breakdown,
  plots, HTML and CSV; never the platform);
* with ``--neo4j URI``: the same platform loaded into that (emptied!) Neo4j with a columnar
  copy beside it, then the sweep and case on that store, and the case once more without
  the copy (its neighbourhood read over Bolt).

Each row states wall seconds, CPU seconds (user + system, the process and its children:
on a shared machine wall time depends on what else runs, CPU time much less) and peak
resident memory, and the table header states the machine and its load average at the
start and end of each step.

Run::

    python bench/bench_scale.py --accounts 100000 300000 1000000
    python bench/bench_scale.py --accounts 100000 --neo4j bolt://127.0.0.1:7702
    python bench/bench_scale.py --preset medium --seed 21 --accounts 100000 \
        --neo4j bolt://127.0.0.1:7702      # the Neo4j medium rows of the README
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "bench_scale"


def _child(step: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one step in a fresh interpreter; returns its measurements."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, json.dumps(args)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"{step} failed:\n{done.stdout}\n{done.stderr}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    found.update(wall=time.perf_counter() - started, load_before=before,
                 load_after=os.getloadavg()[0])
    return found


def _usage() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024,
    }


def _run_child(step: str, args: dict[str, Any]) -> dict[str, Any]:
    # Imports per step: the case step's own process imports nothing of graphinv, so its
    # CPU and memory are the command's.
    out: dict[str, Any] = {}
    started = time.perf_counter()
    if step == "synth":
        from graphinv.synth import generate, write_platform

        platform = generate(preset=args["preset"], seed=args["seed"], n_accounts=args["accounts"])
        write_platform(platform, Path(args["folder"]))
        out.update(accounts=len(platform.accounts), links=len(platform.links),
                   usage=len(platform.usage))
    elif step == "load":
        from graphinv.config import Settings
        from graphinv.ingest.load import load_dir

        # The link kinds `graphinv load` accepts with default settings; without them the
        # synthetic api_client links would be quarantined and the sweep would not see them.
        settings = Settings()
        kinds = settings.load.extra_kinds + tuple(settings.projection.kind_weights)
        store = _store(args)
        load_dir(Path(args["folder"]), store, progress=False, extra_kinds=kinds,
                 quarantine_dir=DATA / "quarantine")
        store.close()
    elif step == "sweep":
        from graphinv.sweep import run_sweep

        store = _store(args)
        report = run_sweep(store, progress=False)
        out.update(stages=report.seconds, rings=report.counts["rings"],
                   top=str(report.rings["ring_id"].iloc[0]))
        store.close()
    elif step == "case":
        # The command an investigator runs, start to finish, as its own process.
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("GRAPHINV_NEO4J_COLUMNAR", None)
        store = ["--neo4j", args["neo4j"]] if args.get("neo4j") else ["--db", args["db"]]
        if args.get("neo4j") and args.get("copy"):
            env["GRAPHINV_NEO4J_COLUMNAR"] = args["copy"]
        out_dir = DATA / "case_out"
        out_dir.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "graphinv.cli", "--quiet", *store, "case", args["ring_id"],
             "--html", str(out_dir / "case.html"), "--csv", str(out_dir / "accounts.csv")],
            check=True, capture_output=True, env=env, cwd=ROOT)
    else:
        raise SystemExit(f"unknown step {step}")
    out.update(seconds=time.perf_counter() - started, **_usage())
    return out


def _store(args: dict[str, Any]) -> Any:
    from graphinv.stores.embedded import EmbeddedStore
    from graphinv.stores.neo4j.local import local_auth
    from graphinv.stores.neo4j.store import Neo4jStore

    if args.get("neo4j"):
        copy = EmbeddedStore(Path(args["copy"])) if args.get("copy") else None
        return Neo4jStore.connect(args["neo4j"], auth=local_auth(args["neo4j"]), columnar=copy)
    return EmbeddedStore(Path(args["db"]))


def _empty_neo4j(uri: str) -> None:
    import neo4j

    from graphinv.stores.neo4j.local import local_auth

    with neo4j.GraphDatabase.driver(uri, auth=local_auth(uri)) as driver:
        while True:
            deleted = driver.execute_query(
                "MATCH (n) WITH n LIMIT 20000 DETACH DELETE n RETURN count(*) AS n"
            ).records[0]["n"]
            if not deleted:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="case-24k", help="synthetic preset to scale")
    parser.add_argument("--neo4j", help="Bolt URI of a Neo4j to EMPTY and load (optional)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        step, args = options.child
        print(json.dumps(_run_child(step, json.loads(args))))
        return

    rows: list[dict[str, Any]] = []
    print(f"machine: {machine(load=True)}")
    for accounts in options.accounts:
        name = options.preset.replace("-", "")
        folder = DATA / f"{name}_{accounts}_s{options.seed}"
        if not (folder / "links.parquet").exists():
            _child("synth", {"accounts": accounts, "seed": options.seed, "folder": str(folder),
                             "preset": options.preset})
        db = DATA / f"{name}_{accounts}.duckdb"
        for stale in (db, db.with_name(db.name + ".wal")):
            stale.unlink(missing_ok=True)
        targets = [("embedded", {"db": str(db), "folder": str(folder)})]
        if options.neo4j:
            copy = DATA / f"{name}_{accounts}_copy.duckdb"
            copy.unlink(missing_ok=True)
            _empty_neo4j(options.neo4j)
            targets.append(("neo4j + columnar copy",
                            {"neo4j": options.neo4j, "copy": str(copy), "folder": str(folder)}))
        for store, args in targets:
            load = _child("load", args)
            sweep = _child("sweep", args)
            case = _child("case", {**args, "ring_id": sweep["top"]})
            steps = [("load", load), ("sweep", sweep), ("case", case)]
            if args.get("neo4j"):
                # The case again without the copy: the neighbourhood read over Bolt.
                bolt = _child("case", {**args, "copy": None, "ring_id": sweep["top"]})
                steps.append(("case over Bolt", bolt))
            for step, found in steps:
                rows.append({"accounts": accounts, "store": store, "step": step, **found})
                print(_line(rows[-1]), flush=True)
        shutil.rmtree(DATA / "quarantine", ignore_errors=True)
    print()
    print(_table(rows))
    if options.json:
        options.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


def _line(row: dict[str, Any]) -> str:
    stages = row.get("stages")
    detail = (", ".join(f"{k} {v:.1f}" for k, v in stages.items()) if stages else "")
    return (f"{row['accounts']:>9,} {row['store']:<22} {row['step']:<6} "
            f"wall {row['seconds']:7.1f} s  cpu {row['cpu']:7.1f} s  "
            f"peak {row['peak_mb'] / 1024:5.2f} GiB  load {row['load_before']:.1f}→"
            f"{row['load_after']:.1f}  {detail}")


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| accounts | store | step | wall s | CPU s | peak GiB | load avg (1 min) "
        "| stages (wall s) |",
        "| ---: | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        stages = row.get("stages") or {}
        detail = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        lines.append(
            f"| {row['accounts']:,} | {row['store']} | {row['step']} | {row['seconds']:.1f} | "
            f"{row['cpu']:.1f} | {row['peak_mb'] / 1024:.2f} | "
            f"{row['load_before']:.1f} → {row['load_after']:.1f} | {detail} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
