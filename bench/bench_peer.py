"""Benchmark: graphinv's embedded sweep against the peer a Neo4j user would pick instead.

The peer is Neo4j Graph Data Science (open edition) inside graphinv's local Neo4j, running
the fraud-ring recipe of Neo4j's own guides on the same synthetic platform, in the same run:

* **GDS WCC** — weakly connected components of the account–identifier graph;
* **GDS nodeSimilarity + Leiden** — Jaccard similarity of accounts by the identifiers they
  share (``topK``, ``similarityCutoff``), then Leiden on the similarity graph.

Both run at their best: identifiers linked to more than ``cap`` accounts are left out (a
shared office NAT or a popular prompt template would otherwise glue everything), and
nodeSimilarity compares accounts only inside WCC components (``useComponents``), which is
what makes it fast (all pairs took 530–624 s at 100k accounts). Communities of at least
``min_ring_size`` accounts (graphinv's own, 5) are rings. The peer sees every account, as
the guides' recipe would; graphinv's sweep leaves banned and suspended accounts out.

The peer's settings (cap, cutoff, topK) are chosen on tuning seeds only (``--tune``:
small 0 and 2, medium 21, as ``bench/seeds.toml`` does not exist yet); every other seed
reports. The metric is graphinv's own (:func:`graphinv.evaluate.evaluate`): mean best-F1
of extraction rings (over every label, and over live accounts only: banned and suspended
accounts out of both the true and the found rings, for graphinv and the peer alike),
recall of extraction accounts, ring purity (share of accounts in
rings that belong to a true abuse ring) and benign accounts flagged. graphinv is shown
twice: all its rings (before scoring, like the peer) and the rings its scoring flags;
and once more with ``DetectionOptions(inactive_statuses=())``, which lists banned and
suspended accounts as ring members like the peer does (its flagged rings).

Each case runs in fresh subprocesses, so peak RSS (``resource``) belongs to it alone. The
Neo4j server is graphinv's local one with GDS (``LocalNeo4j(gds=True)``) in its own home
under ``data/bench-peer``; it is restarted on an empty database per case, so its peak RSS
(``VmHWM``) belongs to that case too. Loading over Bolt (``Neo4jStore.load``, accounts and
links only, no labels) is timed apart from the recipe.

Run::

    .venv/bin/python bench/bench_peer.py --preset small --seeds 101,102,103
    .venv/bin/python bench/bench_peer.py --preset case-24k --accounts 100000 --seeds 3 \\
        --settings bench/results/peer_tuning.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from machine import machine

ROOT = Path(__file__).resolve().parents[1]
TUNING = (("small", 0, None), ("small", 2, None), ("medium", 21, None))
GRID = {
    "cap": (20, 50, 100),
    "cutoff": (0.1, 0.2, 0.3, 0.5),
    "top_k": (10, 20),
}
MIN_RING_SIZE = 5
# Benign accounts flagged per 10,000 that a setting may cost on a tuning seed (graphinv's
# own target); the best-F1 setting within it wins.
BENIGN_PER_10K = 1.0
IDENTIFIER_LABELS = ("PaymentMethod", "IP", "PromptFingerprint", "Identifier")




def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quality(members: pd.DataFrame, labels: pd.DataFrame, **options) -> dict:
    """graphinv's evaluation plus ring purity of the rings that count as flagged."""
    from graphinv.evaluate import ABUSE_KINDS, evaluate

    ev = evaluate(members, labels, **options)
    if "scores" in options:
        flagged = options["scores"].loc[options["scores"]["score"] >= ev.threshold, "ring_id"]
        members = members[members["ring_id"].isin(flagged)]
    truth = labels.drop_duplicates("account_id").set_index("account_id")
    in_abuse_ring = truth["ring_id"].notna() & truth["kind"].isin(ABUSE_KINDS)
    accounts = members["account_id"].drop_duplicates()
    purity = float(in_abuse_ring.reindex(accounts).fillna(False).mean()) if len(accounts) else None
    return {
        "rings": int(members["ring_id"].nunique()),
        "f1": ev.extraction_mean_f1,
        "f1_live": ev.extraction_mean_f1_active,
        "recall": ev.extraction_recall,
        "purity": purity,
        "benign_flagged": ev.benign_flagged,
    }


def _platform(preset: str, seed: int, accounts: int | None):
    from graphinv.synth import generate

    return generate(preset=preset, seed=seed, n_accounts=accounts)


# -- graphinv ------------------------------------------------------------------------------

def run_graphinv(preset: str, seed: int, accounts: int | None) -> list[dict]:
    from graphinv.config import Settings
    from graphinv.detect.communities import DetectionOptions
    from graphinv.stores.embedded import EmbeddedStore
    from graphinv.sweep import run_sweep

    platform = _platform(preset, seed, accounts)
    labels = platform.labels
    # The peer lists banned and suspended accounts as ring members; so does this sweep.
    listed = Settings(detection=DetectionOptions(inactive_statuses=()))
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp) / "bench.duckdb")
        started = time.perf_counter()
        store.load(platform, progress=False)
        load_s = time.perf_counter() - started
        del platform
        started = time.perf_counter()
        report = run_sweep(store, progress=False)
        sweep_s = time.perf_counter() - started
        members = store.read_members()
        listed_report = run_sweep(store, settings=listed, progress=False)
        listed_members = store.read_members()
        store.close()
    steps = {"load": load_s, "sweep": sweep_s,
             **{f"sweep.{k}": v for k, v in report.seconds.items()}}
    peak = peak_rss_mib()
    scores = report.rings[["ring_id", "score"]]
    base = {"accounts": int(labels["account_id"].nunique()), "steps": steps,
            "peak_rss_mib": peak, "jvm_peak_mib": None}
    return [
        {**base, "method": "graphinv sweep (all rings)", **quality(members, labels)},
        {**base, "method": "graphinv sweep (flagged)",
         **quality(members, labels, scores=scores)},
        {**base, "method": "graphinv sweep, inactive listed (flagged)",
         **quality(listed_members, labels, scores=listed_report.rings[["ring_id", "score"]],
                   settings=listed)},
    ]


# -- the GDS peer --------------------------------------------------------------------------

def _server(args: argparse.Namespace):
    from graphinv.stores.neo4j.local import LocalNeo4j

    return LocalNeo4j(
        home=ROOT / "data" / "bench-peer" / "neo4j",
        jars=LocalNeo4j.from_env().lib,
        bolt_port=args.bolt_port,
        http_port=args.http_port,
        heap=args.heap,
        pagecache=args.pagecache,
        gds=True,
    )


def fresh_server(args: argparse.Namespace) -> None:
    """Restart the bench's server on an empty database (peak RSS counted from here)."""
    server = _server(args)
    server.stop()
    shutil.rmtree(server.home / "data", ignore_errors=True)
    server.start()
    if server.loaded_gds_version() is None:
        raise SystemExit(f"GDS did not load in {server.home}; see {server.console_log}")


def jvm_peak_mib(args: argparse.Namespace) -> float | None:
    pid = _server(args).status().pid
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kb / 1024


def run_peer(args: argparse.Namespace, preset: str, seed: int, accounts: int | None,
             wcc_caps: list[int], similarity: list[dict]) -> list[dict]:
    """Load the platform into the (empty) bench server, then run WCC at each of
    ``wcc_caps`` and nodeSimilarity + Leiden at each of the ``similarity`` settings."""
    import neo4j

    from graphinv.schema import Platform
    from graphinv.stores.neo4j.cypher import LINK_TYPES
    from graphinv.stores.neo4j.store import Neo4jStore

    platform = _platform(preset, seed, accounts)
    labels = platform.labels
    # Accounts and links only: the recipe needs no usage, and labels never reach the server.
    bare = Platform(platform.accounts, platform.links, platform.usage.iloc[:0])
    del platform
    server = _server(args)
    with Neo4jStore.connect(server.bolt_uri, auth=server.auth) as store:
        started = time.perf_counter()
        store.load(bare, progress=False)
        load_s = time.perf_counter() - started
    del bare
    rows = []
    with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:

        def timed(query: str, **params) -> tuple[list[neo4j.Record], float]:
            started = time.perf_counter()
            records = driver.execute_query(query, params).records
            return records, time.perf_counter() - started

        _, project_s = timed("CALL gds.graph.project($graph, $labels, $types)",
                             graph="all", labels=["Account", *IDENTIFIER_LABELS],
                             types=list(LINK_TYPES))
        _, degree_s = timed("CALL gds.degree.mutate($graph, {orientation: 'REVERSE', "
                            "mutateProperty: 'accounts'})", graph="all")
        shared = {"load (Bolt)": load_s, "project": project_s + degree_s}
        for cap in sorted({*wcc_caps, *(s["cap"] for s in similarity)}):
            capped = f"cap{cap}"
            _, filter_s = timed(
                "CALL gds.graph.filter($graph, 'all', 'n:Account OR n.accounts <= $cap', '*', "
                "{parameters: {cap: $cap}})", graph=capped, cap=float(cap))
            _, wcc_s = timed("CALL gds.wcc.mutate($graph, {mutateProperty: 'component'})",
                             graph=capped)
            per_cap = {**shared, "filter": filter_s, "wcc": wcc_s}
            if cap in wcc_caps:
                components, stream_s = timed(
                    "CALL gds.graph.nodeProperty.stream($graph, 'component', ['Account']) "
                    "YIELD nodeId, propertyValue "
                    "RETURN gds.util.asNode(nodeId).id AS account_id, propertyValue AS ring_id",
                    graph=capped,
                )
                rows.append({
                    "method": "GDS WCC", "setting": {"cap": cap},
                    "steps": {**per_cap, "stream": stream_s},
                    **quality(_rings(components), labels),
                })
            for setting in (s for s in similarity if s["cap"] == cap):
                _, similarity_s = timed(
                    "CALL gds.nodeSimilarity.mutate($graph, {similarityCutoff: $cutoff, "
                    "topK: $top_k, useComponents: 'component', "
                    "mutateRelationshipType: 'SIMILAR', mutateProperty: 'score'})",
                    graph=capped, cutoff=float(setting["cutoff"]), top_k=int(setting["top_k"]))
                # Leiden needs an undirected graph; topK edges come one way.
                _, undirected_s = timed(
                    "CALL gds.graph.relationships.toUndirected($graph, {relationshipType: "
                    "'SIMILAR', mutateRelationshipType: 'SIMILAR_U', aggregation: 'MAX'})",
                    graph=capped)
                communities, leiden_s = timed(
                    "CALL gds.leiden.stream($graph, {nodeLabels: ['Account'], "
                    "relationshipTypes: ['SIMILAR_U'], relationshipWeightProperty: 'score', "
                    "randomSeed: $seed}) YIELD nodeId, communityId "
                    "RETURN gds.util.asNode(nodeId).id AS account_id, communityId AS ring_id",
                    graph=capped, seed=seed,
                )
                for rel in ("SIMILAR", "SIMILAR_U"):
                    driver.execute_query(
                        "CALL gds.graph.relationships.drop($graph, $rel)", graph=capped, rel=rel
                    )
                rows.append({
                    "method": "GDS nodeSimilarity+Leiden", "setting": setting,
                    "steps": {**per_cap, "nodeSimilarity": similarity_s,
                              "toUndirected": undirected_s, "leiden+stream": leiden_s},
                    **quality(_rings(communities), labels),
                })
            driver.execute_query("CALL gds.graph.drop($graph, false) YIELD graphName", graph=capped)
        driver.execute_query("CALL gds.graph.drop($graph, false) YIELD graphName", graph="all")
    jvm = jvm_peak_mib(args)
    n = int(labels["account_id"].nunique())
    for row in rows:
        row.update(accounts=n, peak_rss_mib=peak_rss_mib(), jvm_peak_mib=jvm)
    return rows


def _rings(records) -> pd.DataFrame:
    """Communities of at least MIN_RING_SIZE accounts, as ``ring_id, account_id``."""
    frame = pd.DataFrame([(r["ring_id"], r["account_id"]) for r in records],
                         columns=["ring_id", "account_id"])
    size = frame.groupby("ring_id")["account_id"].transform("size")
    out = frame[size >= MIN_RING_SIZE].copy()
    out["ring_id"] = "c" + out["ring_id"].astype(str)
    return out


# -- orchestration -------------------------------------------------------------------------

def child(args: argparse.Namespace, kind: str, preset: str, seed: int,
          accounts: int | None, settings: dict | None = None) -> list[dict]:
    """One measurement in a fresh interpreter; returns its rows."""
    cmd = [sys.executable, __file__, "--child", kind, "--preset", preset, "--seeds", str(seed),
           "--bolt-port", str(args.bolt_port), "--http-port", str(args.http_port),
           "--heap", args.heap, "--pagecache", args.pagecache]
    if accounts:
        cmd += ["--accounts", str(accounts)]
    if settings is not None:
        cmd += ["--child-settings", json.dumps(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {preset} seed {seed} failed:\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    label = f"{preset}@{accounts:,}" if accounts else preset
    for row in rows:
        row.update(preset=label, seed=seed)
    return rows


def tune(args: argparse.Namespace) -> dict:
    grid = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    rows = []
    for preset, seed, accounts in TUNING:
        fresh_server(args)
        rows += child(args, "peer", preset, seed, accounts,
                      {"wcc_caps": list(GRID["cap"]), "similarity": grid})
        # Kept as it comes: a failure later does not lose the measured rows.
        args.settings.with_suffix(".rows.json").write_text(json.dumps(rows))
        print(f"tuned on {preset} seed {seed}", file=sys.stderr, flush=True)
    args.settings.with_suffix(".rows.json").unlink()  # the caller writes them with the choice
    chosen = {}
    for method in ("GDS WCC", "GDS nodeSimilarity+Leiden"):
        frame = pd.DataFrame([{**r["setting"], **r} for r in rows if r["method"] == method])
        keys = [k for k in GRID if k in frame.columns]
        frame["benign_ok"] = frame["benign_flagged"] <= frame["accounts"] * BENIGN_PER_10K / 1e4
        per_setting = frame.groupby(keys).agg(
            f1=("f1", "mean"), worst_f1=("f1", "min"), recall=("recall", "mean"),
            benign=("benign_flagged", "sum"), benign_ok=("benign_ok", "all"),
        ).reset_index()
        candidates = per_setting[per_setting["benign_ok"]]
        pool = candidates if len(candidates) else per_setting
        best = pool.sort_values(["f1", "worst_f1"], ascending=False).iloc[0]
        chosen[method] = {k: best[k].item() for k in keys}
        print(f"\n{method} on tuning seeds (mean over {len(TUNING)} seeds; chosen: "
              f"{chosen[method]}, benign within {BENIGN_PER_10K:g}/10k on every seed: "
              f"{bool(len(candidates))})")
        print(markdown(per_setting.sort_values("f1", ascending=False)))
    return {"chosen": chosen, "tuning_seeds": [list(t) for t in TUNING], "rows": rows}


def markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| preset | seed | method | setting | rings | mean best-F1 | live | recall | "
             "purity | benign flagged | time per step (s) | peak RSS Python / JVM (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())
        setting = ", ".join(f"{k} {v}" for k, v in (r.get("setting") or {}).items()) or "defaults"
        jvm = f" / {r['jvm_peak_mib']:,.0f}" if r.get("jvm_peak_mib") else ""
        purity = "—" if r["purity"] is None else f"{r['purity']:.3f}"
        lines.append(
            f"| {r['preset']} | {r['seed']} | {r['method']} | {setting} | {r['rings']:,} | "
            f"{r['f1']:.3f} | {r['f1_live']:.3f} | {r['recall']:.3f} | {purity} | "
            f"{r['benign_flagged']:,} | "
            f"{steps} | {r['peak_rss_mib']:,.0f}{jvm} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--accounts", type=int, help="scale the preset to this many accounts")
    parser.add_argument("--seeds", default="101,102,103,104,105", help="report seeds")
    parser.add_argument("--tune", action="store_true",
                        help="choose the peer's settings on the tuning seeds first")
    parser.add_argument("--settings", type=Path, default=ROOT / "bench/results/peer_tuning.json",
                        help="tuning result to read (written with --tune)")
    parser.add_argument("--bolt-port", type=int, default=17689)
    parser.add_argument("--http-port", type=int, default=17476)
    parser.add_argument("--heap", default="4g", help="JVM heap of the bench's Neo4j")
    parser.add_argument("--pagecache", default="1g")
    parser.add_argument("--child", choices=["graphinv", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--child-settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.child == "graphinv":
        print(json.dumps(run_graphinv(args.preset, seeds[0], args.accounts)))
        return
    if args.child == "peer":
        settings = json.loads(args.child_settings)
        print(json.dumps(run_peer(args, args.preset, seeds[0], args.accounts, **settings)))
        return

    tuning_seeds = {(p, s) for p, s, _ in TUNING}
    clash = [s for s in seeds if (args.preset, s) in tuning_seeds]
    if clash:
        raise SystemExit(f"seeds {clash} of {args.preset} are tuning seeds; report on others")
    print(f"machine: {machine(load=True)}")
    print(f"Neo4j heap {args.heap}, page cache {args.pagecache}; GDS concurrency default "
          "(4 in the open edition, capped by the cores)")
    try:
        if args.tune:
            args.settings.parent.mkdir(parents=True, exist_ok=True)
            tuned = tune(args)
            args.settings.write_text(json.dumps(tuned, indent=1))
        chosen = json.loads(args.settings.read_text())["chosen"]
        print(f"\npeer settings (chosen on tuning seeds {TUNING}): {chosen}")
        peer_settings = {"wcc_caps": [chosen["GDS WCC"]["cap"]],
                         "similarity": [chosen["GDS nodeSimilarity+Leiden"]]}
        rows = []
        for seed in seeds:
            rows += child(args, "graphinv", args.preset, seed, args.accounts)
            fresh_server(args)
            rows += child(args, "peer", args.preset, seed, args.accounts, peer_settings)
            print(f"done: {args.preset} seed {seed}", file=sys.stderr, flush=True)
    finally:
        _server(args).stop()
    print(f"\nmachine after the run: {machine(load=True)}\n")
    print(table(rows))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        worst = min(mine, key=lambda r: r["f1"])
        worst_live = min(mine, key=lambda r: r["f1_live"])
        print(f"- {method}: mean best-F1 {sum(r['f1'] for r in mine) / len(mine):.3f}, "
              f"worst seed {worst['seed']} at {worst['f1']:.3f}; live accounts only "
              f"{sum(r['f1_live'] for r in mine) / len(mine):.3f}, worst seed "
              f"{worst_live['seed']} at {worst_live['f1_live']:.3f}; benign flagged "
              f"{sum(r['benign_flagged'] for r in mine):,} in all")


if __name__ == "__main__":
    main()
