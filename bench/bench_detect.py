"""Benchmark: projection + Leiden against a naive baseline, on synthetic platforms.

Run ``.venv/bin/python bench/bench_detect.py`` (defaults: the ``case-24k`` preset at
100k, 300k and 1M accounts; baseline from 10k accounts up). Each measurement runs in a
fresh subprocess so peak RSS (``resource.getrusage``) belongs to that run alone; the
synthetic platform is generated inside it, and its own time and the RSS it leaves are
reported apart from detection's.

The baseline is what one would write first: the unweighted projection (any shared
identifier is an edge, no rarity weighting, no hub cap, no co-activity, no lockstep),
then networkx Louvain, and, separately, connected components. It runs at growing sizes
until one takes longer than ``--baseline-budget`` seconds or its projection would exceed
``--baseline-max-edges`` edges (networkx holds ~0.5 kB per edge).

Quality is that of :func:`graphinv.evaluate.evaluate` against the synthetic labels.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
from machine import machine


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def detect_modules(before: str | None):
    """``project`` and ``detect_rings`` of this tree, or of an earlier version's copies of
    ``graphinv/detect/projection.py`` and ``communities.py`` kept in the folder ``before``
    (``git show REF:graphinv/detect/projection.py > DIR/projection.py``): the same platform,
    from this tree's generator, goes through both."""
    if not before:
        from graphinv.detect.communities import detect_rings
        from graphinv.detect.projection import project

        return project, detect_rings
    import importlib.util

    modules = []
    for name in ("projection", "communities"):
        spec = importlib.util.spec_from_file_location(f"before_{name}", f"{before}/{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        modules.append(module)
    return modules[0].project, modules[1].detect_rings


def run_graphinv(n: int, seed: int, before: str | None = None) -> dict:
    from graphinv.evaluate import evaluate
    from graphinv.synth import generate

    project, detect_rings = detect_modules(before)

    t = time.perf_counter()
    platform = generate(preset="case-24k", seed=seed, n_accounts=n)
    synth_s = time.perf_counter() - t
    rss_after_synth = peak_rss_gib()
    t = time.perf_counter()
    proj = project(platform)
    project_s = time.perf_counter() - t
    t = time.perf_counter()
    det = detect_rings(proj, platform=platform)
    detect_s = time.perf_counter() - t
    ev = evaluate(det.members, platform.labels)
    return {
        "method": "graphinv",
        "accounts": n,
        "links": len(platform.links),
        "usage_rows": len(platform.usage),
        "synth_s": synth_s,
        "rss_after_synth_gib": rss_after_synth,
        "project_s": project_s,
        "detect_s": detect_s,
        "total_s": project_s + detect_s,
        "peak_rss_gib": peak_rss_gib(),
        "edges": proj.stats.edges,
        "hubs": sum(proj.stats.hubs.values()),
        "rings": det.stats.rings,
        "leiden_runs": det.stats.leiden_runs,
        "merged_pieces": det.stats.merged_pieces,
        "flagged_rings": ev.flagged_rings,
        "extraction_rings": ev.extraction_rings,
        "campaigns": det.stats.campaigns,
        **quality(ev),
    }


def quality(ev) -> dict:
    return {
        "extraction_mean_f1": ev.extraction_mean_f1,
        "extraction_share_f1_050": ev.extraction_share_f1_050,
        "ari": ev.ari,
        "extraction_precision": ev.extraction_precision,
        "extraction_recall": ev.extraction_recall,
        "benign_in_extraction_rings": ev.benign_in_extraction_rings,
    }


def run_baseline(n: int, seed: int, max_edges: int) -> dict:
    import networkx as nx
    import pandas as pd
    from scipy.sparse.csgraph import connected_components

    from graphinv.evaluate import evaluate
    from graphinv.synth import generate

    platform = generate(preset="case-24k", seed=seed, n_accounts=n)
    rss_after_synth = peak_rss_gib()
    t = time.perf_counter()
    links = platform.links
    acc, ids = pd.factorize(links["account_id"])
    ident = pd.factorize(links["kind"].astype(str) + "\0" + links["value"].astype(str))[0]
    b = sp.csr_matrix((np.ones(len(acc), dtype=np.float32), (acc, ident)))
    b.data[:] = 1
    degree = np.asarray((b > 0).sum(axis=0)).ravel()
    pairs = int(np.sum(degree * (degree - 1) // 2))
    out = {
        "method": "baseline",
        "accounts": n,
        "links": len(links),
        "rss_after_synth_gib": rss_after_synth,
        "edges_upper_bound": pairs,
    }
    if pairs > max_edges:
        return {**out, "skipped": f"projection would have up to {pairs:,} edges"}
    adj = sp.triu((b @ b.T) > 0, k=1).tocoo()
    project_s = time.perf_counter() - t
    names = np.asarray(ids, dtype=object)

    def members(groups) -> pd.DataFrame:
        rows = [(f"r{k}", names[a]) for k, g in enumerate(groups) if len(g) >= 5 for a in g]
        return pd.DataFrame(rows, columns=["ring_id", "account_id"])

    t = time.perf_counter()
    _, comp = connected_components(adj, directed=False)
    cc_s = time.perf_counter() - t
    order = np.argsort(comp, kind="stable")
    cuts = np.flatnonzero(np.diff(comp[order])) + 1
    cc = evaluate(members(np.split(order, cuts)), platform.labels)
    t = time.perf_counter()
    graph = nx.Graph()
    graph.add_nodes_from(range(len(names)))
    graph.add_edges_from(zip(adj.row.tolist(), adj.col.tolist(), strict=True))
    louvain = nx.community.louvain_communities(graph, seed=seed)
    louvain_s = time.perf_counter() - t
    lv = evaluate(members([list(c) for c in louvain]), platform.labels)
    return {
        **out,
        "edges": int(adj.nnz),
        "project_s": project_s,
        "components_s": cc_s,
        "louvain_s": louvain_s,
        "total_s": project_s + louvain_s,
        "peak_rss_gib": peak_rss_gib(),
        **{f"cc_{k}": v for k, v in quality(cc).items()},
        **quality(lv),
    }


def child(kind: str, n: int, seed: int, timeout: float, max_edges: int,
          code: str | None = None) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON line.

    ``code``: a folder with an earlier version's detection modules
    (:func:`detect_modules`), measured instead of this tree's on the same platform, so
    before and after run on one machine in one run.
    """
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--seed", str(seed),
           "--baseline-max-edges", str(max_edges)]
    if code:
        cmd += ["--before", code]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"method": kind, "accounts": n, "skipped": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"method": kind, "accounts": n, "skipped": proc.stderr.strip().splitlines()[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t
    result["code"] = code or "this tree"
    return result


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "-" * len(line), *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--baseline-sizes", default="10000,30000,100000,300000",
                        help="'' skips the baseline")
    parser.add_argument("--baseline-budget", type=float, default=600.0)
    parser.add_argument("--baseline-max-edges", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", help="also write all rows to this file")
    parser.add_argument("--before", help="folder with an earlier version's detect/projection.py "
                        "and communities.py, measured at each size right before this tree's")
    parser.add_argument("--child", choices=["graphinv", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "graphinv":
        print(json.dumps(run_graphinv(args.n, args.seed, args.before)))
        return
    if args.child == "baseline":
        print(json.dumps(run_baseline(args.n, args.seed, args.baseline_max_edges)))
        return

    print(f"machine: {machine()}")
    rows = []
    for n in map(int, args.sizes.split(",")):
        for code in ([args.before] if args.before else []) + [None]:
            rows.append(child("graphinv", n, args.seed, 3600, args.baseline_max_edges, code))
            print(json.dumps(rows[-1]), flush=True)
    base = []
    for n in [int(x) for x in args.baseline_sizes.split(",") if x]:
        base.append(child("baseline", n, args.seed, args.baseline_budget + 300,
                          args.baseline_max_edges))
        print(json.dumps(base[-1]), flush=True)
        if "skipped" in base[-1] or base[-1]["total_s"] > args.baseline_budget / 3:
            break  # the next size (3x) would not finish inside the budget
    print()
    print(f"machine: {machine()}")
    print("\ngraphinv (projection + Leiden CPM per component + campaigns)")
    print(table(rows, ["code", "accounts", "links", "usage_rows", "synth_s", "project_s",
                       "detect_s", "total_s", "peak_rss_gib", "rss_after_synth_gib", "edges",
                       "rings",
                       "extraction_mean_f1", "ari", "benign_in_extraction_rings",
                       "flagged_rings", "extraction_rings", "skipped"]))
    done = [r for r in rows if "total_s" in r and r.get("code") == "this tree"]
    if len(done) >= 2:
        a, b = done[0], done[-1]
        exponent = np.log(b["total_s"] / a["total_s"]) / np.log(b["accounts"] / a["accounts"])
        print(f"time grows as accounts^{exponent:.2f} from {a['accounts']:,} to {b['accounts']:,}")
    for r in rows:
        if r.get("code") != "this tree" and "total_s" in r:
            after = next((a for a in done if a["accounts"] == r["accounts"]), None)
            if after:
                print(f"at {r['accounts']:,} accounts: detection (projection + Leiden) "
                      f"{r['total_s']:.1f} s before, {after['total_s']:.1f} s after "
                      f"({100 * (after['total_s'] / r['total_s'] - 1):+.0f} %)")
    if base:
        print("\nnaive baseline (unweighted projection; networkx Louvain; connected components)")
        print(table(base, ["accounts", "links", "edges", "project_s", "louvain_s",
                           "components_s", "peak_rss_gib", "extraction_mean_f1", "ari",
                           "cc_extraction_mean_f1", "cc_ari", "skipped"]))
    same = [(r, b) for b in base if "total_s" in b for r in done if r["accounts"] == b["accounts"]]
    for r, b in same:
        print(f"at {r['accounts']:,} accounts: baseline/graphinv time "
              f"{b['total_s'] / r['total_s']:.1f}x, mean F1 {b['extraction_mean_f1']:.3f} "
              f"vs {r['extraction_mean_f1']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "graphinv": rows, "baseline": base}, f, indent=1)


if __name__ == "__main__":
    main()
