"""The local Neo4j's authentication and CORS, against real servers (never a mock).

Neo4j locks a user for a few seconds after 3 failed logins in a row, so these tests try a
wrong password for ``neo4j`` only once on the session's server.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.errors import LocalNeo4jError
from graphinv.stores import open_store
from graphinv.stores.neo4j.local import LocalNeo4j, local_auth

FOREIGN_ORIGIN = "http://attacker.example"
TX = "/db/neo4j/tx/commit"
QUERY = json.dumps({"statements": [{"statement": "RETURN 42 AS answer"}]}).encode()
TINY = {
    "accounts.csv": "account_id,created_at,country\na1,2024-01-01T00:00:00Z,US\n"
                    "a2,2024-01-02T00:00:00Z,FR\n",
    "links.csv": "account_id,kind,value,first_seen,last_seen,count\n"
                 "a1,payment_method,card-1,2024-01-05T00:00:00Z,2024-02-01T00:00:00Z,3\n"
                 "a2,payment_method,card-1,2024-01-06T00:00:00Z,2024-02-02T00:00:00Z,4\n",
    "usage.csv": "account_id,hour,model,requests,input_tokens,output_tokens\n"
                 "a1,2024-01-05T10:00:00Z,m1,10,1000,5000\n",
}


def _http(
    server: LocalNeo4j, *, origin: str, auth: tuple[str, str] | None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One request to the HTTP API as a page of ``origin`` would send it."""
    headers = {"Origin": origin, "Content-Type": "application/json"}
    if method == "OPTIONS":  # a browser's preflight before a cross-origin JSON POST
        headers.update({"Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "authorization, content-type"})
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{TX}", method=method,
        data=QUERY if method == "POST" else None, headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def server(neo4j_uri: str) -> LocalNeo4j:
    """The session's local server (the suite starts it)."""
    local = LocalNeo4j.from_env()
    if neo4j_uri != local.bolt_uri:
        pytest.fail(f"these tests need graphinv's local server, not {neo4j_uri}")
    return local


@pytest.mark.neo4j
def test_bolt_needs_the_password(server: LocalNeo4j) -> None:
    with (
        neo4j.GraphDatabase.driver(server.bolt_uri, auth=None) as driver,
        pytest.raises(neo4j.exceptions.AuthError),
    ):
        driver.verify_connectivity()
    with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:
        records, _, _ = driver.execute_query("RETURN 1 AS one")
    assert records[0]["one"] == 1


@pytest.mark.neo4j
def test_http_api_needs_the_password_and_answers_cors_for_its_own_origin_only(
    server: LocalNeo4j,
) -> None:
    assert server.origin == f"http://127.0.0.1:{server.http_port}"
    # Without a password nothing is read or written, whatever the origin.
    status, headers, body = _http(server, origin=FOREIGN_ORIGIN, auth=None)
    assert status == 401 and b"Unauthorized" in body
    # Neo4j sends one fixed Access-Control-Allow-Origin; a browser lets a page read the
    # answer only when it equals the page's origin, so a foreign page is never let in,
    # even one that knows the password, and its preflight is not granted either.
    for method in ("POST", "OPTIONS"):
        status, headers, _ = _http(server, origin=FOREIGN_ORIGIN, auth=server.auth,
                                   method=method)
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == server.origin != FOREIGN_ORIGIN
    # The server's own origin (where Browser runs) is allowed.
    status, headers, body = _http(server, origin=server.origin, auth=server.auth)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == server.origin
    assert json.loads(body)["results"][0]["data"][0]["row"] == [42]


@pytest.mark.neo4j
def test_password_file_is_owner_only_and_the_browser_link_preselects_the_user(
    server: LocalNeo4j,
) -> None:
    info = server.password_file.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
    password = server.password()
    assert len(password) == 32 and password.isalnum()
    for folder in ("data", "conf", "logs"):
        assert stat.S_IMODE((server.home / folder).stat().st_mode) == 0o700, folder
    assert server.browser_url == (
        f"http://127.0.0.1:{server.http_port}/browser/"
        f"?dbms=bolt://neo4j@127.0.0.1:{server.bolt_port}&preselectAuthMethod=NATIVE"
    )
    with urllib.request.urlopen(server.browser_url, timeout=10) as response:
        assert b"Neo4j Browser" in response.read()


@pytest.mark.neo4j
def test_cli_and_open_store_use_the_stored_password_and_explicit_credentials_win(
    server: LocalNeo4j, neo4j_driver: neo4j.Driver, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, text in TINY.items():
        (tmp_path / name).write_text(text)
    monkeypatch.delenv("NEO4J_USER", raising=False)
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.delenv("NEO4J_URI", raising=False)
    for uri in (server.bolt_uri, f"neo4j://localhost:{server.bolt_port}"):
        assert local_auth(uri) == server.auth
    result = CliRunner().invoke(cli, ["--quiet", "--neo4j", server.bolt_uri, "load",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    with open_store(neo4j_uri=f"neo4j://localhost:{server.bolt_port}") as store:
        assert store.graph_counts()[":Account"] == 2

    # NEO4J_USER / NEO4J_PASSWORD win over the stored password: a wrong one is refused.
    monkeypatch.setenv("NEO4J_USER", "neo4j")
    monkeypatch.setenv("NEO4J_PASSWORD", "not-the-password")
    result = CliRunner().invoke(cli, ["--quiet", "--neo4j", server.bolt_uri, "load",
                                      str(tmp_path)])
    assert result.exit_code != 0
    assert "unauthorized" in result.output.lower() or "authentication" in result.output.lower()


def test_unsafe_password_files_are_refused(tmp_path: Path) -> None:
    local = LocalNeo4j(home=tmp_path / "home")
    with pytest.raises(LocalNeo4jError, match="no password file"):
        local.password()
    local.conf_dir.mkdir(parents=True)
    local.password_file.write_text("Abcdefgh12345678\n")
    local.password_file.chmod(0o644)
    with pytest.raises(LocalNeo4jError, match="readable by others"):
        local.password()
    local.password_file.unlink()
    (tmp_path / "elsewhere").write_text("Abcdefgh12345678\n")
    (tmp_path / "elsewhere").chmod(0o600)
    local.password_file.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LocalNeo4jError, match="must not be a link"):
        local.password()
    # Another server's URI, or no password file: no stored credentials are offered.
    assert local_auth("bolt://db.example.org:7687") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def throwaway(tmp_path: Path, neo4j_uri: str) -> Iterator[LocalNeo4j]:
    """A server with its own home and ports, sharing the session's jars."""
    local = LocalNeo4j(home=tmp_path / "home", jars=LocalNeo4j.from_env().lib.resolve(),
                       bolt_port=_free_port(), http_port=_free_port(),
                       heap="384m", pagecache="64m")
    yield local
    local.stop()


@pytest.mark.neo4j
def test_a_home_from_before_passwords_is_upgraded_and_a_foreign_password_refused(
    throwaway: LocalNeo4j, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = throwaway
    # A home as graphinv made it before passwords: the system database created with auth
    # off (so neo4j keeps its default password), no password file, no initial password.
    with monkeypatch.context() as old_graphinv:
        write_conf = LocalNeo4j.write_conf

        def auth_off(self: LocalNeo4j) -> Path:
            path = write_conf(self)
            path.write_text(path.read_text().replace(
                "dbms.security.auth_enabled=true", "dbms.security.auth_enabled=false"))
            return path

        old_graphinv.setattr(LocalNeo4j, "write_conf", auth_off)
        old_graphinv.setattr(LocalNeo4j, "_set_initial_password", lambda self: None)
        server.start(timeout=240)
        with neo4j.GraphDatabase.driver(server.bolt_uri, auth=None) as driver:
            driver.execute_query("CREATE (:Probe {name: $name})", name="from before")
        server.stop()
    server.password_file.unlink()
    assert (server.home / "data" / "databases" / "system").is_dir()

    upgraded = server.start(timeout=240)
    assert upgraded.new_password is not None and upgraded.new_password == server.password()
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    with (
        neo4j.GraphDatabase.driver(server.bolt_uri, auth=None) as driver,
        pytest.raises(neo4j.exceptions.AuthError),
    ):
        driver.verify_connectivity()
    with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:
        records, _, _ = driver.execute_query("MATCH (p:Probe) RETURN p.name AS name")
    assert [r["name"] for r in records] == ["from before"]
    server.stop()

    # A later start shows no password; one the server does not know stops it, clearly.
    assert server.start(timeout=240).new_password is None
    server.stop()
    server.password_file.write_text("SomeOtherPassword123\n")
    with pytest.raises(LocalNeo4jError, match="refuses the password"):
        server.start(timeout=240)
    assert not server.status().running
