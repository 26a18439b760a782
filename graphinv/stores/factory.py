"""Which store a command works on: Neo4j when a URI is given, else the embedded DuckDB file.

The one place that names the backends, so nothing above the stores layer has to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from graphinv.errors import ConfigError
from graphinv.stores.base import DEFAULT_LOCK_WAIT, Store


def open_store(
    *,
    neo4j_uri: str | None = None,
    path: Path = Path("graphinv.duckdb"),
    database: str | None = None,
    use_env: bool = True,
    read_only: bool = False,
    uri_from_env: bool = True,
) -> Store:
    """Open the Neo4j store when a URI is given (or ``NEO4J_URI`` is set), else the DuckDB file.

    Credentials come from ``NEO4J_USER`` / ``NEO4J_PASSWORD`` only, never from arguments,
    so they stay off command lines; without them, a URI of graphinv's local server uses
    the password stored in its home (``local_auth``; the server is the one the
    ``GRAPHINV_NEO4J_*`` variables describe, read even when ``use_env`` is False).
    ``NEO4J_DATABASE`` picks the database.
    ``GRAPHINV_NEO4J_COLUMNAR`` names a DuckDB file that every load into Neo4j also fills
    (a columnar copy kept in step): sweeps and cases then compute from it and write their
    results to Neo4j (docs/stores.md).
    ``GRAPHINV_LOCK_WAIT`` (seconds, default 300) is how long a load or sweep waits for
    another one's write lock, and an open of the DuckDB file for a process that has it.

    Parameters
    ----------
    neo4j_uri
        Bolt URI; None falls back to ``NEO4J_URI`` when ``use_env`` and it is set.
    path
        The DuckDB file of the embedded store.
    database
        Neo4j database name (default ``NEO4J_DATABASE`` or the server's default).
    use_env
        Read ``NEO4J_*`` variables; False forces the embedded store when no URI is given.
    uri_from_env
        Let ``NEO4J_URI`` choose Neo4j when ``neo4j_uri`` is None; False when the caller
        chose the store itself (an explicit ``--db`` beats the environment).
    read_only
        Open the DuckDB file read-only (several readers may share it, and it may sit on
        read-only media).

    Raises
    ------
    ConfigError
        ``GRAPHINV_LOCK_WAIT`` is not a number of seconds >= 0.
    LocalNeo4jError
        The local server's password file is unsafe (readable by others, a link).
    Neo4jUnavailable
        No Neo4j answers at the URI.
    StoreError
        The DuckDB file cannot be opened (locked by another writer, not a DuckDB file), or
        is opened read-only and was written by an older graphinv.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = open_store(path=Path(tmp) / "g.duckdb", use_env=False)
    ...     backend = store.backend
    ...     store.close()
    >>> backend
    'embedded'
    """
    env: Mapping[str, str] = os.environ if use_env else {}
    lock_wait = lock_wait_from(env)
    uri = neo4j_uri or (env.get("NEO4J_URI") if uri_from_env else None)
    if uri:
        from graphinv.stores.neo4j.local import local_auth
        from graphinv.stores.neo4j.store import Neo4jStore

        user, password = env.get("NEO4J_USER"), env.get("NEO4J_PASSWORD")
        columnar = columnar_copy(env)
        return Neo4jStore.connect(
            uri,
            auth=(user, password) if user and password else local_auth(uri),
            database=database or env.get("NEO4J_DATABASE"),
            lock_wait=lock_wait,
            columnar=columnar,
        )
    from graphinv.stores.embedded import EmbeddedStore

    return EmbeddedStore(path, read_only=read_only, lock_wait=lock_wait)


def columnar_copy(env: Mapping[str, str]) -> Store | None:
    """The columnar copy of a Neo4j store that ``GRAPHINV_NEO4J_COLUMNAR`` names (an
    embedded store, opened writable), or None when the variable is unset or empty."""
    copy_path = env.get("GRAPHINV_NEO4J_COLUMNAR", "").strip()
    if not copy_path:
        return None
    from graphinv.stores.embedded import EmbeddedStore

    return EmbeddedStore(Path(copy_path), lock_wait=lock_wait_from(env))


def lock_wait_from(env: Mapping[str, str]) -> float:
    """Seconds to wait for another writer: ``GRAPHINV_LOCK_WAIT``, else the default.

    Examples
    --------
    >>> lock_wait_from({"GRAPHINV_LOCK_WAIT": "2.5"}), lock_wait_from({})
    (2.5, 300.0)
    """
    text = env.get("GRAPHINV_LOCK_WAIT")
    if text is None or not text.strip():
        return DEFAULT_LOCK_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"GRAPHINV_LOCK_WAIT = {text!r}: must be a number of seconds >= 0")
    return seconds
