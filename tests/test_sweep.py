"""Sweeps over incremental loads, and the report pipelines read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from graphinv.stores import open_store
from graphinv.sweep import EXIT_ALERT, run_sweep
from graphinv.synth import generate, next_day, next_day_delta


def _rings(members: pd.DataFrame) -> set[frozenset[str]]:
    return {frozenset(group) for _, group in members.groupby("ring_id")["account_id"]}


@pytest.fixture(scope="module")
def days() -> tuple:
    day0 = generate(preset="small", seed=31)
    day1 = next_day(day0, seed=31)
    return day0, day1, next_day_delta(day0, day1)


def test_incremental_load_gives_the_same_rings_as_a_full_reload(days, tmp_path: Path) -> None:
    day0, day1, delta = days
    incremental = open_store(path=tmp_path / "incremental.duckdb", use_env=False)
    full = open_store(path=tmp_path / "full.duckdb", use_env=False)
    try:
        incremental.load(day0, progress=False)
        incremental.load(delta, progress=False)
        full.load(day1, progress=False)
        a = run_sweep(incremental, progress=False)
        b = run_sweep(full, progress=False)
        assert _rings(incremental.read_members()) == _rings(full.read_members())
        assert len(_rings(full.read_members())) == a.counts["rings"] > 0
        pd.testing.assert_frame_equal(
            a.rings[["ring_id", "score", "rank", "size"]],
            b.rings[["ring_id", "score", "rank", "size"]],
        )
    finally:
        incremental.close()
        full.close()


def test_report_is_json_and_exit_code_follows_alerts(days, tmp_path: Path) -> None:
    day0, _, _ = days
    store = open_store(path=tmp_path / "g.duckdb", use_env=False)
    try:
        store.load(day0, progress=False)
        report = run_sweep(store, progress=False)
        members = store.read_members()
        quiet = run_sweep(store, progress=False, alert_threshold=1.01)
    finally:
        store.close()
    plain = json.loads(json.dumps(report.to_dict()))
    assert plain["sweep_id"] == report.sweep_id
    assert plain["counts"]["rings"] == len(plain["rings"])
    # Every stage is timed in wall and CPU seconds.
    assert plain["cpu_seconds"].keys() == plain["seconds"].keys() >= {"leiden", "scoring"}
    assert all(v >= 0 for v in plain["cpu_seconds"].values())
    fresh = report.rings["status"].isin(["new", "respawned"])
    expected = bool((fresh & (report.rings["score"] >= report.alert_threshold)).any())
    assert report.exit_code == (EXIT_ALERT if expected else 0)
    # One alert per operator: every alerting ring sits in exactly one campaign group.
    groups = plain["alert_campaigns"]
    assert sorted(r for g in groups for r in g["rings"]) == sorted(plain["alerts"])
    campaign_of = report.rings.set_index("ring_id")["campaign_id"]
    for group in groups:
        assert {campaign_of[r] for r in group["rings"]} == {group["campaign_id"]}
    assert len(groups) == report.alerts["campaign_id"].nunique()
    # Banned and suspended accounts are structure, never ring members.
    status = day0.accounts.set_index("account_id")["status"]
    assert (status.reindex(members["account_id"]) == "active").all()
    # The second sweep over the same data: every ring continues, nothing is new, no alert.
    assert set(quiet.rings["status"]) == {"continuing"}
    assert quiet.exit_code == 0
    assert quiet.sweep_id != report.sweep_id
