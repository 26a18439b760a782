"""Test fixtures shared by the suite.

Neo4j tests run against a real server. The session starts the local Neo4j (graphinv's own,
assembled from Maven Central) unless one already answers on its Bolt port, or
``GRAPHINV_TEST_NEO4J_URI`` names another server. A server that cannot be reached fails
the tests that need it; they are never skipped. Credentials: ``NEO4J_USER`` /
``NEO4J_PASSWORD`` when set, else the password the local server keeps in its home.

Every test that needs Neo4j carries the ``neo4j`` mark, so ``-m "not neo4j"`` is the fast
loop: the ``store``/``backend`` fixtures mark their Neo4j parameter, and
:func:`pytest_collection_modifyitems` marks any test that uses ``neo4j_uri`` or
``neo4j_driver``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import neo4j
import pytest

from graphinv.stores.base import Store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.local import LocalNeo4j, local_auth
from graphinv.stores.neo4j.store import Neo4jStore

# The marks each backend's parameter carries (what it needs to run).
BACKEND_MARKS: dict[str, tuple[pytest.MarkDecorator, ...]] = {
    "embedded": (),
    "neo4j": (pytest.mark.neo4j,),
}
NEO4J_FIXTURES = frozenset({"neo4j_uri", "neo4j_driver", "neo4j_auth"})


def backend_params(backends: Sequence[str] = tuple(BACKEND_MARKS)) -> list[Any]:
    """One ``pytest.param`` per store backend, carrying that backend's marks.

    Use it to parametrise a test over backends without the :func:`store` fixture, e.g.
    ``@pytest.mark.parametrize("backend", backend_params(["embedded"]))``.
    """
    return [pytest.param(name, marks=BACKEND_MARKS[name], id=name) for name in backends]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``neo4j`` every test that uses the server's fixtures, however it got them."""
    for item in items:
        if NEO4J_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.neo4j)


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a store backend; a test using it runs once per backend."""
    return str(request.param)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each backend: a fresh DuckDB file, and the emptied Neo4j."""
    if backend == "embedded":
        opened: Store = EmbeddedStore(tmp_path / "graphinv.duckdb")
    else:
        opened = Neo4jStore(request.getfixturevalue("neo4j_driver"))
    yield opened
    opened.close()


def _answers(uri: str) -> bool:
    try:
        with neo4j.GraphDatabase.driver(uri, auth=_auth(uri), connection_timeout=2) as driver:
            driver.verify_connectivity()
        return True
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError):
        return False


def _auth(uri: str) -> tuple[str, str] | None:
    user, password = os.environ.get("NEO4J_USER"), os.environ.get("NEO4J_PASSWORD")
    return (user, password) if user and password else local_auth(uri)


@pytest.fixture(scope="session")
def neo4j_uri() -> Iterator[str]:
    """Bolt URI of a running Neo4j; starts (and afterwards stops) the local one if needed."""
    external = os.environ.get("GRAPHINV_TEST_NEO4J_URI")
    if external:
        if not _answers(external):
            pytest.fail(f"GRAPHINV_TEST_NEO4J_URI={external} does not answer")
        yield external
        return
    server = LocalNeo4j.from_env()
    if _answers(server.bolt_uri):
        yield server.bolt_uri
        return
    server.start()
    try:
        yield server.bolt_uri
    finally:
        server.stop()


@pytest.fixture
def neo4j_auth(neo4j_uri: str) -> tuple[str, str] | None:
    """The credentials for ``neo4j_uri`` (user and password, or None for a server without
    auth)."""
    return _auth(neo4j_uri)


@pytest.fixture
def neo4j_driver(neo4j_uri: str) -> Iterator[neo4j.Driver]:
    """A driver on an empty database: every node, constraint and index is dropped first."""
    with neo4j.GraphDatabase.driver(neo4j_uri, auth=_auth(neo4j_uri)) as driver:
        wipe(driver)
        yield driver


def wipe(driver: neo4j.Driver) -> None:
    """Empty the database, schema included, so each test starts from nothing."""
    # CALL … IN TRANSACTIONS needs an auto-commit transaction, hence a plain session.run.
    with driver.session() as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()
    for record in driver.execute_query("SHOW CONSTRAINTS YIELD name").records:
        driver.execute_query("DROP CONSTRAINT $name", name=record["name"])
    for record in driver.execute_query(
        "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
    ).records:
        driver.execute_query("DROP INDEX $name", name=record["name"])
