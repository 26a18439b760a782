"""Sweep results, backend errors and store selection, on both backends.

The ``store`` fixture (``tests/conftest.py``) runs each test once per backend.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import neo4j
import pandas as pd
import pytest

from graphinv.errors import Neo4jUnavailable, RingNotFound, StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores import Store, SweepRecord, open_store
from graphinv.stores.base import shorten
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j import cypher
from graphinv.stores.neo4j.store import Neo4jStore


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


def lineage_results(score: float = 0.9) -> dict[str, pd.DataFrame]:
    """The rings of ``results`` as a sweep's runner writes them: with lineage columns."""
    out = results(score)
    out["rings"] = out["rings"].assign(
        flagged=[True, False],
        status=["grown", "new"],
        predecessors=[("r1", "r0"), ()],
        lineage_evidence=["3 of 3 members kept", None],
        density=[0.667, float("nan")],
    )
    return out


def edges(shared: int = 2) -> pd.DataFrame:
    return pd.DataFrame({
        "ring_id": ["r1", "r1"],
        "previous_ring_id": ["r1", "r2"],
        "status": ["merged", "merged"],
        "shared_members": [shared, 1],
        "member_jaccard": [0.5, float("nan")],
        "shared_identifiers": [4, 0],
        "infra_overlap": [0.8, 0.0],
    })


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
    everyone = store.read_members()
    chosen = store.read_members(ring_ids=["r2", "nope"])
    assert len(chosen) and (chosen["ring_id"] == "r2").all()
    pd.testing.assert_frame_equal(
        chosen, everyone.loc[everyone["ring_id"] == "r2"].reset_index(drop=True),
        check_dtype=False)
    assert store.read_members(ring_ids=[]).empty
    with pytest.raises(TypeError, match="sequence of ring ids"):
        store.read_members(ring_ids="r2")


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


def test_ring_lineage_columns_round_trip(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **lineage_results())
    rings = store.read_rings()
    assert rings["flagged"].tolist() == [True, False]
    assert rings["status"].tolist() == ["grown", "new"]
    assert rings["predecessors"].tolist() == [["r1", "r0"], []]
    assert rings["lineage_evidence"].tolist() == ["3 of 3 members kept", None]
    assert rings.loc[0, "density"] == pytest.approx(0.667)
    assert pd.isna(rings.loc[1, "density"])


def test_rings_without_lineage_columns_read_back_empty(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    rings = store.read_rings()
    assert rings["predecessors"].tolist() == [[], []]
    assert rings["status"].tolist() == [None, None]
    assert rings["flagged"].isna().all()
    assert store.read_lineage().empty


def test_continues_edges_are_written_and_read(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    store.write_sweep(
        sweep("s2", 2), **lineage_results(), lineage=edges(), previous_sweep_id="s1"
    )
    read = store.read_lineage()
    assert read.columns.tolist() == [
        "sweep_id", "previous_sweep_id", "ring_id", "previous_ring_id", "status",
        "shared_members", "member_jaccard", "shared_identifiers", "infra_overlap",
    ]
    assert read[["sweep_id", "previous_sweep_id", "ring_id", "previous_ring_id"]].to_dict(
        "records"
    ) == [
        {"sweep_id": "s2", "previous_sweep_id": "s1", "ring_id": "r1", "previous_ring_id": p}
        for p in ("r1", "r2")
    ]
    assert read["shared_members"].tolist() == [2, 1]
    assert read.loc[0, "member_jaccard"] == pytest.approx(0.5)
    assert pd.isna(read.loc[1, "member_jaccard"])
    assert read["status"].tolist() == ["merged", "merged"]
    assert store.read_lineage(sweep_id="s1").empty


def test_rewriting_a_sweep_replaces_its_rings_and_edges(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    store.write_sweep(
        sweep("s2", 2), **lineage_results(), lineage=edges(2), previous_sweep_id="s1"
    )
    store.write_sweep(
        sweep("s2", 2), **lineage_results(0.5), lineage=edges(3).iloc[:1],
        previous_sweep_id="s1",
    )
    read = store.read_lineage(sweep_id="s2")
    assert read[["previous_ring_id", "shared_members"]].values.tolist() == [["r1", 3]]
    assert store.read_rings(sweep_id="s2")["score"].iloc[0] == pytest.approx(0.5)
    assert len(store.read_rings(sweep_id="s2")) == 2
    # Rewriting the earlier sweep replaces the rings the edges pointed into: edges go too.
    store.write_sweep(sweep("s1", 1), **results())
    assert store.read_lineage(sweep_id="s2").empty


def test_a_lineage_edge_to_an_unknown_ring_writes_nothing(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    bad = edges().assign(previous_ring_id=["r1", "ghost"])
    with pytest.raises(StoreError, match="lineage edge"):
        store.write_sweep(sweep("s2", 2), **lineage_results(), lineage=bad,
                          previous_sweep_id="s1")
    assert store.read_sweeps()["sweep_id"].tolist() == ["s1"]
    with pytest.raises(StoreError, match="previous_sweep_id"):
        store.write_sweep(sweep("s2", 2), **lineage_results(), lineage=edges())


def test_an_unknown_lineage_status_is_refused(store: Store) -> None:
    store.load(platform(), progress=False)
    bad = lineage_results()
    bad["rings"]["status"] = ["grown", "teleported"]
    with pytest.raises(StoreError, match="teleported"):
        store.write_sweep(sweep("s1", 1), **bad)


def test_an_embedded_file_from_before_lineage_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE rings (sweep_id VARCHAR, ring_id VARCHAR, size BIGINT, score DOUBLE, "
        "rank BIGINT, campaign_id VARCHAR, explanation VARCHAR, features VARCHAR)"
    )
    con.execute("INSERT INTO rings VALUES ('s0', 'r0', 3, 0.5, 1, NULL, 'old', '{}')")
    con.close()
    with EmbeddedStore(path) as store:
        store.load(platform(), progress=False)
        old = store.read_rings(sweep_id="s0")
        assert old["ring_id"].tolist() == ["r0"]
        assert old["predecessors"].tolist() == [[]]
        store.write_sweep(sweep("s1", 1), **lineage_results())
        assert store.read_rings()["status"].tolist() == ["grown", "new"]


@pytest.mark.neo4j
def test_continues_edges_join_the_rings_of_two_sweeps(neo4j_driver: neo4j.Driver) -> None:
    store = Neo4jStore(neo4j_driver)
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    store.write_sweep(
        sweep("s2", 2), **lineage_results(), lineage=edges(), previous_sweep_id="s1"
    )
    found = store.query(
        "MATCH (:Sweep {id: 's2'})<-[:FOUND_IN]-(g:Ring)-[c:CONTINUES]->(p:Ring)"
        "-[:FOUND_IN]->(:Sweep {id: 's1'}) "
        "RETURN g.id AS ring, p.id AS previous, c.status AS status, g.predecessors AS preds, "
        "g.flagged AS flagged ORDER BY previous"
    )
    assert found.to_dict("records") == [
        {"ring": "r1", "previous": p, "status": "merged", "preds": ["r1", "r0"], "flagged": True}
        for p in ("r1", "r2")
    ]


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
    with open_store(path=tmp_path / "g.duckdb") as store:
        assert store.backend == "neo4j"
    embedded = open_store(path=tmp_path / "g.duckdb", use_env=False)
    assert embedded.backend == "embedded"
    embedded.close()
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")
    with pytest.raises(Neo4jUnavailable):
        open_store()


# -- backend errors --------------------------------------------------------------------

BAD_QUERY = {
    "embedded": "SELECT no_such_column FROM rings WHERE sweep_id = $sweep_id",
    "neo4j": "MATCH (g:Ring {sweep_id: $sweep_id}) RETURN g.id / 0 AS boom",
}
BACKEND_ERROR = {"embedded": duckdb.Error, "neo4j": neo4j.exceptions.Neo4jError}


def test_a_refused_query_names_the_statement_and_keeps_the_cause(store: Store) -> None:
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    bad = BAD_QUERY[store.backend]
    with pytest.raises(StoreError, match=re.escape(shorten(bad))) as caught:
        store.query(bad, {"sweep_id": "s1"})
    assert isinstance(caught.value.__cause__, BACKEND_ERROR[store.backend])
    assert store.backend in str(caught.value)


def test_a_refused_write_names_its_statement_and_writes_nothing(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "g.duckdb") as store:
        store.load(platform(), progress=False)
        store.query("DROP TABLE campaigns")  # a file damaged behind the store's back
        with pytest.raises(StoreError, match="DELETE FROM campaigns") as caught:
            store.write_sweep(sweep("s1", 1), **results())
        assert isinstance(caught.value.__cause__, duckdb.CatalogException)
        assert store.read_sweeps().empty and store.read_rings(sweep_id="s1").empty


@pytest.mark.neo4j
def test_a_neo4j_refusal_inside_a_sweep_write_names_its_statement(
    neo4j_driver: neo4j.Driver,
) -> None:
    store = Neo4jStore(neo4j_driver)
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    # Both sweeps carry the same params: the second SET breaks this uniqueness rule.
    neo4j_driver.execute_query(
        "CREATE CONSTRAINT sweep_params FOR (s:Sweep) REQUIRE s.params IS UNIQUE"
    )
    with pytest.raises(StoreError, match=re.escape(shorten(cypher.SWEEP_MERGE))) as caught:
        store.write_sweep(sweep("s2", 2), **results())
    assert isinstance(caught.value.__cause__, neo4j.exceptions.ConstraintError)
    assert store.read_sweeps()["sweep_id"].tolist() == ["s1"]  # the transaction rolled back


@pytest.mark.neo4j
def test_queries_on_neo4j_run_read_only(neo4j_driver: neo4j.Driver) -> None:
    store = Neo4jStore(neo4j_driver)
    with pytest.raises(StoreError, match="CREATE"):
        store.run_cypher("CREATE (:Account {id: 'planted'})")
    assert store.query("MATCH (a:Account) RETURN count(a) AS n")["n"].item() == 0


def test_cypher_on_the_embedded_store_says_it_needs_neo4j(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "g.duckdb") as store, pytest.raises(
        StoreError, match="need the Neo4j store; this store is embedded"
    ):
        store.run_cypher("MATCH (g:Ring) RETURN g.id AS ring_id")


# -- files and graphs from older versions ----------------------------------------------


def old_file(path: Path) -> None:
    """A DuckDB file as the version before the rename wrote it: edge statuses in `kind`."""
    with EmbeddedStore(path) as store:
        store.load(platform(), progress=False)
        store.write_sweep(sweep("s1", 1), **results())
        store.write_sweep(sweep("s2", 2), **lineage_results(), lineage=edges(),
                          previous_sweep_id="s1")
        store.query("ALTER TABLE ring_lineage RENAME COLUMN status TO kind")


def test_an_old_file_opened_read_only_says_it_is_from_an_older_version(tmp_path: Path) -> None:
    old_file(tmp_path / "old.duckdb")
    with pytest.raises(StoreError, match=r"older graphinv \(it lacks ring_lineage\.status\)"):
        EmbeddedStore(tmp_path / "old.duckdb", read_only=True)


def test_an_old_file_opened_writable_is_upgraded(tmp_path: Path) -> None:
    old_file(tmp_path / "old.duckdb")
    with EmbeddedStore(tmp_path / "old.duckdb") as store:
        assert store.read_lineage()["status"].tolist() == ["merged", "merged"]
    with EmbeddedStore(tmp_path / "old.duckdb", read_only=True) as store:
        assert store.read_lineage()["previous_ring_id"].tolist() == ["r1", "r2"]


@pytest.mark.neo4j
def test_continues_edges_of_an_older_version_get_their_status(
    neo4j_driver: neo4j.Driver,
) -> None:
    store = Neo4jStore(neo4j_driver)
    store.load(platform(), progress=False)
    store.write_sweep(sweep("s1", 1), **results())
    store.write_sweep(sweep("s2", 2), **lineage_results(), lineage=edges(), previous_sweep_id="s1")
    neo4j_driver.execute_query(
        "MATCH ()-[c:CONTINUES]->() SET c.kind = c.status REMOVE c.status"
    )
    assert store.read_lineage()["status"].isna().all()  # as an older version left them
    Neo4jStore(neo4j_driver).ensure_schema()
    assert store.read_lineage()["status"].tolist() == ["merged", "merged"]


def test_breakdown_rows_are_each_rings_records_in_order() -> None:
    """One pass over the frame gives, per ring (sorted), its rows in their order as JSON
    records, missing numbers as null: what a per-ring group-by gives."""
    import json

    from graphinv.stores.base import BREAKDOWN_COLUMNS, breakdown_rows

    frame = pd.DataFrame({
        "ring_id": ["r10", "r2", "r10", None, "r2"],
        "feature": ["a", "b", "c", "d", "e"],
        "group": "traffic",
        "value": [1.5, float("nan"), 2.0, 3.0, 4.0],
        "baseline": 0.5, "suspicion": [0.1, 0.2, 0.3, 0.4, 0.5], "weight": 1.0,
        "contribution": 0.25, "text": ["t1", "t2", "t3", "t4", "t5"],
    })
    expected = []
    for ring_id, group in frame.groupby("ring_id", sort=True):
        records = [{c: (None if isinstance(row[c], float) and row[c] != row[c] else row[c])
                    for c in BREAKDOWN_COLUMNS} for row in group.to_dict("records")]
        expected.append((ring_id, json.dumps(records)))
    assert breakdown_rows(frame) == expected
    assert [r for r, _ in breakdown_rows(frame)] == ["r10", "r2"]
    assert json.loads(breakdown_rows(frame)[1][1])[0]["value"] is None
