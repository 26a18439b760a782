"""A Neo4j store with a columnar copy: every load fills both, sweeps and cases compute on
the copy while it is in step, and fall back to reading the graph when it is not. Runs
against the real Neo4j of the test session."""

from __future__ import annotations

from pathlib import Path

import neo4j
import pandas as pd

from graphinv.investigate.case import Case
from graphinv.schema import TABLES, Platform
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.store import Neo4jStore
from graphinv.sweep import run_sweep
from graphinv.synth import generate, next_day, next_day_delta


def _assert_same_platform(a: Platform, b: Platform) -> None:
    for name in TABLES:
        if name == "labels":
            continue
        left, right = getattr(a, name), getattr(b, name)
        if left is None or right is None:
            assert left is None and right is None, name
            continue
        pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=name)


def _rings(store) -> dict[frozenset[str], float]:
    members = store.read_members()
    rings = store.read_rings().set_index("ring_id")
    return {frozenset(group): round(float(rings.loc[ring_id, "score"]), 12)
            for ring_id, group in members.groupby("ring_id")["account_id"]}


def test_the_copy_follows_every_load_and_sweeps_compute_on_it(
    neo4j_driver: neo4j.Driver, tmp_path: Path
) -> None:
    day0 = generate(preset="small", seed=5, n_accounts=1500)
    day1 = next_day(day0, seed=5)
    delta = next_day_delta(day0, day1)
    graph = Neo4jStore(neo4j_driver, columnar=EmbeddedStore(tmp_path / "copy.duckdb"))
    plain = Neo4jStore(neo4j_driver)  # the same graph, read over Bolt
    reference = EmbeddedStore(tmp_path / "reference.duckdb")
    try:
        for platform in (day0, delta):
            stats = graph.load(platform, progress=False)
            reference.load(platform, progress=False)
            assert "columnar copy" in stats.steps
            assert graph._columnar_in_step()
            _assert_same_platform(graph.read_platform(), plain.read_platform())
        report = run_sweep(graph, progress=False)
        expected = run_sweep(reference, progress=False)
        assert report.counts == expected.counts and report.counts["rings"] > 0
        assert _rings(graph) == _rings(reference)

        ring_id = str(report.rings["ring_id"].iloc[0])
        on_copy = Case(ring_id, store=graph)
        over_bolt = Case(ring_id, store=plain)
        for frame in ("members", "identifiers", "timeline", "breakdown", "siblings"):
            pd.testing.assert_frame_equal(getattr(on_copy, frame), getattr(over_bolt, frame),
                                          check_dtype=False, obj=frame)
    finally:
        graph.close()
        reference.close()


def test_a_load_the_copy_missed_puts_it_out_of_step_for_good(
    neo4j_driver: neo4j.Driver, tmp_path: Path
) -> None:
    day0 = generate(preset="small", seed=5, n_accounts=1500)
    day1 = next_day(day0, seed=5)
    copy = EmbeddedStore(tmp_path / "copy.duckdb")
    graph = Neo4jStore(neo4j_driver, columnar=copy)
    plain = Neo4jStore(neo4j_driver)
    try:
        graph.load(day0, progress=False)
        assert graph._columnar_in_step()
        plain.load(next_day_delta(day0, day1), progress=False)  # the copy never sees it
        assert not graph._columnar_in_step()
        # Reads come from the graph, so they still see the missed rows.
        assert len(graph.read_platform().accounts) == len(day1.accounts)
        graph.load(day0, progress=False)
        assert not graph._columnar_in_step()
        assert len(copy.read_platform().accounts) == len(day0.accounts) < len(day1.accounts)
    finally:
        graph.close()
