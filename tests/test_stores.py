"""Sweep results and store selection, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import neo4j
import pandas as pd
import pytest

from graphinv.errors import Neo4jUnavailable, RingNotFound, StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores import EmbeddedStore, Neo4jStore, Store, SweepRecord, open_store


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "embedded":
        opened: Store = EmbeddedStore(tmp_path / "graphinv.duckdb")
    else:
        driver: neo4j.Driver = request.getfixturevalue("neo4j_driver")
        opened = Neo4jStore(driver)
    yield opened
    opened.close()


def platform() -> Platform:
    at = pd.to_datetime(["2024-01-01"] * 4, utc=True)
    accounts = pd.DataFrame({"account_id": ["a1", "a2", "a3", "a4"], "created_at": at})
    empty_links = pd.DataFrame(columns=list(TABLES["links"].column_names))
    empty_usage = pd.DataFrame(columns=list(TABLES["usage"].column_names))
    return Platform(
        conform(accounts, TABLES["accounts"]),
        conform(empty_links, TABLES["links"]),
        conform(empty_usage, TABLES["usage"]),
    )


def results(score: float = 0.9) -> dict[str, pd.DataFrame]:
    return {
        "rings": pd.DataFrame({
            "ring_id": ["r1", "r2"],
            "size": [3, 1],
            "score": [score, float("nan")],
            "rank": [1, 2],
            "campaign_id": ["c1", None],
            "explanation": ["shares prepaid cards", "no score"],
            "features": [{"prepaid_share": 0.75, "templates": ["t1"]}, "{}"],
        }),
        "members": pd.DataFrame({"ring_id": ["r1", "r1", "r1", "r2"],
                                 "account_id": ["a1", "a2", "a3", "a4"]}),
        "campaigns": pd.DataFrame({"campaign_id": ["c1"], "n_rings": [1], "size": [3]}),
    }


def sweep(sweep_id: str, day: int) -> SweepRecord:
    return SweepRecord(sweep_id, datetime(2024, 2, day, tzinfo=UTC), {"resolution": 0.05})


def test_sweep_round_trip(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    sweeps = store.read_sweeps()
    assert sweeps["sweep_id"].tolist() == ["s1"]
    assert sweeps["params"].item() == {"resolution": 0.05}
    assert sweeps["at"].item() == pd.Timestamp("2024-02-01", tz="UTC")
    rings = store.read_rings()
    assert rings["ring_id"].tolist() == ["r1", "r2"]
    assert rings.loc[0, "features"] == {"prepaid_share": 0.75, "templates": ["t1"]}
    assert pd.isna(rings.loc[1, "score"])
    assert store.read_ring_members("r1")["account_id"].tolist() == ["a1", "a2", "a3"]


def test_rewriting_a_sweep_replaces_it_and_ring_ids_recur_across_sweeps(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results(0.9))
    store.write_sweep(sweep("s1", 1), **results(0.8))
    store.write_sweep(sweep("s2", 2), **results(0.7))
    assert store.read_sweeps()["sweep_id"].tolist() == ["s1", "s2"]
    assert store.read_rings()["score"].iloc[0] == pytest.approx(0.7)  # latest sweep
    assert store.read_rings(sweep_id="s1")["score"].iloc[0] == pytest.approx(0.8)
    assert len(store.read_ring_members("r1", sweep_id="s1")) == 3
    with pytest.raises(RingNotFound):
        store.read_ring_members("r9")


def test_members_must_name_loaded_accounts(store: Store) -> None:
    store.load(platform(), progress=False)
    bad = results()
    bad["members"] = pd.DataFrame({"ring_id": ["r1"], "account_id": ["ghost"]})
    with pytest.raises(StoreError, match="not in the"):
        store.write_sweep(sweep("s1", 1), **bad)


@pytest.mark.neo4j
def test_ring_features_are_flattened_on_the_ring_node(neo4j_driver: neo4j.Driver) -> None:
    store = Neo4jStore(neo4j_driver)
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    ring = store.query(
        "MATCH (a:Account)-[:IN_RING]->(g:Ring {id: $id})-[:FOUND_IN]->(s:Sweep), "
        "(g)-[:PART_OF]->(c:Campaign) RETURN g.f_prepaid_share AS share, g.f_templates AS t, "
        "count(a) AS members, s.id AS sweep, c.id AS campaign",
        {"id": "r1"},
    )
    assert ring.to_dict("records") == [
        {"share": 0.75, "t": None, "members": 3, "sweep": "s1", "campaign": "c1"}
    ]


@pytest.mark.neo4j
def test_open_store_reads_neo4j_settings_from_the_environment(
    neo4j_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEO4J_URI", neo4j_uri)
    with open_store(path=tmp_path / "g.duckdb") as store:  # type: ignore[attr-defined]
        assert store.kind == "neo4j"
    embedded = open_store(path=tmp_path / "g.duckdb", use_env=False)
    assert embedded.kind == "embedded"
    embedded.close()
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")
    with pytest.raises(Neo4jUnavailable):
        open_store()
