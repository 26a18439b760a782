"""Detection time, before against after, interleaved on one platform in one process.

On a shared machine the load moves between two sequential runs by more than the
difference being measured (``bench_detect.py --before`` on 2 cores shared with five other
jobs: the *unchanged* projection took 42 s in one child and 67 s in the next). Here the
platform is generated and projected once, then ``detect_rings`` of the earlier version
(``--before DIR`` holding its ``communities.py``) and of this tree run alternately,
``--rounds`` times each, so both see the same load on average. Only valid when
``graphinv/detect/projection.py`` is the same in both (checked).

Run::

    PYTHONPATH=. .venv/bin/python bench/bench_detect_ab.py --before DIR --n 1000000
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="folder with the earlier communities.py")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not filecmp.cmp(f"{args.before}/projection.py", ROOT / "graphinv/detect/projection.py",
                       shallow=False):
        raise SystemExit("projection.py differs: use bench_detect.py --before instead")
    from graphinv.detect.communities import detect_rings as after
    from graphinv.detect.projection import project
    from graphinv.synth import generate

    spec = importlib.util.spec_from_file_location("before_communities",
                                                  f"{args.before}/communities.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    versions = {"before": module.detect_rings, "after": after}

    platform = generate(preset="case-24k", seed=args.seed, n_accounts=args.n)
    t = time.perf_counter()
    proj = project(platform)
    project_s = time.perf_counter() - t
    times: dict[str, list[float]] = {"before": [], "after": []}
    rings: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, detect in versions.items():
            t = time.perf_counter()
            det = detect(proj, platform=platform)
            times[name].append(time.perf_counter() - t)
            rings[name] = det.stats.rings
            print(f"{name}: {times[name][-1]:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    out = {
        "accounts": args.n, "seed": args.seed, "project_s": project_s,
        "detect_s": times, "rings": rings,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps(out))
    print(f"at {args.n:,} accounts: projection {project_s:.1f} s (same code); detection "
          f"median {med['before']:.1f} s before, {med['after']:.1f} s after; projection + "
          f"detection {project_s + med['before']:.1f} s → {project_s + med['after']:.1f} s "
          f"({100 * (med['after'] - med['before']) / (project_s + med['before']):+.0f} %)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
