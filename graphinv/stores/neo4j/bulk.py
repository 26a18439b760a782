"""Offline first load of a large platform with ``neo4j-admin database import full``.

Writes the platform as the CSV files the importer reads (typed headers such as
``id:ID(Account)``, ``created_at:datetime``, ``hours:long[]``), then runs the importer from
the same Maven jars as the local server (``org.neo4j.cli.AdminTool`` in
``neo4j-command-line``; it needs ``NEO4J_HOME`` and ``NEO4J_CONF`` set). The database must
be stopped and empty: the importer writes store files directly, many times faster than
transactions, but only for a first load. The graph it builds is the one
:class:`~graphinv.stores.neo4j.Neo4jStore` builds over Bolt; Community Edition's importer
cannot create constraints (``--schema`` is refused for the record format), so
:meth:`Neo4jStore.ensure_schema` creates them on the first connection after start.

This is the first load of a large platform (``graphinv load DIR --bulk``): at a million
accounts it takes minutes where a first load over Bolt takes ten (docs/stores.md). With a
columnar copy (``GRAPHINV_NEO4J_COLUMNAR``) the copy is loaded while the importer runs and
both are marked in step, as a load over Bolt does.

Examples
--------
Into a stopped, empty local server::

    from graphinv.stores.neo4j.local import LocalNeo4j
    server = LocalNeo4j(home=Path("/data/neo4j-bulk"))
    bulk_import(platform, server=server).relationships
    # -> 10250000
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from graphinv.errors import StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores.base import (
    LOAD_KEY,
    LoadRecord,
    LoadTarget,
    Store,
    check_unique_keys,
    sql_identifier,
)
from graphinv.stores.neo4j import cypher
from graphinv.stores.neo4j.local import JVM_FLAGS, LocalNeo4j, find_java
from graphinv.stores.neo4j.store import COLUMNAR_KEY

ADMIN_ENTRY_POINT = "org.neo4j.cli.AdminTool"
ARRAY_DELIMITER = ";"
# The importer's default is 90 % of free RAM, a poor neighbour on a shared machine; 2 GB
# was enough to import a million accounts (8.7M relationships) on the 24 GB test machine.
DEFAULT_MAX_OFF_HEAP = "2g"
_MICROS_PER_HOUR = 3_600_000_000
_HEADER_TYPES = {
    "string": "",
    "timestamp": ":datetime",
    "int": ":long",
    "float": ":double",
    "bool": ":boolean",
}


@dataclass(frozen=True)
class BulkImportStats:
    """What the importer reported, where its CSV files are, and how long it all took."""

    nodes: int
    relationships: int
    seconds: float
    csv_dir: Path
    log: str
    #: Of ``seconds``, the time spent writing the CSV files before the importer started.
    csv_seconds: float = 0.0


def bulk_import(
    platform: Platform,
    *,
    server: LocalNeo4j,
    database: str = "neo4j",
    csv_dir: Path | None = None,
    heap: str = "1g",
    max_off_heap: str = DEFAULT_MAX_OFF_HEAP,
    keep_csv: bool = False,
    meta: Mapping[str, str] | None = None,
    while_importing: Callable[[], None] | None = None,
) -> BulkImportStats:
    """Import a validated platform into a stopped, empty database of a local Neo4j.

    Parameters
    ----------
    platform
        Validated frames (``graphinv.ingest.load.read_dir``); keys must be unique.
    server
        The local server whose ``home`` holds the database; it must not be running.
    database
        Database name (``neo4j`` is the default database of a fresh server).
    csv_dir
        Where the importer's CSV files go (default ``home/import/graphinv-bulk``).
    heap
        JVM heap of the importer.
    max_off_heap
        The importer's off-heap memory cap (``--max-off-heap-memory``: a size such as
        ``2g`` or a share of RAM such as ``50%``); its own default, 90 % of free RAM, is
        too greedy on a machine other jobs share.
    keep_csv
        Keep the CSV files after a successful import.
    meta
        Facts about the store to record with it (``(:GraphinvMeta {key, value})`` nodes,
        as :meth:`Neo4jStore.write_meta` writes them).
    while_importing
        Work to do in this process while the importer runs in its own (the offline
        import loads the columnar copy then); the import is waited for even when it fails.

    Raises
    ------
    StoreError
        The server is running, the database already has store files, or the importer
        failed (the message carries the tail of its output).
    """
    check_unique_keys(platform)
    check_offline_target(server, database)
    started = time.perf_counter()
    server.write_conf()
    csv_dir = csv_dir or server.home / "import" / "graphinv-bulk"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir(parents=True)
    arguments = write_import_csv(platform, csv_dir, meta=meta)
    written = time.perf_counter()
    home = server.home.resolve()
    command = [
        str(find_java()),
        f"-Xmx{heap}",
        *JVM_FLAGS,
        "-cp",
        f"{server.lib.resolve()}/*",
        ADMIN_ENTRY_POINT,
        "database",
        "import",
        "full",
        database,
        "--ignore-empty-strings=true",
        f"--array-delimiter={ARRAY_DELIMITER}",
        f"--max-off-heap-memory={max_off_heap}",
        f"--report-file={csv_dir.resolve() / 'import.report'}",
        *arguments,
    ]
    env = {"NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf"), "PATH": "/usr/bin:/bin"}
    log_path = csv_dir / "import.log"
    with open(log_path, "w+", encoding="utf-8") as log_file:
        importer = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                    cwd=home)
        try:
            if while_importing is not None:
                while_importing()
        finally:
            status = importer.wait()
        log_file.seek(0)
        log = log_file.read()
    # The importer's report (counts, time per stage, memory) outlives the CSV files.
    kept = server.home / "logs" / "neo4j-admin-import.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(log, encoding="utf-8")
    if status != 0:
        raise StoreError(f"neo4j-admin import failed (status {status}; report in {kept}):\n"
                         f"{log[-3000:]}")
    if not keep_csv:
        shutil.rmtree(csv_dir, ignore_errors=True)
    return BulkImportStats(
        nodes=_reported(log, "nodes"),
        relationships=_reported(log, "relationships"),
        seconds=time.perf_counter() - started,
        csv_dir=csv_dir,
        log=log,
        csv_seconds=written - started,
    )


def check_offline_target(server: LocalNeo4j, database: str = "neo4j") -> None:
    """Raise :class:`StoreError` unless ``server`` is stopped and ``database`` is empty.

    Raises
    ------
    StoreError
        The server is running, or the database already has store files.
    """
    if server.status().running:
        raise StoreError(f"stop the Neo4j server in {server.home} first: the import is offline")
    target = server.home / "data" / "databases" / database
    if target.exists() and any(target.iterdir()):
        raise StoreError(
            f"{target} already holds a database; the bulk import is for a first load into an "
            "empty database (load over Bolt to add to it)"
        )


def write_import_csv(
    platform: Platform, folder: Path, *, meta: Mapping[str, str] | None = None
) -> list[str]:
    """Write the importer's node and relationship CSV files; return its file arguments.

    DuckDB writes them straight from the validated frames' columns (Arrow), on all cores:
    formatting tens of millions of values row by row in pandas took longer than the
    import itself at a million accounts.
    """
    import duckdb

    tables = {name: conform(frame, TABLES[name]) for name, frame in platform.tables().items()}
    con = duckdb.connect()
    try:
        for name, frame in tables.items():
            con.register(name, pa.Table.from_pandas(frame, preserve_index=False))
        return _ImportFiles(con, folder).write(tables, meta or {})
    finally:
        con.close()


class _ImportFiles:
    """The importer's CSV files from DuckDB views of the tables, one ``write`` per file."""

    def __init__(self, con: Any, folder: Path) -> None:
        self.con = con
        self.folder = folder
        self.arguments: list[str] = []
        self.multiline = False

    def write(self, tables: dict[str, pd.DataFrame], meta: Mapping[str, str]) -> list[str]:
        # Values with line breaks need the importer's (slower) multi-line parsing.
        self.multiline = any(_has_line_breaks(self.con, name) for name in tables)
        if "labels" in tables:
            # Ground truth as unlinked (:GroundTruth) nodes, never on accounts (see cypher.py).
            others = [sql_identifier(c) for c in TABLES["labels"].column_names[1:]]
            self._file("nodes", cypher.checked_label("GroundTruth"), "ground_truth",
                       f'SELECT account_id AS "account_id:ID(GroundTruth)", {", ".join(others)} '
                       "FROM labels")
        self._file("nodes", cypher.checked_label("Account"), "accounts",
                   f"SELECT {_typed_columns('accounts', 'Account')} FROM accounts")
        kinds = [k for (k,) in self.con.execute("SELECT DISTINCT kind FROM links ORDER BY kind")
                 .fetchall()]
        used_labels = set()
        for kind in kinds:
            label, rel_type = cypher.graph_of(str(kind))
            used_labels.add(label)
            of_kind = {"kind": kind}
            if label == cypher.GENERIC_GRAPH[0]:
                space = f"{label}-{kind}"
                node_id = sql_identifier(f":ID({space})")
                self._file("nodes", label, f"identifier_{kind}",
                           f"SELECT DISTINCT value AS {node_id}, value AS id, "
                           "kind FROM links WHERE kind = $kind", of_kind)
            else:
                space = label
                self._identifier_nodes(kind, label, tables)
            end_id = sql_identifier(f":END_ID({space})")
            self._file(
                "relationships", rel_type, f"links_{kind}",
                f'SELECT account_id AS ":START_ID(Account)", value AS {end_id}'
                f', {_iso("first_seen")} AS "first_seen:datetime", '
                f'{_iso("last_seen")} AS "last_seen:datetime", "count" AS "count:long" '
                "FROM links WHERE kind = $kind", of_kind)
        for table, label in cypher.ATTRIBUTE_LABELS.items():
            # Described identifiers that no link uses still become nodes, as over Bolt.
            if table in tables and label not in used_labels:
                self._file("nodes", label, f"nodes_{table}",
                           f"SELECT {_typed_columns(table, label)} FROM {sql_identifier(table)}")
        self._usage()
        if meta:
            self.con.register("graphinv_meta", pa.table(
                {"key": list(meta), "value": [str(v) for v in meta.values()]}))
            self.multiline |= _has_line_breaks(self.con, "graphinv_meta")
            self._file("nodes", cypher.checked_label("GraphinvMeta"), "graphinv_meta",
                       'SELECT key AS "key:ID(GraphinvMeta)", value FROM graphinv_meta')
        if self.multiline:
            self.arguments.append("--multiline-fields=true")
        return self.arguments

    def _identifier_nodes(self, kind: str, label: str, tables: dict[str, pd.DataFrame]) -> None:
        """Nodes of a typed identifier kind: every value links use, with its attributes."""
        table = _attribute_table(label)
        values = "SELECT DISTINCT value FROM links WHERE kind = $kind"
        if table not in tables:
            query = f"SELECT value AS {sql_identifier(f'id:ID({label})')} FROM ({values})"
        else:
            key = sql_identifier(TABLES[table].column_names[0])
            columns = _typed_columns(table, label, key=f"coalesce(v.value, a.{key})", alias="a.")
            query = (f"SELECT {columns} FROM ({values}) v "
                     f"FULL OUTER JOIN {sql_identifier(table)} a ON v.value = a.{key}")
        self._file("nodes", label, f"nodes_{kind}", query, {"kind": kind})

    def _usage(self) -> None:
        """(:Usage) nodes, one per account and model with its hours and counts as arrays."""
        ((rows,),) = self.con.execute("SELECT count(*) FROM usage").fetchall()
        if not rows:
            return
        arrays = ", ".join(
            f"string_agg(CAST({expression} AS VARCHAR), '{ARRAY_DELIMITER}' ORDER BY hour) "
            f'AS "{name}:long[]"'
            for name, expression in (
                ("hours", f"epoch_us(hour) // {_MICROS_PER_HOUR}"),
                ("requests", "requests"),
                ("input_tokens", "input_tokens"),
                ("output_tokens", "output_tokens"),
            )
        )
        self.con.execute(
            "CREATE TEMP TABLE usage_nodes AS SELECT row_number() OVER () AS uid, * FROM "
            f"(SELECT account_id, model, {arrays} FROM usage GROUP BY account_id, model)"
        )
        self._file("nodes", cypher.checked_label("Usage"), "usage",
                   'SELECT uid AS ":ID(Usage)", * EXCLUDE (uid) FROM usage_nodes')
        self._file("relationships", cypher.checked_type("HAS_USAGE"), "has_usage",
                   'SELECT account_id AS ":START_ID(Account)", uid AS ":END_ID(Usage)" '
                   "FROM usage_nodes")

    def _file(self, what: str, label: str, name: str, query: str,
              params: Mapping[str, Any] | None = None) -> None:
        path = (self.folder / f"{name}.csv").resolve()
        self.con.sql(query, params=dict(params) if params else None).write_csv(
            str(path), header=True)
        self.arguments.append(f"--{what}={label}={path}")


def _has_line_breaks(con: Any, table: str) -> bool:
    """Whether any text value of a registered table holds a line break."""
    schema = con.sql(f"SELECT * FROM {sql_identifier(table)} LIMIT 0")
    text = [c for c, t in zip(schema.columns, schema.types, strict=True) if str(t) == "VARCHAR"]
    if not text:
        return False
    breaks = " OR ".join(f"regexp_matches({sql_identifier(c)}, '[\\r\\n]')" for c in text)
    ((found,),) = con.execute(
        f"SELECT coalesce(bool_or({breaks}), false) FROM {sql_identifier(table)}").fetchall()
    return bool(found)


def _attribute_table(label: str) -> str:
    return next(t for t, lab in cypher.ATTRIBUTE_LABELS.items() if lab == label)


def _typed_columns(table: str, label: str, *, key: str | None = None, alias: str = "") -> str:
    """SELECT list renaming a table's columns to the importer's typed headers; its first
    column (or the expression ``key``) becomes the node's ID."""
    columns = TABLES[table].columns
    node_id = key or alias + sql_identifier(columns[0].name)
    out = [f"{node_id} AS {sql_identifier(f'id:ID({label})')}"]
    for column in columns[1:]:
        value = alias + sql_identifier(column.name)
        if column.type == "timestamp":
            value = _iso(value)
        out.append(f"{value} AS {sql_identifier(column.name + _HEADER_TYPES[column.type])}")
    return ", ".join(out)


def _iso(column: str) -> str:
    """ISO 8601 UTC text at microsecond precision, as the importer's ``datetime`` reads it."""
    return f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%fZ')"




def _reported(log: str, what: str) -> int:
    match = re.search(rf"^\s*(\d+) {what}\s*$", log, flags=re.MULTILINE)
    return int(match.group(1)) if match else 0


class OfflineImport(LoadTarget):
    """The local server's offline importer as a load target: the loader sees just a target.

    ``load`` imports into the stopped, empty database; with ``start`` the server starts
    afterwards and the constraints and indexes are created (the importer cannot make them).
    With ``columnar`` (an empty embedded store) the same frames are loaded into it while
    the importer runs, and one token in both stores' facts marks the copy in step, so
    sweeps and cases read the copy from the first sweep on (docs/stores.md).
    Later loads go over Bolt to :class:`~graphinv.stores.neo4j.store.Neo4jStore`.
    """

    backend = "neo4j-admin import"

    def __init__(
        self,
        server: LocalNeo4j,
        *,
        start: bool = True,
        columnar: Store | None = None,
        max_off_heap: str = DEFAULT_MAX_OFF_HEAP,
    ) -> None:
        if columnar is not None and columnar.backend != "embedded":
            raise ValueError("the columnar copy of a Neo4j store is an embedded store")
        self.server = server
        self.start = start
        self.columnar = columnar
        self.max_off_heap = max_off_heap
        self._meta: dict[str, str] = {}
        # Before the loader reads and validates the folder (a minute at a million
        # accounts), not after: a target that cannot take the import is said at once.
        self._check_copy_empty()
        check_offline_target(server)

    def _check_copy_empty(self) -> None:
        if self.columnar is None:
            return
        found = self.columnar.query("SELECT count(*) AS n FROM accounts")
        if int(found["n"].iloc[0]):
            raise StoreError(
                "the columnar copy already holds accounts: an offline import is a first "
                "load, so its copy must be empty too (delete the file, or unset "
                "GRAPHINV_NEO4J_COLUMNAR to import without a copy)")

    def read_meta(self) -> dict[str, str]:
        """The facts to import (the database is empty before an offline import)."""
        return dict(self._meta)

    def write_meta(self, values: Mapping[str, str]) -> None:
        """Facts to record in the database by the next :meth:`load`'s import."""
        self._meta.update({str(k): str(v) for k, v in values.items()})

    def _load(
        self, platform: Platform, *, progress: bool, finish: Mapping[str, str]
    ) -> tuple[int, dict[str, float]]:
        # The import is all or nothing, so its load record goes in finished with the data.
        facts = {**self._meta, **finish}
        steps: dict[str, float] = {}
        copy = self.columnar
        load_copy = None
        if copy is not None:
            token = uuid.uuid4().hex
            facts[COLUMNAR_KEY] = token
            source = LoadRecord.from_json(finish[LOAD_KEY]).source

            def load_copy() -> None:
                began = time.perf_counter()
                copy.load(platform, progress=False, source=source)
                copy.write_meta({COLUMNAR_KEY: token})
                steps["columnar copy"] = time.perf_counter() - began

        stats = bulk_import(platform, server=self.server, meta=facts,
                            max_off_heap=self.max_off_heap, while_importing=load_copy)
        steps["csv"] = stats.csv_seconds
        steps["import"] = stats.seconds - stats.csv_seconds
        if self.start:
            from graphinv.stores.neo4j.store import Neo4jStore

            began = time.perf_counter()
            self.server.start()
            with Neo4jStore.connect(self.server.bolt_uri, auth=self.server.auth) as store:
                store.ensure_schema()
            steps["start and indexes"] = time.perf_counter() - began
        return stats.relationships, steps
