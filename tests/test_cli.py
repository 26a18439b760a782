"""The command line end to end, on both stores: synth → load → sweep → rings → evaluate."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.stores.neo4j.local import LocalNeo4j
from graphinv.sweep import EXIT_ALERT


@pytest.fixture(scope="module")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("platform")
    result = CliRunner().invoke(cli, ["synth", str(out), "--preset", "small", "--seed", "21"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def store_args(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Global options that point the CLI at an empty store of each backend."""
    if backend == "embedded":
        return ["--quiet", "--db", str(tmp_path / "g.duckdb")]
    request.getfixturevalue("neo4j_driver")  # an emptied database
    return ["--quiet", "--neo4j", request.getfixturevalue("neo4j_uri")]


def run(args: list[str]) -> tuple[int, str]:
    """Exit status and standard output (stderr carries the `store: …` line and errors)."""
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.stdout if result.exit_code in (0, 3, 10) else result.output


def test_load_sweep_rings_evaluate(
    platform_dir: Path, store_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run([*store_args, "load", str(platform_dir)])
    assert code == 0, output

    report_path = tmp_path / "report.json"
    code, output = run([*store_args, "sweep", "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == report["exit_code"] and code in (0, EXIT_ALERT)
    assert report["counts"]["rings"] == len(report["rings"]) > 0
    assert report["lineage"]["new"] == report["counts"]["rings"]  # first sweep: all new
    assert [r["rank"] for r in report["rings"]] == list(range(1, len(report["rings"]) + 1))

    code, output = run([*store_args, "rings", "--members", "--format", "csv"])
    assert code == 0, output
    members = pd.read_csv(io.StringIO(output))
    assert list(members.columns) == ["account_id", "ring_id"]
    assert len(members) == report["counts"]["accounts_in_rings"]
    assert set(members["ring_id"]) == {r["ring_id"] for r in report["rings"]}

    code, output = run([*store_args, "evaluate", "--labels", str(platform_dir), "--format", "json"])
    assert code == 0, output
    metrics = json.loads(output)
    assert 0.0 <= metrics["extraction_mean_f1"] <= 1.0


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "g.duckdb"), "load", str(tmp_path)])
    assert result.exit_code == 1
    # The store the command chose comes first (on stderr), then one error line.
    store_line, error_line = result.output.splitlines()
    assert store_line.startswith("store: embedded DuckDB file")
    assert error_line.startswith("Error: ")
    assert "Traceback" not in result.output


@pytest.mark.neo4j
def test_bulk_first_load_into_a_stopped_local_server(
    platform_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, neo4j_uri: str
) -> None:
    shared = LocalNeo4j.from_env()
    home = tmp_path / "bulk-home"
    home.mkdir()
    (home / "lib").symlink_to(shared.lib.resolve())  # reuse the downloaded jars
    monkeypatch.setenv("GRAPHINV_NEO4J_HOME", str(home))
    monkeypatch.setenv("GRAPHINV_NEO4J_BOLT_PORT", "17693")
    monkeypatch.setenv("GRAPHINV_NEO4J_HTTP_PORT", "17493")
    monkeypatch.setenv("GRAPHINV_NEO4J_HEAP", "512m")
    monkeypatch.setenv("GRAPHINV_NEO4J_PAGECACHE", "256m")
    monkeypatch.chdir(tmp_path)
    server = LocalNeo4j.from_env()
    try:
        code, output = run(["--quiet", "load", str(platform_dir), "--bulk"])
        assert code == 0, output
        assert server.status().running
        code, output = run(["--quiet", "--neo4j", server.bolt_uri, "sweep", "--json", "-"])
        assert code in (0, EXIT_ALERT), output
        assert json.loads(output)["counts"]["accounts"] == 6000
    finally:
        server.stop()
