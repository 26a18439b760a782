"""The local Neo4j server: lifecycle against a real server, never a mock."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.errors import LocalNeo4jError
from graphinv.stores.neo4j.local import LocalNeo4j

pytestmark = pytest.mark.neo4j


def test_bolt_answers_return_1(neo4j_uri: str, neo4j_auth: tuple[str, str] | None) -> None:
    with neo4j.GraphDatabase.driver(neo4j_uri, auth=neo4j_auth) as driver:
        records, _, _ = driver.execute_query("RETURN 1 AS one")
    assert records[0]["one"] == 1


def test_browser_is_served(neo4j_uri: str) -> None:
    server = LocalNeo4j.from_env()
    with urllib.request.urlopen(server.browser_url, timeout=10) as response:
        body = response.read().decode()
    assert response.status == 200
    assert "<title>Neo4j Browser</title>" in body


def test_status_command_reports_running(neo4j_uri: str) -> None:
    result = CliRunner().invoke(cli, ["neo4j", "status"])
    assert result.exit_code == 0, result.output
    assert "running" in result.output


@pytest.fixture
def throwaway_server(tmp_path: Path, neo4j_uri: str) -> LocalNeo4j:
    """A second server on other ports with its own data folder, sharing the downloaded jars."""
    shared = LocalNeo4j.from_env()
    server = LocalNeo4j(
        home=tmp_path / "neo4j-home",
        jars=shared.lib,
        bolt_port=17687,
        http_port=17474,
        heap="512m",
        pagecache="128m",
    )
    yield server
    server.stop()


def test_restart_keeps_data_and_second_start_says_running(throwaway_server: LocalNeo4j) -> None:
    server = throwaway_server
    assert not server.status().running

    started = server.start()
    assert started.running and started.version is not None
    assert started.version.startswith("5.26.")
    # The first start generated the password and says it, once.
    assert started.new_password is not None and started.new_password == server.password()
    with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:
        driver.execute_query("CREATE (:Probe {name: $name})", name="kept across restarts")

    with pytest.raises(LocalNeo4jError, match="already running"):
        server.start()

    assert server.stop() is True
    assert not server.status().running

    assert server.start().new_password is None
    with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:
        records, _, _ = driver.execute_query("MATCH (p:Probe) RETURN p.name AS name")
    assert [r["name"] for r in records] == ["kept across restarts"]
    assert server.stop() is True
    assert server.stop() is False


def test_start_on_a_taken_port_is_refused(tmp_path: Path, neo4j_uri: str) -> None:
    shared = LocalNeo4j.from_env()
    clash = LocalNeo4j(home=tmp_path / "clash", jars=shared.lib, bolt_port=shared.bolt_port)
    with pytest.raises(LocalNeo4jError, match="taken by another process"):
        clash.start()
