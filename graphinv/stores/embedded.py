"""The embedded store: one DuckDB file holding the input tables and the sweep results.

Tables mirror ``TABLES`` column for column (no key indexes: DuckDB joins faster than it
maintains ART indexes on millions of rows), plus ``sweeps``, ``rings`` (``features`` as JSON
text, ``predecessors`` as a list), ``ring_members``, ``campaigns`` and ``ring_lineage`` (the
``CONTINUES`` edges: ``sweep_id, previous_sweep_id, ring_id, previous_ring_id, status, …``),
all keyed by ``sweep_id`` so ring ids recur freely across sweeps. A load into an empty
table is a plain insert; into a filled one, a full outer join on the key that applies
:data:`~graphinv.stores.base.MERGE_RULES` and swaps the table in one transaction.

Rows are stored in key order, and a load records that it left them so
(``rows_in_key_order`` in ``graphinv_meta``, naming the load): reads then scan the tables
as stored instead of sorting them, which is most of the time a sweep spends reading a
million accounts (DuckDB returns rows in the order they were inserted). A file whose last
load did not record it (an older graphinv wrote it) is read with ``ORDER BY``, and its
next load sorts it.

A file written by an older graphinv is upgraded when opened writable (result columns
added, ``ring_lineage.kind`` renamed ``status``); opened read-only, it is refused with a
message that says so.

Integrity: a load is one transaction (every table, and the finished load record in
``graphinv_meta``), so a crash or a full disk leaves the tables as they were. Writers (loads,
sweeps) take an advisory lock on ``<file>.lock``, which names its holder; DuckDB itself lets
one process open a file writable, or several read-only, so an open that meets another
process's lock waits up to ``lock_wait`` seconds, and a sweep closes the file while it
computes (:meth:`EmbeddedStore.release`) so read-only commands can open it meanwhile.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = EmbeddedStore(Path(tmp) / "g.duckdb")
...     n = int(store.query("SELECT count(*) AS n FROM accounts")["n"].item())
...     store.close()
>>> n
0
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from graphinv.errors import StoreError
from graphinv.schema import TABLES, ColumnType, Platform, TableSpec, conform
from graphinv.stores.base import (
    DEFAULT_LOCK_WAIT,
    LINEAGE_READ_COLUMNS,
    RING_LINEAGE_COLUMNS,
    LoadRecord,
    LockHolder,
    ReadStatements,
    Store,
    SweepRecord,
    merge_rule,
    params_json,
    progress_bar,
    sql_identifier,
)

_SQL_TYPES: dict[ColumnType, str] = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
}

# Arrow types read back as pandas' nullable dtypes, so a column with missing values keeps
# its integers and booleans exact (``conform`` then casts each to its schema dtype).
_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}

# The link kind whose values key each identifier attribute table.
_ATTRIBUTE_KINDS = {"ips": "ip", "payment_methods": "payment_method",
                    "prompt_fingerprints": "prompt_fingerprint"}

# Result tables, column by column; a file missing a column (written before it existed)
# gains it by ALTER TABLE when opened writable.
_RESULT_TABLES: dict[str, dict[str, str]] = {
    "sweeps": {"sweep_id": "VARCHAR", "at": "TIMESTAMPTZ", "params": "VARCHAR"},
    "rings": {
        "sweep_id": "VARCHAR",
        "ring_id": "VARCHAR",
        "size": "BIGINT",
        "score": "DOUBLE",
        "rank": "BIGINT",
        "campaign_id": "VARCHAR",
        "explanation": "VARCHAR",
        "features": "VARCHAR",
        "flagged": "BOOLEAN",
        "status": "VARCHAR",
        "predecessors": "VARCHAR[]",
        "lineage_evidence": "VARCHAR",
        "density": "DOUBLE",
    },
    "ring_members": {"sweep_id": "VARCHAR", "ring_id": "VARCHAR", "account_id": "VARCHAR"},
    "campaigns": {
        "sweep_id": "VARCHAR",
        "campaign_id": "VARCHAR",
        "n_rings": "BIGINT",
        "size": "BIGINT",
    },
    "ring_lineage": {
        "sweep_id": "VARCHAR",
        "previous_sweep_id": "VARCHAR",
        "ring_id": "VARCHAR",
        "previous_ring_id": "VARCHAR",
        "status": "VARCHAR",
        "shared_members": "BIGINT",
        "member_jaccard": "DOUBLE",
        "shared_identifiers": "BIGINT",
        "infra_overlap": "DOUBLE",
    },
    # Each ring's score breakdown (JSON rows of BREAKDOWN_COLUMNS), so a case on one ring
    # reads it instead of re-scoring against the whole platform.
    "ring_breakdowns": {"sweep_id": "VARCHAR", "ring_id": "VARCHAR", "breakdown": "VARCHAR"},
    # Investigators' decisions on rings (graphinv.investigate.review): an append-only log, so
    # every change keeps who made it and when. Not a sweep table: a new sweep never clears it.
    "ring_decisions": {
        "ring_id": "VARCHAR",
        "at": "TIMESTAMPTZ",
        "by": "VARCHAR",
        "status": "VARCHAR",
        "assignee": "VARCHAR",
        "note": "VARCHAR",
        "sweep_id": "VARCHAR",
        "size": "BIGINT",
    },
}
assert tuple(_RESULT_TABLES["rings"])[-len(RING_LINEAGE_COLUMNS) :] == RING_LINEAGE_COLUMNS
assert set(LINEAGE_READ_COLUMNS) == set(_RESULT_TABLES["ring_lineage"])
_SWEEP_TABLES = ("sweeps", "rings", "ring_members", "campaigns", "ring_breakdowns")
# Facts about the store itself (the last load's record, markers), key -> text.
_META_DDL = "CREATE TABLE IF NOT EXISTS graphinv_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
# Meta key naming the load that left every input table's rows in key order.
_KEY_ORDER = "rows_in_key_order"
# DuckDB's message when another process has the file open in a conflicting mode.
_LOCKED = "Could not set lock on file"
_POLL_SECONDS = 0.2

DECISION_COLUMNS = ("ring_id", "at", "by", "status", "assignee", "note", "sweep_id", "size")


class EmbeddedStore(Store):
    """A platform and its rings in one DuckDB file.

    Parameters
    ----------
    path
        The database file (created when missing).
    read_only
        Open without write access, so several processes can read one file (also on
        read-only media).
    lock_wait
        Seconds to wait for another process that has the file open (or holds the write
        lock) before giving up with a message naming it.

    Raises
    ------
    StoreError
        The file cannot be opened (another process kept it past ``lock_wait``, not a
        DuckDB file), or it is opened read-only and was written by an older graphinv.
    """

    backend = "embedded"
    _backend_errors = (duckdb.Error,)
    _partial_loads = False
    _reads = ReadStatements(
        sweeps='SELECT sweep_id, "at", params FROM sweeps',
        latest_sweep='SELECT sweep_id FROM sweeps ORDER BY "at" DESC, sweep_id DESC LIMIT 1',
        rings="SELECT * FROM rings WHERE sweep_id = $sweep_id",
        lineage=f"SELECT {', '.join(LINEAGE_READ_COLUMNS)} FROM ring_lineage "
        "WHERE sweep_id = $sweep_id",
        ring_exists="SELECT count(*) AS n FROM rings "
        "WHERE sweep_id = $sweep_id AND ring_id = $ring_id",
        ring_members="SELECT ring_id, account_id FROM ring_members "
        "WHERE sweep_id = $sweep_id AND ring_id = $ring_id ORDER BY account_id",
        members="SELECT ring_id, account_id FROM ring_members WHERE sweep_id = $sweep_id "
        "ORDER BY ring_id, account_id",
        rings_members="SELECT ring_id, account_id FROM ring_members WHERE sweep_id = $sweep_id "
        "AND list_contains($ring_ids, ring_id) ORDER BY ring_id, account_id",
        breakdown="SELECT breakdown FROM ring_breakdowns "
        "WHERE sweep_id = $sweep_id AND ring_id = $ring_id",
    )

    def __init__(
        self, path: Path, *, read_only: bool = False, lock_wait: float = DEFAULT_LOCK_WAIT
    ) -> None:
        if lock_wait < 0:
            raise ValueError(f"lock_wait must be >= 0 seconds, not {lock_wait}")
        self.path = Path(path)
        self.read_only = read_only
        self.lock_wait = lock_wait
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None
        self._open: duckdb.DuckDBPyConnection | None = None
        created = not self.path.exists()
        stored: dict[str, set[str]] = {}
        for table, column in self._sql(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall():
            stored.setdefault(table, set()).add(column)
        if created and self.path.exists():
            # The file holds every identifier loaded: readable by its owner only.
            self.path.chmod(0o600)
        if read_only:
            if "ring_breakdowns" not in stored:
                # Written before breakdowns were stored: its cases re-score, as they did.
                # (This one file's statements differ from the class's, hence the instance.)
                self._reads = dataclasses.replace(  # type: ignore[misc]
                    self._reads, breakdown="SELECT NULL AS breakdown "
                    "WHERE $sweep_id IS NULL AND $ring_id IS NULL AND false")
                stored = {**stored, "ring_breakdowns": set(_RESULT_TABLES["ring_breakdowns"])}
            self._check_current(stored)
            return
        self._sql(_META_DDL)
        lineage = stored.get("ring_lineage", set())
        if "kind" in lineage and "status" not in lineage:
            # Before lineage statuses had their own name, the edge column holding one was kind.
            self._sql("ALTER TABLE ring_lineage RENAME COLUMN kind TO status")
            stored["ring_lineage"] = lineage - {"kind"} | {"status"}
        for spec in TABLES.values():
            self._sql(_table_ddl(spec))
        for table, columns in _RESULT_TABLES.items():
            listed = ", ".join(f"{sql_identifier(c)} {sql}" for c, sql in columns.items())
            self._sql(f"CREATE TABLE IF NOT EXISTS {table} ({listed})")
            for column in columns.keys() - stored.get(table, set(columns)):
                added = f"{sql_identifier(column)} {columns[column]}"
                self._sql(f"ALTER TABLE {table} ADD COLUMN {added}")

    def _check_current(self, stored: Mapping[str, set[str]]) -> None:
        """Refuse a read-only file whose result tables predate this version's columns."""
        missing = [
            f"{table}.{column}"
            for table, columns in _RESULT_TABLES.items()
            for column in columns
            if column not in stored.get(table, ())
        ]
        if missing:
            self.close()
            raise StoreError(
                f"{self.path} was written by an older graphinv (it lacks {', '.join(missing)}); "
                "open it once without read-only (any load or sweep does) to upgrade it"
            )

    # -- the connection --------------------------------------------------------------------

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        """The open connection; (re)opened on first use, waiting for other processes."""
        if self._open is None:
            self._open = self._connect()
        return self._open

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
            except duckdb.Error as exc:
                if _LOCKED not in str(exc):
                    raise StoreError(f"cannot open the DuckDB file {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"cannot open {self.path}: another process has it open "
                        f"({self._holder_text(exc)}); waited {self.lock_wait:g} s "
                        "(GRAPHINV_LOCK_WAIT sets how long)"
                    ) from exc
                time.sleep(_POLL_SECONDS)
                continue
            con.execute("SET TimeZone = 'UTC'")
            # DuckDB draws a progress bar on long reads; a command's output is its own.
            # In a notebook without ipywidgets DuckDB refuses to touch the setting at all,
            # and draws no bar there either, so the refusal is harmless.
            with contextlib.suppress(duckdb.InvalidInputException):
                con.execute("SET enable_progress_bar = false")
            return con

    def release(self) -> None:
        """Close the file until the next call, so other processes can open it meanwhile."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def _holder_text(self, exc: Exception | None = None) -> str:
        """Who holds the write lock, from the lock file; else DuckDB's words (pid, program)."""
        holder = self._read_holder()
        if holder is not None:
            return holder.describe()
        return str(exc).split("\n")[0] if exc is not None else "holder unknown"

    # -- the write lock ------------------------------------------------------------------

    def _read_holder(self) -> LockHolder | None:
        try:
            text = self.lock_path.read_text()
        except OSError:
            return None
        try:
            return LockHolder.from_dict(json.loads(text)) if text.strip() else None
        except (ValueError, TypeError):
            return None

    def _acquire_lock(self, holder: LockHolder, *, wait: float) -> None:
        """An advisory lock on ``<file>.lock``: the kernel drops it when its holder exits, so
        a crashed writer never leaves a stale lock; the file's text names the holder."""
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only: no load or sweep can write to it")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.lock_path}: {exc}") from exc
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Waiting with the file open would keep the holder from reopening it.
                self.release()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(
                        f"{self.path} is locked by {self._holder_text()}; waited {wait:g} s "
                        "(GRAPHINV_LOCK_WAIT sets how long)"
                    ) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder.to_dict()).encode(), 0)
        self._lock_fd = fd

    def _release_lock(self, holder: LockHolder) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def _break_lock(self) -> LockHolder | None:
        # The kernel releases a dead holder's lock; a live holder's cannot be broken.
        return None

    # -- facts -----------------------------------------------------------------------------

    def _read_meta(self) -> Mapping[str, str]:
        present = self._frame(
            "SELECT count(*) AS n FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = 'graphinv_meta'"
        )
        if int(present["n"].iloc[0]) == 0:  # a read-only file written before the table
            return {}
        rows = self._sql("SELECT key, value FROM graphinv_meta").fetchall()
        return {str(key): str(value) for key, value in rows}

    def _write_meta(self, values: Mapping[str, str]) -> None:
        with self._transaction():
            self._put_meta(values)

    def _put_meta(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._sql(
                "INSERT OR REPLACE INTO graphinv_meta VALUES ($key, $value)",
                {"key": key, "value": value},
            )

    # -- statements ----------------------------------------------------------------------

    def _sql(self, statement: str, params: Mapping[str, Any] | None = None) -> Any:
        with self._failing(statement):
            return self._con.execute(statement, dict(params or {}))

    def _fetch(self, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
        return self._con.execute(statement, dict(params)).df()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction; on failure the real cause is raised, never the rollback's error.

        DuckDB ends a transaction itself when a COMMIT fails (a full disk, a read-only
        folder), so a ROLLBACK after it would fail with "no transaction is active" and hide
        the cause; COMMIT is therefore outside the rollback, and a rollback that fails
        (nothing left to roll back) is noted on the cause instead of replacing it.
        """
        self._sql("BEGIN TRANSACTION")
        try:
            yield
        except BaseException as exc:
            try:
                self._con.execute("ROLLBACK")
            except duckdb.Error as rollback:
                exc.add_note(f"(rollback: {rollback})")
            raise
        self._sql("COMMIT")

    @contextmanager
    def _incoming(self, frame: pd.DataFrame | pa.Table) -> Iterator[None]:
        """``frame`` visible to SQL as the view ``incoming``."""
        self._con.register("incoming", frame)
        try:
            yield
        finally:
            self._con.unregister("incoming")

    # -- input tables --------------------------------------------------------------------

    def _load(
        self, platform: Platform, *, progress: bool, finish: Mapping[str, str]
    ) -> tuple[int, dict[str, float]]:
        """MERGE every table into the file, and record ``finish``, in one transaction (see
        the merge rule in ``stores.base``): a crash or a full disk leaves no table changed.

        Examples
        --------
        >>> import tempfile
        >>> accounts = pd.DataFrame({"account_id": ["a1"],
        ...     "created_at": pd.to_datetime(["2024-01-01"], utc=True)})
        >>> links = pd.DataFrame({"account_id": ["a1"], "kind": ["ip"], "value": ["10.0.0.1"],
        ...     "first_seen": accounts["created_at"], "last_seen": accounts["created_at"],
        ...     "count": [3]})
        >>> usage = pd.DataFrame(columns=list(TABLES["usage"].column_names))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = EmbeddedStore(Path(tmp) / "g.duckdb")
        ...     stats = store.load(Platform(accounts, links, usage), progress=False)
        ...     stats = store.load(Platform(accounts, links, usage), progress=False)
        ...     n = len(store.read_platform().links)
        ...     store.close()
        >>> dict(stats.rows), stats.relationships, n
        ({'accounts': 1, 'links': 1, 'usage': 0}, 1, 1)
        """
        tables = platform.tables()
        sorted_before = self._rows_in_key_order()
        record = LoadRecord.from_meta(finish)
        with progress_bar(progress) as bar, self._transaction():
            task = bar.add_task("embedded load", total=len(tables))
            for name, frame in tables.items():
                self._merge(TABLES[name], conform(frame, TABLES[name]))
                bar.advance(task)
            if not sorted_before:
                # An older graphinv stored rows in any order: tables this load leaves
                # alone are rewritten in key order too.
                for name in TABLES.keys() - {n for n, f in tables.items() if not f.empty}:
                    self._replace_rows(TABLES[name], f"SELECT * FROM {sql_identifier(name)}")
            order = {_KEY_ORDER: record.load_id} if record is not None else {}
            self._put_meta({**finish, **order})
        return len(platform.links), {}

    def _rows_in_key_order(self) -> bool:
        """Whether the last load stored every input table's rows in key order."""
        meta = self._read_meta()
        record = LoadRecord.from_meta(meta)
        return record is not None and meta.get(_KEY_ORDER) == record.load_id

    def _replace_rows(self, spec: TableSpec, select: str) -> None:
        """Replace one table's rows by those of ``select`` (which may read the table),
        inserted in key order; runs inside the load's transaction."""
        table = sql_identifier(spec.name)
        columns = ", ".join(sql_identifier(c) for c in spec.column_names)
        self._sql(f"CREATE OR REPLACE TEMP TABLE merged AS {select}")
        self._sql(f"DELETE FROM {table}")
        self._sql(f"INSERT INTO {table} SELECT {columns} FROM merged ORDER BY {_key_order(spec)}")
        self._sql("DROP TABLE merged")

    def _merge(self, spec: TableSpec, frame: pd.DataFrame) -> None:
        """MERGE one table; runs inside the load's transaction."""
        if frame.empty:
            return
        table = sql_identifier(spec.name)
        columns = ", ".join(sql_identifier(c) for c in spec.column_names)
        # As an Arrow table: DuckDB scans Arrow columns faster than pandas ones (the strings
        # are already Arrow's), a quarter less CPU on a million accounts' links.
        # In key order: reads then need no sort (see the module's docstring).
        with self._incoming(pa.Table.from_pandas(frame, preserve_index=False)):
            (stored,) = self._sql(f"SELECT count(*) FROM {table}").fetchall()[0]
            if stored == 0:
                self._sql(f"INSERT INTO {table} SELECT {columns} FROM incoming "
                          f"ORDER BY {_key_order(spec)}")
                return
            self._replace_rows(spec, _merge_select(spec))

    def _read_table(self, name: str) -> pd.DataFrame:
        statement = f"SELECT * FROM {sql_identifier(name)}"
        if not self._rows_in_key_order():
            statement += f" ORDER BY {_key_order(TABLES[name])}"
        # Through Arrow: DuckDB's own pandas conversion builds a Python object per string,
        # which costs more than the query itself on millions of links.
        with self._failing(statement):
            table = self._con.sql(statement).to_arrow_table()
        return _to_pandas(table)

    def _read_near(self, name: str, account_ids: list[str]) -> pd.DataFrame:
        spec = TABLES[name]
        order = _key_order(spec)
        if name in ("accounts", "usage"):
            where = "account_id IN (SELECT account_id FROM near)"
        elif name == "links":
            where = ("(kind, value) IN (SELECT DISTINCT kind, value FROM links "
                     "WHERE account_id IN (SELECT account_id FROM near))")
        else:
            key = sql_identifier(spec.key[0])
            # The attribute table's kind only: a value names an identifier within its kind.
            where = (f"{key} IN (SELECT value FROM links WHERE kind = $kind "
                     "AND account_id IN (SELECT account_id FROM near))")
        statement = f"SELECT * FROM {sql_identifier(name)} WHERE {where} ORDER BY {order}"
        near = pd.DataFrame({"account_id": pd.Series(account_ids, dtype="str")})
        self._con.register("near", near)
        try:
            with self._failing(statement):
                kind = {"kind": _ATTRIBUTE_KINDS[name]} if name in _ATTRIBUTE_KINDS else None
                table = self._con.sql(statement, params=kind).to_arrow_table()
        finally:
            self._con.unregister("near")
        return _to_pandas(table)

    # -- results -------------------------------------------------------------------------

    def _write_sweep(
        self,
        sweep: SweepRecord,
        *,
        rings: pd.DataFrame,
        members: pd.DataFrame,
        campaigns: pd.DataFrame,
        edges: pd.DataFrame,
        previous_sweep_id: str | None,
    ) -> None:
        """Check members and edges, then replace the sweep's rows in one transaction.

        Rewriting a sweep also drops the lineage edges that point into its rings from a
        later sweep (their rings are gone), as Neo4j's DETACH DELETE does.
        """
        key = {"sweep_id": sweep.sweep_id}
        ring_ids = {"rings": rings["ring_id"].tolist()}
        unknown = self._count(
            members,
            "i.account_id NOT IN (SELECT account_id FROM accounts) "
            "OR NOT list_contains($rings, i.ring_id)",
            ring_ids,
        )
        if unknown:
            raise StoreError(
                f"sweep {sweep.sweep_id}: {unknown} member(s) name accounts or rings that are "
                "not in the store"
            )
        unknown = self._count(
            edges,
            "NOT list_contains($rings, i.ring_id) OR i.previous_ring_id NOT IN "
            "(SELECT ring_id FROM rings WHERE sweep_id = $previous)",
            {**ring_ids, "previous": previous_sweep_id},
        )
        if unknown:
            raise StoreError(
                f"sweep {sweep.sweep_id}: {unknown} lineage edge(s) name rings that are not in "
                f"this sweep or in sweep {previous_sweep_id}"
            )
        rows = {
            "rings": rings.assign(features=[params_json(f) for f in rings["features"]], **key),
            "ring_members": members.assign(**key),
            "campaigns": campaigns.assign(**key),
            "ring_lineage": edges.assign(**key, previous_sweep_id=previous_sweep_id),
        }
        with self._transaction():
            for table in _SWEEP_TABLES:
                self._sql(f"DELETE FROM {table} WHERE sweep_id = $sweep_id", key)
            self._sql(
                "DELETE FROM ring_lineage WHERE sweep_id = $sweep_id "
                "OR previous_sweep_id = $sweep_id",
                key,
            )
            self._sql(
                "INSERT INTO sweeps VALUES ($sweep_id, $at, $params)",
                {**key, "at": sweep.at, "params": params_json(sweep.params)},
            )
            for table, frame in rows.items():
                listed = ", ".join(sql_identifier(c) for c in _RESULT_TABLES[table])
                with self._incoming(frame):
                    # Named target columns: an upgraded file may hold them in another order.
                    self._sql(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM incoming")

    def _write_breakdown(self, sweep_id: str, rows: list[tuple[str, str]]) -> int:
        frame = pd.DataFrame(rows, columns=["ring_id", "breakdown"]).assign(sweep_id=sweep_id)
        key = {"sweep_id": sweep_id}
        unknown = self._count(
            frame, "i.ring_id NOT IN (SELECT ring_id FROM rings WHERE sweep_id = $sweep_id)", key
        )
        if unknown:
            return len(rows) - unknown
        with self._transaction(), self._incoming(frame):
            self._sql("DELETE FROM ring_breakdowns WHERE sweep_id = $sweep_id", key)
            self._sql(
                "INSERT INTO ring_breakdowns (sweep_id, ring_id, breakdown) "
                "SELECT sweep_id, ring_id, breakdown FROM incoming"
            )
        return len(rows)

    def _count(self, frame: pd.DataFrame, condition: str, params: Mapping[str, Any]) -> int:
        """Rows of ``frame`` (as ``i``) that meet ``condition``."""
        if frame.empty:
            return 0
        with self._incoming(frame):
            found = self._sql(f"SELECT count(*) FROM incoming i WHERE {condition}", params)
            return int(found.fetchall()[0][0])

    # -- review decisions (append-only; see graphinv.investigate.review) -------------------

    def append_decision(self, decision: Mapping[str, Any]) -> None:
        """Record one decision event: ``DECISION_COLUMNS`` (missing keys stored as NULL)."""
        values = {c: decision.get(c) for c in DECISION_COLUMNS}
        self._sql(
            "INSERT INTO ring_decisions VALUES ($ring_id, $at, $by, $status, $assignee, "
            "$note, $sweep_id, $size)",
            values,
        )

    def read_decisions(self) -> pd.DataFrame:
        """Every decision event, oldest first (``DECISION_COLUMNS``)."""
        columns = list(DECISION_COLUMNS)
        listed = ", ".join(sql_identifier(c) for c in columns)
        return self._fetch(f'SELECT {listed} FROM ring_decisions ORDER BY "at", rowid', {})

    # -- generic -------------------------------------------------------------------------

    def default_quarantine_dir(self) -> Path:
        """``quarantine/`` beside the DuckDB file."""
        return self.path.parent / "quarantine"

    def close(self) -> None:
        self.release()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """A frame from an Arrow table, freeing each column's Arrow buffers as it converts (a
    million-account links table would otherwise sit in memory twice)."""
    return table.to_pandas(types_mapper=_NULLABLE.get, self_destruct=True, split_blocks=True)




def _key_order(spec: TableSpec) -> str:
    """``ORDER BY`` list of a table's key."""
    return ", ".join(sql_identifier(c) for c in spec.key)


def _table_ddl(spec: TableSpec) -> str:
    columns = ", ".join(f"{sql_identifier(c.name)} {_SQL_TYPES[c.type]}" for c in spec.columns)
    return f"CREATE TABLE IF NOT EXISTS {sql_identifier(spec.name)} ({columns})"


def _merge_select(spec: TableSpec) -> str:
    """SELECT combining stored rows (``o``) with incoming rows (``n``) by the merge rule."""
    parts = []
    for name in spec.column_names:
        col = sql_identifier(name)
        if name in spec.key:
            parts.append(f"coalesce(n.{col}, o.{col}) AS {col}")
            continue
        rule = merge_rule(spec.name, name)
        # least/greatest skip NULLs in DuckDB, so a missing side keeps the other value.
        function = {"min": "least", "max": "greatest"}.get(rule)
        if function:
            parts.append(f"{function}(o.{col}, n.{col}) AS {col}")
        else:
            parts.append(f"coalesce(n.{col}, o.{col}) AS {col}")
    on = " AND ".join(f"o.{sql_identifier(k)} = n.{sql_identifier(k)}" for k in spec.key)
    return (
        f"SELECT {', '.join(parts)} FROM {sql_identifier(spec.name)} AS o "
        f"FULL OUTER JOIN incoming AS n ON {on}"
    )
