"""Detection quality over a preset's seed set: the evaluation protocol's bench.

For each seed of ``bench/seeds.toml`` (``--seeds tuning`` or ``--seeds report``, or a
comma-separated list), in a fresh process: ``graphinv synth`` (Parquet) → load into the
embedded store → sweep with default settings → ``graphinv evaluate`` against the labels.
Prints one line per seed, then the mean and the WORST value of every column (a setting
chosen on report seeds, or a mean without the worst seed, flatters).

Usage::

    .venv/bin/python bench/bench_quality.py --preset small --seeds report
    .venv/bin/python bench/bench_quality.py --preset medium --seeds report --jobs 1 \\
        --json bench/results/medium_report.json
    .venv/bin/python bench/bench_quality.py --preset small --seeds 100,101 --traps

Columns: ``F1`` mean best-match F1 of true extraction rings (``live``: banned and
suspended accounts left out of true and found rings), extraction ``recall`` and
``precision`` of flagged accounts (score ≥ the scoring threshold), ``purity`` (share of
accounts in found rings, before scoring, that are in a true abuse ring), benign accounts
flagged per 10,000 benign accounts, flagged rings / true extraction rings, seconds for
synth, load and sweep, and the child's peak RSS. ``--traps`` adds the per-trap table:
each harder ring style's best-match F1 and each benign twin's accounts flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import machine

SEEDS_FILE = Path(__file__).resolve().with_name("seeds.toml")
ROOT = Path(__file__).resolve().parents[1]

# (key, header, format, worst is the lowest?)
COLUMNS = (
    ("extraction_mean_f1", "F1", "{:.3f}", True),
    ("extraction_mean_f1_active", "F1 live", "{:.3f}", True),
    ("extraction_recall", "recall", "{:.3f}", True),
    ("extraction_recall_active", "rec live", "{:.3f}", True),
    ("extraction_precision", "precision", "{:.3f}", True),
    ("ring_purity", "purity", "{:.3f}", True),
    ("benign_flagged_per_10k", "benign/10k", "{:.2f}", False),
    ("flagged_per_true_ring", "flagged/true", "{:.2f}", False),
    ("seconds", "time s", "{:.0f}", False),
    ("peak_rss_gib", "peak GiB", "{:.1f}", False),
)


def seed_set(preset: str, which: str) -> list[int]:
    """The seeds of ``which`` (``tuning``/``report``) for ``preset``, or a literal list."""
    if which in ("tuning", "report"):
        table = tomllib.loads(SEEDS_FILE.read_text())
        if preset not in table:
            raise SystemExit(f"{SEEDS_FILE}: no seeds for preset {preset!r}")
        return list(table[preset][which])
    try:
        return [int(s) for s in which.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"--seeds: 'tuning', 'report' or comma-separated ints, not {which!r}"
        ) from None


def run_one(preset: str, seed: int) -> dict:
    """synth → load → sweep → evaluate for one seed, in this process."""
    from graphinv.config import Settings
    from graphinv.context import Context
    from graphinv.synth import generate, write_platform

    with tempfile.TemporaryDirectory(prefix=f"quality-{preset}-{seed}-") as tmp:
        folder = Path(tmp) / "platform"
        t0 = time.perf_counter()
        write_platform(generate(preset=preset, seed=seed), folder)
        t1 = time.perf_counter()
        with Context(
            settings=Settings(), db_path=Path(tmp) / "g.duckdb", use_env=False, progress=False
        ) as ctx:
            ctx.load(folder)
            t2 = time.perf_counter()
            ctx.sweep()
            t3 = time.perf_counter()
            ev = ctx.evaluate(folder)
    figures = ev.to_dict()
    keep = {key for key, *_ in COLUMNS} | {
        "accounts",
        "rings_found",
        "flagged_rings",
        "extraction_rings",
        "benign_flagged",
        "benign_accounts",
        "inactive_accounts",
        "extraction_precision_active",
        "by_trap",
    }
    out = {k: v for k, v in figures.items() if k in keep}
    out.update(
        preset=preset,
        seed=seed,
        synth_s=t1 - t0,
        load_s=t2 - t1,
        sweep_s=t3 - t2,
        seconds=t3 - t0,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    )
    return out


def run_child(preset: str, seed: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as cwd:  # no ./graphinv.toml can leak in
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--preset", preset, "--seeds", str(seed)],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
        )
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_line() -> str:
    """The machine line, with the commit measured."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return f"{machine(load=True)}, commit {commit or '?'}"


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def summary(results: list[dict]) -> list[dict]:
    """Mean and worst rows; the worst of each column, and the worst seed by F1."""
    rows = []
    for label in ("mean", "worst"):
        row: dict = {"preset": results[0]["preset"], "seed": label}
        for key, _, _, low_is_bad in COLUMNS:
            values = [r[key] for r in results if r.get(key) is not None]
            if not values:
                row[key] = None
            elif label == "mean":
                row[key] = sum(values) / len(values)
            else:
                row[key] = min(values) if low_is_bad else max(values)
        rows.append(row)
    worst = min(results, key=lambda r: (r["extraction_mean_f1"] or 0.0, r["seed"]))
    rows[1]["worst_seed_by_f1"] = worst["seed"]
    return rows


def table(results: list[dict]) -> str:
    head = ["preset", "seed", "rings", *(h for _, h, _, _ in COLUMNS), "flagged rings"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        cells = [r["preset"], str(r["seed"]), str(r["extraction_rings"])]
        cells += [_cell(r.get(k), f) for k, _, f, _ in COLUMNS]
        cells.append(f"{r['flagged_rings']} / {r['extraction_rings']}")
        lines.append(" | ".join(cells))
    for row in summary(results):
        seed = row["seed"].upper()
        if "worst_seed_by_f1" in row:
            seed += f" (F1: seed {row['worst_seed_by_f1']})"
        cells = [row["preset"], seed, ""] + [_cell(row[k], f) for k, _, f, _ in COLUMNS]
        lines.append(" | ".join([*cells, ""]))
    return "\n".join(lines)


def trap_table(results: list[dict]) -> str:
    """Per trait over all seeds: abuse rings (mean, worst seed, worst ring F1), benign
    accounts flagged and in found rings."""
    traits: dict[str, dict] = {}
    for r in results:
        for row in r["by_trap"]:
            t = traits.setdefault(
                row["trait"], {"f1": [], "seed_f1": [], "benign": 0, "flagged": 0, "in_rings": 0}
            )
            if row["abuse_rings"]:
                t["f1"] += [row["mean_f1"]] * row["abuse_rings"]
                t["seed_f1"].append(row["mean_f1"])
                t.setdefault("min", []).append(row["min_f1"])
            t["benign"] += row["benign_accounts"]
            t["flagged"] += row["benign_flagged"]
            t["in_rings"] += row["benign_in_rings"]
    head = ["trait", "abuse rings", "mean F1", "worst seed F1", "worst ring F1",
            "benign accts", "benign flagged", "per 10k", "benign in rings"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, t in sorted(traits.items()):
        if not t["f1"] and not t["benign"]:
            continue
        f1 = (
            [str(len(t["f1"])), f"{sum(t['f1']) / len(t['f1']):.3f}",
             f"{min(t['seed_f1']):.3f}", f"{min(t['min']):.3f}"]
            if t["f1"] else ["0", "—", "—", "—"]
        )
        per = f"{10_000 * t['flagged'] / t['benign']:.1f}" if t["benign"] else "—"
        lines.append(" | ".join([name, *f1, f"{t['benign']:,}", str(t["flagged"]), per,
                                 str(t["in_rings"])]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["small", "medium", "case-24k"])
    parser.add_argument("--seeds", default="report",
                        help="'report', 'tuning' (bench/seeds.toml) or e.g. 100,101")
    parser.add_argument("--jobs", type=int, default=2,
                        help="seeds run at once (each in its own process); 1 for case-24k")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--traps", action="store_true", help="print the per-trap table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs < 1:
        raise SystemExit("--jobs must be at least 1")
    seeds = seed_set(args.preset, args.seeds)
    if args.child:
        print(json.dumps(run_one(args.preset, seeds[0])))
        return
    print(f"machine: {run_line()}")
    print(f"preset {args.preset}, seeds {args.seeds}: {seeds}; {args.jobs} at a time; "
          "embedded store, default settings")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda s: run_child(args.preset, s), seeds))
    print(table(results))
    if args.traps:
        print()
        print(trap_table(results))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        payload = {
            "machine": run_line(),
            "preset": args.preset,
            "seeds": args.seeds,
            "seed_list": seeds,
            "results": results,
            "summary": summary(results),
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
