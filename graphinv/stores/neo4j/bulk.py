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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphinv.errors import StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores.base import LoadTarget, check_unique_keys
from graphinv.stores.neo4j import cypher
from graphinv.stores.neo4j.local import JVM_FLAGS, LocalNeo4j, find_java
from graphinv.stores.neo4j.store import usage_groups

ADMIN_ENTRY_POINT = "org.neo4j.cli.AdminTool"
ARRAY_DELIMITER = ";"
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


def bulk_import(
    platform: Platform,
    *,
    server: LocalNeo4j,
    database: str = "neo4j",
    csv_dir: Path | None = None,
    heap: str = "1g",
    keep_csv: bool = False,
    meta: Mapping[str, str] | None = None,
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
        JVM heap of the importer; it also uses off-heap memory up to 90 % of free RAM.
    keep_csv
        Keep the CSV files after a successful import.
    meta
        Facts about the store to record with it (``(:GraphinvMeta {key, value})`` nodes,
        as :meth:`Neo4jStore.write_meta` writes them).

    Raises
    ------
    StoreError
        The server is running, the database already has store files, or the importer
        failed (the message carries the tail of its output).
    """
    check_unique_keys(platform)
    if server.status().running:
        raise StoreError(f"stop the Neo4j server in {server.home} first: the import is offline")
    target = server.home / "data" / "databases" / database
    if target.exists() and any(target.iterdir()):
        raise StoreError(
            f"{target} already holds a database; the bulk import is for a first load into an "
            "empty database (load over Bolt to add to it)"
        )
    started = time.perf_counter()
    server.write_conf()
    csv_dir = csv_dir or server.home / "import" / "graphinv-bulk"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir(parents=True)
    arguments = write_import_csv(platform, csv_dir, meta=meta)
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
        f"--report-file={csv_dir.resolve() / 'import.report'}",
        *arguments,
    ]
    env = {"NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=home)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise StoreError(f"neo4j-admin import failed (status {done.returncode}):\n{log[-3000:]}")
    if not keep_csv:
        shutil.rmtree(csv_dir, ignore_errors=True)
    return BulkImportStats(
        nodes=_reported(log, "nodes"),
        relationships=_reported(log, "relationships"),
        seconds=time.perf_counter() - started,
        csv_dir=csv_dir,
        log=log,
    )


def write_import_csv(
    platform: Platform, folder: Path, *, meta: Mapping[str, str] | None = None
) -> list[str]:
    """Write the importer's node and relationship CSV files; return its file arguments."""
    tables = {name: conform(frame, TABLES[name]) for name, frame in platform.tables().items()}
    arguments: list[str] = []
    multiline = False

    def write(kind: str, label: str, name: str, frame: pd.DataFrame) -> None:
        nonlocal multiline
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        text_columns = frame.select_dtypes(include=["object", "string"])
        multiline |= bool(
            text_columns.apply(lambda c: c.str.contains("\n", regex=False).any()).any()
        )
        arguments.append(f"--{kind}={label}={path.resolve()}")

    accounts = tables["accounts"]
    if "labels" in tables:
        # Ground truth as unlinked (:GroundTruth) nodes, never on accounts (see cypher.py).
        write(
            "nodes",
            cypher.checked_label("GroundTruth"),
            "ground_truth",
            tables["labels"].rename(columns={"account_id": "account_id:ID(GroundTruth)"}),
        )
    write(
        "nodes",
        cypher.checked_label("Account"),
        "accounts",
        _typed(accounts.rename(columns={"account_id": "id"}), "accounts", "Account"),
    )

    links = tables["links"]
    for kind, group in links.groupby("kind", sort=True):
        label, rel_type = cypher.graph_of(str(kind))
        values = pd.DataFrame({"id": group["value"].drop_duplicates()})
        if label == cypher.GENERIC_GRAPH[0]:
            nodes = values.assign(kind=kind)
            nodes.insert(0, f":ID({label}-{kind})", nodes["id"])
            write("nodes", label, f"identifier_{kind}", nodes)
            end = f":END_ID({label}-{kind})"
        else:
            nodes = _with_attributes(values, tables, label)
            write("nodes", label, f"nodes_{kind}", _typed(nodes, _attribute_table(label), label))
            end = f":END_ID({label})"
        rels = pd.DataFrame(
            {
                ":START_ID(Account)": group["account_id"].to_numpy(),
                end: group["value"].to_numpy(),
                "first_seen:datetime": _iso(group["first_seen"]),
                "last_seen:datetime": _iso(group["last_seen"]),
                "count:long": group["count"].to_numpy(),
            }
        )
        write("relationships", rel_type, f"links_{kind}", rels)
    for table, label in cypher.ATTRIBUTE_LABELS.items():
        # Described identifiers that no link uses still become nodes, as over Bolt.
        if table in tables and label not in {cypher.graph_of(str(k))[0] for k in links["kind"]}:
            frame = tables[table].rename(columns={TABLES[table].column_names[0]: "id"})
            write("nodes", label, f"nodes_{table}", _typed(frame, table, label))

    usage = _usage_arrays(tables["usage"])
    if len(usage):
        write("nodes", cypher.checked_label("Usage"), "usage", usage)
        has_usage = pd.DataFrame(
            {
                ":START_ID(Account)": usage["account_id"],
                ":END_ID(Usage)": usage[":ID(Usage)"],
            }
        )
        write("relationships", cypher.checked_type("HAS_USAGE"), "has_usage", has_usage)
    if meta:
        facts = pd.DataFrame({"key:ID(GraphinvMeta)": list(meta), "value": list(meta.values())})
        write("nodes", cypher.checked_label("GraphinvMeta"), "graphinv_meta", facts)
    if multiline:
        arguments.append("--multiline-fields=true")
    return arguments


def _attribute_table(label: str) -> str:
    return next(t for t, lab in cypher.ATTRIBUTE_LABELS.items() if lab == label)


def _with_attributes(
    values: pd.DataFrame, tables: dict[str, pd.DataFrame], label: str
) -> pd.DataFrame:
    table = _attribute_table(label)
    if table not in tables:
        return values
    attributes = tables[table].rename(columns={TABLES[table].column_names[0]: "id"})
    return values.merge(attributes, on="id", how="outer")


def _typed(frame: pd.DataFrame, table: str, label: str) -> pd.DataFrame:
    """Rename columns to the importer's typed headers; ``id`` becomes the node's ID."""
    types = {c.name: c.type for c in TABLES[table].columns}
    out: dict[str, pd.Series | np.ndarray] = {}
    for column in frame.columns:
        if column == "id":
            out[f"id:ID({label})"] = frame[column]
            continue
        kind = types.get(column, "string")
        values = frame[column]
        if kind == "timestamp":
            out[column + _HEADER_TYPES[kind]] = _iso(values)
        elif kind == "bool":
            out[column + _HEADER_TYPES[kind]] = values.map({True: "true", False: "false"})
        else:
            out[column + _HEADER_TYPES[kind]] = values
    return pd.DataFrame(out)


def _iso(values: pd.Series) -> np.ndarray:
    """ISO 8601 UTC text at microsecond precision (numpy formats far faster than strftime)."""
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    text = np.datetime_as_string(naive, unit="us").astype(object) + "Z"
    return np.where(values.isna().to_numpy(), "", text)


def _usage_arrays(usage: pd.DataFrame) -> pd.DataFrame:
    groups = usage_groups(usage)
    joined = [
        [g[0], g[1], *(ARRAY_DELIMITER.join(map(str, values)) for values in g[2:])] for g in groups
    ]
    frame = pd.DataFrame(
        joined,
        columns=[
            "account_id",
            "model",
            "hours:long[]",
            "requests:long[]",
            "input_tokens:long[]",
            "output_tokens:long[]",
        ],
    )
    frame.insert(0, ":ID(Usage)", np.arange(len(frame)).astype(str))
    return frame


def _reported(log: str, what: str) -> int:
    match = re.search(rf"^\s*(\d+) {what}\s*$", log, flags=re.MULTILINE)
    return int(match.group(1)) if match else 0


class OfflineImport(LoadTarget):
    """The local server's offline importer as a load target: the loader sees just a target.

    ``load`` imports into the stopped, empty database; with ``start`` the server starts
    afterwards and the constraints and indexes are created (the importer cannot make them).
    Later loads go over Bolt to :class:`~graphinv.stores.neo4j.store.Neo4jStore`.
    """

    backend = "neo4j-admin import"

    def __init__(self, server: LocalNeo4j, *, start: bool = True) -> None:
        self.server = server
        self.start = start
        self._meta: dict[str, str] = {}

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
        stats = bulk_import(platform, server=self.server, meta={**self._meta, **finish})
        if self.start:
            from graphinv.stores.neo4j.store import Neo4jStore

            self.server.start()
            with Neo4jStore.connect(self.server.bolt_uri, auth=self.server.auth) as store:
                store.ensure_schema()
        return stats.relationships, {"import": stats.seconds}
