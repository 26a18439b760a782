"""A case reads one ring's neighbourhood and the breakdown its sweep stored, on both
stores, and gets what the whole-platform computation gives."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from graphinv.errors import StoreError
from graphinv.investigate import case as case_module
from graphinv.investigate.case import Case
from graphinv.score.scoring import score_rings
from graphinv.stores.base import Store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.sweep import run_sweep
from graphinv.synth import generate


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                  check_dtype=False, check_index_type=False)


def test_case_reads_the_neighbourhood_and_the_stored_breakdown(store: Store) -> None:
    store.load(generate(preset="small", seed=7, n_accounts=1500), progress=False)
    run_sweep(store, progress=False)
    platform = store.read_platform()
    rings = store.read_rings()
    # The top rings, and a ring of a campaign with several rings (its siblings come from
    # the neighbourhood too).
    campaign = rings["campaign_id"].value_counts()
    several = rings.loc[rings["campaign_id"].isin(campaign[campaign > 1].index), "ring_id"]
    chosen = list(dict.fromkeys([*rings["ring_id"].head(3), *several.head(1)]))
    assert len(several), "the platform should have a campaign of several rings"
    for ring_id in chosen:
        members = store.read_ring_members(ring_id).assign(ring_id=ring_id)
        near = store.read_neighbourhood(members["account_id"])
        assert sorted(near.accounts["account_id"]) == sorted(members["account_id"])
        assert len(near.links) < len(platform.links)
        mine = platform.links.loc[platform.links["account_id"].isin(members["account_id"])]
        used = platform.links.set_index(["kind", "value"]).index.isin(
            mine.set_index(["kind", "value"]).index)
        _frames_equal(near.links, platform.links.loc[used])
        _frames_equal(near.usage,
                      platform.usage.loc[platform.usage["account_id"].isin(members["account_id"])])

        whole = score_rings(members, platform).contributions.drop(columns="ring_id")
        whole = whole.sort_values("contribution", ascending=False, kind="stable")
        stored = store.read_breakdown(ring_id)
        assert stored is not None
        _frames_equal(stored, whole)

        opened = Case(ring_id, store=store)
        _frames_equal(opened.breakdown, whole)
        _frames_equal(opened.identifiers, case_module._identifiers(members, platform))
        timeline = case_module._timeline(members, platform)
        _frames_equal(opened.timeline, timeline)
        _frames_equal(opened.members, case_module._members(members, platform, timeline))
        _frames_equal(opened.siblings,
                      case_module._siblings(opened.ring, rings, store, platform.links))
        _frames_equal(opened.collateral, case_module._collateral(
            opened.evidence_identifiers, platform.links, members))


def test_a_breakdown_naming_an_unknown_ring_is_refused(store: Store) -> None:
    store.load(generate(preset="small", seed=7, n_accounts=1500), progress=False)
    report = run_sweep(store, progress=False)
    ring_id = str(report.rings["ring_id"].iloc[0])
    before = store.read_breakdown(ring_id)
    bad = pd.DataFrame({"ring_id": [ring_id, "R-not-there"], "feature": "x", "group": "g",
                        "value": 1.0, "baseline": 1.0, "suspicion": 0.0, "weight": 1.0,
                        "contribution": 0.0, "text": "t"})
    with pytest.raises(StoreError, match="1 breakdown"):
        store.write_breakdown(report.sweep_id, bad)
    _frames_equal(store.read_breakdown(ring_id), before)


def test_a_file_from_before_breakdowns_opens_read_only_and_its_cases_rescore(
    tmp_path: Path,
) -> None:
    db = tmp_path / "g.duckdb"
    with EmbeddedStore(db) as store:
        store.load(generate(preset="small", seed=7, n_accounts=1500), progress=False)
        report = run_sweep(store, progress=False)
        ring_id = str(report.rings["ring_id"].iloc[0])
        stored = Case(ring_id, store=store).breakdown
    with duckdb.connect(str(db)) as con:
        con.execute("DROP TABLE ring_breakdowns")
    with EmbeddedStore(db, read_only=True) as old:
        assert old.read_breakdown(ring_id) is None
        _frames_equal(Case(ring_id, store=old).breakdown, stored)
