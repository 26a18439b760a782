"""Lineage against the synthetic next day's ground truth.

True rings are the labelled extraction rings without banned accounts
(:func:`graphinv.synth.true_rings`); a true respawn is a ring id whose live members on the
next day share no account with its live members the day before. Identifiers come from the
next day's links as ``run_sweep`` computes them: all links for the previous rings, live
accounts' links for the current ones. Thresholds are the issue's; the shares are printed
(``pytest -s``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from graphinv.lineage import LineageOptions, match_rings, ring_identifiers
from graphinv.schema import Platform
from graphinv.stores import open_store
from graphinv.sweep import live_platform, run_sweep
from graphinv.synth import generate, next_day, next_day_delta, true_rings

MIN_RESPAWN_SHARE = 0.8


@pytest.fixture(scope="module")
def days() -> tuple[Platform, Platform]:
    day0 = generate(preset="small", seed=0)
    # Half the rings banned: twice the respawns to measure on.
    return day0, next_day(day0, seed=0, ban_share=0.5)


def _true_respawns(day0: Platform, day1: Platform) -> list[str]:
    before = true_rings(day0).groupby("ring_id")["account_id"].agg(set)
    after = true_rings(day1).groupby("ring_id")["account_id"].agg(set)
    return [r for r in after.index if r in before.index and not after[r] & before[r]]


def _match(previous: pd.DataFrame, current: pd.DataFrame, platform: Platform) -> pd.DataFrame:
    """Lineage rows with ``true``: the true ring behind each opaque current key."""
    keys = {ring: i for i, ring in enumerate(sorted(current["ring_id"].unique()))}
    opaque = current.assign(ring_id=current["ring_id"].map(keys))
    live = live_platform(platform, LineageOptions().inactive_statuses)
    lineage = match_rings(
        previous_members=previous,
        previous_identifiers=ring_identifiers(previous, platform.links),
        current_members=opaque,
        current_identifiers=ring_identifiers(opaque, live.links),
    )
    truth = {i: ring for ring, i in keys.items()}
    return lineage.rings.assign(true=lineage.rings["new_ring_key"].map(truth))


def test_true_respawns_are_linked_to_their_predecessor(days: tuple[Platform, Platform]) -> None:
    day0, day1 = days
    respawned = _true_respawns(day0, day1)
    rings = _match(true_rings(day0), true_rings(day1), day1).set_index("true")
    found = rings.loc[respawned]
    own = pd.Series(
        [p == (t,) for p, t in zip(found["predecessors"], found.index, strict=True)],
        index=found.index,
    )
    linked = (found["status"] == "respawned") & own
    share = float(linked.mean())
    print(f"\ntrue-ring respawn link share: {int(linked.sum())}/{len(respawned)} = {share:.2f}")
    print(found[["status", "infra_overlap", "evidence"]].to_string())
    assert len(respawned) == round(0.5 * true_rings(day0)["ring_id"].nunique())
    assert share >= MIN_RESPAWN_SHARE


def test_grown_and_split_true_rings(days: tuple[Platform, Platform]) -> None:
    day0, day1 = days
    rings = _match(true_rings(day0), true_rings(day1), day1).set_index("true")
    grown = day1.labels.loc[day1.labels["traits"].str.contains("joined"), "ring_id"].unique()
    assert (rings.loc[grown, "status"] == "grown").all()
    assert (rings.loc[grown, "ring_id"] == grown).all()
    split = [r for r in rings.index if r.endswith("_split")]
    parent = split[0].removesuffix("_split")
    assert (rings.loc[[parent, *split], "status"] == "split").all()
    assert rings.loc[parent, "ring_id"] == parent  # the bigger piece keeps the id
    assert rings.loc[split[0], "predecessors"] == (parent,)


def test_same_rings_twice_are_all_continuing(days: tuple[Platform, Platform]) -> None:
    _, day1 = days
    rings = true_rings(day1)
    matched = _match(rings, rings, day1)
    assert (matched["status"] == "continuing").all()
    assert (matched["ring_id"] == matched["true"]).all()


def _members(store, sweep_id: str) -> pd.Series:
    members = store.read_members(sweep_id=sweep_id)
    return members.set_index("account_id")["ring_id"]


def _holder(members: pd.Series, accounts: set[str]) -> str | None:
    """The detected ring holding most of ``accounts``."""
    held = members.reindex(sorted(accounts)).dropna()
    return None if held.empty else str(held.value_counts().index[0])


# Met since issue 17's pendant and second-merge passes hold more of the harder rings whole
# (it was 5 of 8 respawns linked end to end while star-card and sparse rings came in pieces).
def test_end_to_end_respawns_through_run_sweep(tmp_path, days: tuple[Platform, Platform]) -> None:
    day0, day1 = days
    store = open_store(path=tmp_path / "g.duckdb", use_env=False)
    try:
        store.load(day0, progress=False)
        first = run_sweep(store, progress=False, at=datetime(2025, 3, 17, tzinfo=UTC))
        store.load(next_day_delta(day0, day1), progress=False)
        second = run_sweep(store, progress=False, at=datetime(2025, 3, 18, tzinfo=UTC))
        before, after = _members(store, first.sweep_id), _members(store, second.sweep_id)
    finally:
        store.close()
    old = true_rings(day0).groupby("ring_id")["account_id"].agg(set)
    new = true_rings(day1).groupby("ring_id")["account_id"].agg(set)
    rings = second.rings.set_index("ring_id")
    outcome = {}
    for ring in _true_respawns(day0, day1):
        was, now = _holder(before, old[ring]), _holder(after, new[ring])
        status = rings.loc[now, "status"] if now is not None else "undetected"
        linked = status == "respawned" and was in rings.loc[now, "predecessors"]
        outcome[ring] = (was, now, status, linked)
    share = sum(o[3] for o in outcome.values()) / len(outcome)
    print(f"\nend-to-end respawn share: {share:.2f}; lineage {second.lineage}")
    for ring, (was, now, status, linked) in outcome.items():
        print(f"  {ring}: day0 {was} -> day1 {now} ({status}, linked={linked})")
    assert share >= MIN_RESPAWN_SHARE


def test_ring_ids_stable_when_nothing_changed(tmp_path, days: tuple[Platform, Platform]) -> None:
    # The next day has banned accounts, so the live-accounts filter is exercised too.
    _, day1 = days
    store = open_store(path=tmp_path / "g.duckdb", use_env=False)
    try:
        store.load(day1, progress=False)
        first = run_sweep(store, progress=False, at=datetime(2025, 3, 18, tzinfo=UTC))
        second = run_sweep(store, progress=False, at=datetime(2025, 3, 19, tzinfo=UTC))
        before, after = _members(store, first.sweep_id), _members(store, second.sweep_id)
    finally:
        store.close()
    assert len(second.rings) > 0
    assert (second.rings["status"] == "continuing").all()
    assert sorted(second.rings["ring_id"]) == sorted(first.rings["ring_id"])
    assert second.lineage["dissolved"] == 0
    assert after.sort_index().equals(before.sort_index())
