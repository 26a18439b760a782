"""Neo4j Graph Data Science inside the local server: installed from Maven Central, loaded,
and answering, against a real server (never a mock)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.errors import LocalNeo4jError
from graphinv.stores.neo4j.local import LocalNeo4j


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gds_server(neo4j_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNeo4j]:
    """The suite's local server when it runs with GDS (``GRAPHINV_NEO4J_GDS=1``), else a
    throw-away one with GDS on free ports, sharing the suite's server jars."""
    shared = LocalNeo4j.from_env()
    if shared.status().running and shared.loaded_gds_version() is not None:
        yield shared
        return
    server = LocalNeo4j(
        home=tmp_path_factory.mktemp("gds") / "neo4j",
        jars=shared.lib,
        bolt_port=_free_port(),
        http_port=_free_port(),
        heap="512m",
        pagecache="64m",
        gds=True,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.neo4j
def test_gds_version_answers(gds_server: LocalNeo4j) -> None:
    assert gds_server.loaded_gds_version() == gds_server.gds_version() == "2.13.9"


@pytest.mark.neo4j
def test_plugins_leave_out_what_the_server_has_and_keep_gds_namesakes(
    gds_server: LocalNeo4j,
) -> None:
    plugins = {jar.name for jar in gds_server.plugins.glob("*.jar")}
    lib = {jar.name for jar in gds_server.lib.glob("*.jar")}
    # Same group:artifact as a server jar: left out, the server's copy serves both.
    assert not any(name.startswith(("jackson-databind-", "caffeine-", "slf4j-api-"))
                   for name in plugins)
    # Same file-name stem as a server jar but other classes: kept.
    assert {"annotations-2.13.9.jar", "neo4j-values-2.13.9.jar"} <= plugins
    assert any(name.startswith("annotations-") for name in lib - plugins)
    assert any(name.startswith("cypher-ast-factory-9.0-") for name in plugins)
    conf = (gds_server.conf_dir / "neo4j.conf").read_text()
    assert "dbms.security.procedures.unrestricted=gds.*\n" in conf


@pytest.mark.neo4j
def test_wcc_on_a_five_node_projection(gds_server: LocalNeo4j) -> None:
    # a-b-c and d-e: two components, known in advance.
    with neo4j.GraphDatabase.driver(gds_server.bolt_uri, auth=gds_server.auth) as driver:
        driver.execute_query("MATCH (n:GdsProbe) DETACH DELETE n")
        driver.execute_query(
            "UNWIND $pairs AS p MERGE (x:GdsProbe {name: p[0]}) MERGE (y:GdsProbe {name: p[1]}) "
            "MERGE (x)-[:NEAR]->(y)",
            pairs=[["a", "b"], ["b", "c"], ["d", "e"]],
        )
        driver.execute_query(
            "CALL gds.graph.drop($graph, false) YIELD graphName RETURN graphName", graph="probe"
        )
        projected = driver.execute_query(
            "MATCH (x:GdsProbe)-[:NEAR]->(y:GdsProbe) "
            "WITH gds.graph.project($graph, x, y, {}, {undirectedRelationshipTypes: ['*']}) AS g "
            "RETURN g.nodeCount AS nodes, g.relationshipCount AS rels",
            graph="probe",
        ).records[0]
        try:
            records = driver.execute_query(
                "CALL gds.wcc.stream($graph) YIELD nodeId, componentId "
                "RETURN gds.util.asNode(nodeId).name AS name, componentId",
                graph="probe",
            ).records
        finally:
            driver.execute_query("CALL gds.graph.drop($graph) YIELD graphName", graph="probe")
            driver.execute_query("MATCH (n:GdsProbe) DETACH DELETE n")
    assert (projected["nodes"], projected["rels"]) == (5, 6)
    groups: dict[int, set[str]] = {}
    for record in records:
        groups.setdefault(record["componentId"], set()).add(record["name"])
    assert sorted(map(sorted, groups.values())) == [["a", "b", "c"], ["d", "e"]]


@pytest.mark.neo4j
def test_status_command_says_gds_is_loaded(
    gds_server: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHINV_NEO4J_HOME", str(gds_server.home))
    monkeypatch.setenv("GRAPHINV_NEO4J_BOLT_PORT", str(gds_server.bolt_port))
    monkeypatch.setenv("GRAPHINV_NEO4J_HTTP_PORT", str(gds_server.http_port))
    result = CliRunner().invoke(cli, ["neo4j", "status"])
    assert result.exit_code == 0, result.output
    assert "GDS 2.13.9 loaded" in result.output


def test_gds_env_flag_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHINV_NEO4J_GDS", "maybe")
    with pytest.raises(LocalNeo4jError, match="GRAPHINV_NEO4J_GDS"):
        LocalNeo4j.from_env()
    monkeypatch.setenv("GRAPHINV_NEO4J_GDS", "1")
    assert LocalNeo4j.from_env().gds


def test_gds_refuses_a_plugins_folder_it_did_not_fill(tmp_path: Path) -> None:
    server = LocalNeo4j(home=tmp_path, jars=LocalNeo4j.from_env().lib)
    server.plugins.mkdir(parents=True)
    (server.plugins / "someone-elses.jar").write_bytes(b"")
    with pytest.raises(LocalNeo4jError, match=r"someone-elses\.jar"):
        server.install_gds()
    assert [p.name for p in server.plugins.iterdir()] == ["someone-elses.jar"]
