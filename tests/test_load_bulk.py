"""The offline first load with neo4j-admin, into a throw-away local server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from graphinv.errors import StoreError
from graphinv.ingest.load import load_dir, read_dir
from graphinv.investigate.case import Case
from graphinv.schema import TABLES
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.bulk import OfflineImport, bulk_import
from graphinv.stores.neo4j.local import LocalNeo4j
from graphinv.stores.neo4j.store import Neo4jStore
from graphinv.sweep import run_sweep
from graphinv.synth import generate, write_platform

# The suite server's download, wherever GRAPHINV_NEO4J_HOME puts it.
JARS = LocalNeo4j.from_env().lib
FOLDER = {
    "accounts.csv": (
        "account_id,created_at,country\n"
        "a1,2024-01-01T00:00:00Z,US\n"
        'a2,2024-01-02T00:00:00Z,"Comma, Inc"\n'
        "a3,2024-01-03T00:00:00Z,\n"
    ),
    "links.csv": (
        "account_id,kind,value,first_seen,last_seen,count\n"
        "a1,payment_method,card-1,2024-01-05T00:00:00.123456Z,2024-02-01T00:00:00Z,3\n"
        "a2,payment_method,card-1,2024-01-06T00:00:00Z,2024-02-02T00:00:00Z,4\n"
        "a1,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,10\n"
        "a3,device,dev-9,2024-01-05T00:00:00Z,2024-01-07T00:00:00Z,1\n"
        "a3,ip,bad,2024-01-05T00:00:00Z,2023-01-07T00:00:00Z,1\n"
    ),
    "usage.csv": (
        "account_id,hour,model,requests,input_tokens,output_tokens\n"
        "a1,2024-01-05T10:00:00Z,m1,10,1000,5000\n"
        "a1,2024-01-05T11:00:00Z,m1,12,1100,5100\n"
        "a2,2024-01-05T10:00:00Z,m2,3,300,900\n"
    ),
    "ips.csv": "ip,asn,is_proxy\n203.0.113.7,64500,true\n198.51.100.1,64501,false\n",
    "labels.csv": "account_id,ring_id,kind\na1,r1,extraction\n",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalNeo4j]:
    """A stopped, empty server on free ports of its own, so no other server is touched."""
    local = LocalNeo4j(home=tmp_path / "neo4j", jars=JARS, bolt_port=_free_port(),
                       http_port=_free_port(), heap="512m", pagecache="256m")
    yield local
    local.stop()


@pytest.mark.neo4j
@pytest.mark.slow
def test_bulk_import_builds_the_graph_bolt_loading_builds(
    server: LocalNeo4j, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in FOLDER.items():
        (folder / name).write_text(text)
    report = load_dir(folder, OfflineImport(server), extra_kinds=["device"],
                           quarantine_dir=tmp_path / "q")
    assert report.exit_code == 3 and report.rows_quarantined["links"] == 1
    # 4 links + 2 HAS_USAGE
    assert report.relationships == 6
    expected, _ = read_dir(folder, extra_kinds=["device"])
    with Neo4jStore.connect(server.bolt_uri, auth=server.auth) as store:
        counts = store.graph_counts()
        assert counts[":Account"] == 3
        assert counts[":IP"] == 2 and counts[":PaymentMethod"] == 1 and counts[":Identifier"] == 1
        assert counts["[PAID_WITH]"] == 2 and counts["[USES]"] == 1 and counts["[HAS_USAGE]"] == 2
        constraints = store.query("SHOW CONSTRAINTS YIELD name RETURN name")["name"]
        assert "account_id" in set(constraints)
        loaded = store.read_platform(include_labels=True)
        for name, frame in expected.tables().items():
            want = frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)
            pd.testing.assert_frame_equal(getattr(loaded, name), want)
        # A later load over Bolt merges into the imported graph without duplicating it.
        shape = store.graph_counts()
        load_dir(folder, store, extra_kinds=["device"], progress=False,
                 quarantine_dir=tmp_path / "q")
        assert store.graph_counts() == shape
    server.stop()
    with pytest.raises(StoreError, match="already holds a database"):
        bulk_import(expected, server=server)
    # Said when the target is built, before the loader reads and validates a folder.
    with pytest.raises(StoreError, match="already holds a database"):
        OfflineImport(server)


@pytest.mark.neo4j
@pytest.mark.slow
def test_offline_import_with_a_columnar_copy_gives_a_store_that_sweeps_on_the_copy(
    server: LocalNeo4j, tmp_path: Path
) -> None:
    platform = generate(preset="small", seed=5, n_accounts=1500)
    write_platform(platform, tmp_path / "in")
    kinds = sorted(set(platform.links["kind"]))
    copy_path = tmp_path / "copy.duckdb"
    copy = EmbeddedStore(copy_path)
    try:
        report = load_dir(tmp_path / "in", OfflineImport(server, columnar=copy),
                          extra_kinds=kinds, progress=False, quarantine_dir=tmp_path / "q")
    finally:
        copy.close()
    assert report.exit_code == 0
    reference = EmbeddedStore(tmp_path / "reference.duckdb")
    graph = Neo4jStore.connect(server.bolt_uri, auth=server.auth,
                               columnar=EmbeddedStore(copy_path))
    plain = Neo4jStore.connect(server.bolt_uri, auth=server.auth)  # the graph over Bolt
    try:
        assert graph._columnar_in_step(), "the import marks the copy in step"
        pd.testing.assert_frame_equal(graph.read_platform().links,
                                      plain.read_platform().links, check_dtype=False)
        reference.load(platform, progress=False)
        swept = run_sweep(graph, progress=False)
        expected = run_sweep(reference, progress=False)
        assert swept.counts == expected.counts and swept.counts["rings"] > 0
        rings = graph.read_rings()[["ring_id", "size", "score"]]
        pd.testing.assert_frame_equal(
            rings, reference.read_rings()[["ring_id", "size", "score"]], check_dtype=False)
        top = str(rings["ring_id"].iloc[0])
        assert len(Case(top, store=graph).members) == int(rings["size"].iloc[0])
    finally:
        graph.close()
        plain.close()
        reference.close()
    server.stop()
    copy = EmbeddedStore(copy_path)
    try:
        with pytest.raises(StoreError, match="columnar copy already holds accounts"):
            load_dir(tmp_path / "in", OfflineImport(server, columnar=copy), extra_kinds=kinds,
                     progress=False, quarantine_dir=tmp_path / "q")
    finally:
        copy.close()
