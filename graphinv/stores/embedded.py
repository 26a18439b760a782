"""The embedded store: one DuckDB file holding the input tables and the sweep results.

Tables mirror ``TABLES`` column for column (no key indexes: DuckDB joins faster than it
maintains ART indexes on millions of rows), plus ``sweeps``, ``rings`` (``features`` as JSON
text, ``predecessors`` as a list), ``ring_members``, ``campaigns`` and ``ring_lineage`` (the
``CONTINUES`` edges: ``sweep_id, previous_sweep_id, ring_id, previous_ring_id, kind, …``),
all keyed by ``sweep_id`` so ring ids recur freely across sweeps. A load into an empty
table is a plain insert; into a filled one, a full outer join on the key that applies
:data:`~graphinv.stores.base.MERGE_RULES` and swaps the table in one transaction.

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

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from graphinv.errors import RingNotFound, StoreError
from graphinv.schema import TABLES, ColumnType, Platform, TableSpec, conform
from graphinv.stores.base import (
    LINEAGE_READ_COLUMNS,
    RING_LINEAGE_COLUMNS,
    LoadStats,
    SweepRecord,
    check_unique_keys,
    lineage_frame,
    lineage_read_frame,
    merge_rule,
    params_json,
    progress_bar,
    rings_frame,
    sweep_frames,
    sweeps_frame,
)

_SQL_TYPES: dict[ColumnType, str] = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
}

# Ring columns added with lineage; files written before them get them by ALTER TABLE.
_RING_LINEAGE_SQL = {
    "flagged": "BOOLEAN",
    "status": "VARCHAR",
    "predecessors": "VARCHAR[]",
    "lineage_evidence": "VARCHAR",
    "density": "DOUBLE",
}
assert tuple(_RING_LINEAGE_SQL) == RING_LINEAGE_COLUMNS

_RESULT_DDL = (
    'CREATE TABLE IF NOT EXISTS sweeps (sweep_id VARCHAR, "at" TIMESTAMPTZ, params VARCHAR)',
    "CREATE TABLE IF NOT EXISTS rings (sweep_id VARCHAR, ring_id VARCHAR, size BIGINT, "
    "score DOUBLE, rank BIGINT, campaign_id VARCHAR, explanation VARCHAR, features VARCHAR)",
    *(
        f"ALTER TABLE rings ADD COLUMN IF NOT EXISTS {name} {sql}"
        for name, sql in _RING_LINEAGE_SQL.items()
    ),
    "CREATE TABLE IF NOT EXISTS ring_members (sweep_id VARCHAR, ring_id VARCHAR, "
    "account_id VARCHAR)",
    "CREATE TABLE IF NOT EXISTS campaigns (sweep_id VARCHAR, campaign_id VARCHAR, "
    "n_rings BIGINT, size BIGINT)",
    "CREATE TABLE IF NOT EXISTS ring_lineage (sweep_id VARCHAR, previous_sweep_id VARCHAR, "
    "ring_id VARCHAR, previous_ring_id VARCHAR, kind VARCHAR, shared_members BIGINT, "
    "member_jaccard DOUBLE, shared_identifiers BIGINT, infra_overlap DOUBLE)",
)
_SWEEP_TABLES = ("sweeps", "rings", "ring_members", "campaigns")

# Investigators' decisions on rings (graphinv.investigate.review): an append-only log, so
# every change keeps who made it and when. Not a sweep table: a new sweep never clears it.
_DECISIONS_DDL = (
    'CREATE TABLE IF NOT EXISTS ring_decisions (ring_id VARCHAR, "at" TIMESTAMPTZ, '
    '"by" VARCHAR, status VARCHAR, assignee VARCHAR, note VARCHAR, sweep_id VARCHAR, '
    "size BIGINT)"
)
DECISION_COLUMNS = ("ring_id", "at", "by", "status", "assignee", "note", "sweep_id", "size")


class EmbeddedStore:
    """A platform and its rings in one DuckDB file.

    Parameters
    ----------
    path
        The database file (created when missing).
    read_only
        Open without write access, so several processes can read one file.
    """

    kind = "embedded"

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the DuckDB file {self.path}: {exc}") from exc
        self._con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            for spec in TABLES.values():
                self._con.execute(_table_ddl(spec))
            for ddl in _RESULT_DDL:
                self._con.execute(ddl)
            self._con.execute(_DECISIONS_DDL)

    # -- input tables --------------------------------------------------------------------

    def load(self, platform: Platform, *, progress: bool = True) -> LoadStats:
        """MERGE the platform's tables into the file; see the merge rule in ``stores.base``.

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
        check_unique_keys(platform)
        started = time.perf_counter()
        rows: dict[str, int] = {}
        tables = platform.tables()
        with progress_bar(progress) as bar:
            task = bar.add_task("embedded load", total=len(tables))
            for name, frame in tables.items():
                spec = TABLES[name]
                rows[name] = self._merge(spec, conform(frame, spec))
                bar.advance(task)
        return LoadStats(
            rows=rows, relationships=rows.get("links", 0), seconds=time.perf_counter() - started
        )

    def _merge(self, spec: TableSpec, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        table = _quote(spec.name)
        columns = ", ".join(_quote(c) for c in spec.column_names)
        self._con.register("incoming", frame)
        try:
            self._con.execute("BEGIN TRANSACTION")
            (stored,) = self._con.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
            if stored == 0:
                self._con.execute(f"INSERT INTO {table} SELECT {columns} FROM incoming")
            else:
                self._con.execute(f"CREATE OR REPLACE TEMP TABLE merged AS {_merge_select(spec)}")
                self._con.execute(f"DELETE FROM {table}")
                self._con.execute(f"INSERT INTO {table} SELECT {columns} FROM merged")
                self._con.execute("DROP TABLE merged")
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            self._con.execute("ROLLBACK")
            raise StoreError(f"DuckDB refused the load of {spec.name}: {exc}") from exc
        finally:
            self._con.unregister("incoming")
        return len(frame)

    def read_platform(self, *, include_labels: bool = False) -> Platform:
        """Every input table, ordered by key, typed as ``TABLES`` says.

        Optional tables without rows come back as None.
        """
        frames: dict[str, pd.DataFrame | None] = {}
        for name, spec in TABLES.items():
            if name == "labels" and not include_labels:
                continue
            order = ", ".join(_quote(c) for c in spec.key)
            frame = self._con.execute(f"SELECT * FROM {_quote(name)} ORDER BY {order}").df()
            frames[name] = None if frame.empty and not spec.required else conform(frame, spec)
        return Platform(**frames)

    # -- results -------------------------------------------------------------------------

    def write_sweep(
        self,
        sweep: SweepRecord,
        *,
        rings: pd.DataFrame,
        members: pd.DataFrame,
        campaigns: pd.DataFrame,
        lineage: pd.DataFrame | None = None,
        previous_sweep_id: str | None = None,
    ) -> None:
        """Record a sweep, its rings and their lineage in one transaction.

        Writing a sweep id again replaces its rows, and drops the lineage edges that point
        into its rings from a later sweep (their rings are gone), as Neo4j's DETACH DELETE
        does.

        Parameters
        ----------
        sweep
            Id, time and parameters of the run.
        rings, members, campaigns
            Result frames (see :func:`~graphinv.stores.base.sweep_frames`).
        lineage
            ``CONTINUES`` edges (:data:`~graphinv.stores.base.LINEAGE_COLUMNS`) from this
            sweep's rings to rings of ``previous_sweep_id``; None writes none.
        previous_sweep_id
            The sweep the lineage edges point into (the latest one before this).

        Raises
        ------
        StoreError
            A member names an account that is not loaded or a ring not in ``rings``, or an
            edge names a ring missing from this sweep or from ``previous_sweep_id``.
        """
        rings, members, campaigns = sweep_frames(rings, members, campaigns)
        edges = lineage_frame(
            lineage, sweep_id=sweep.sweep_id, previous_sweep_id=previous_sweep_id
        )
        rings = rings.assign(
            features=[params_json(f) for f in rings["features"]], sweep_id=sweep.sweep_id
        )
        members = members.assign(sweep_id=sweep.sweep_id)
        campaigns = campaigns.assign(sweep_id=sweep.sweep_id)
        edges = edges.assign(sweep_id=sweep.sweep_id, previous_sweep_id=previous_sweep_id)
        self._check_members(sweep.sweep_id, members, rings)
        self._check_edges(sweep.sweep_id, edges, rings, previous_sweep_id)
        try:
            self._con.execute("BEGIN TRANSACTION")
            self._clear_sweep(sweep.sweep_id)
            self._con.execute(
                "INSERT INTO sweeps VALUES ($id, $at, $params)",
                {"id": sweep.sweep_id, "at": sweep.at, "params": params_json(sweep.params)},
            )
            for table, frame in (
                ("rings", rings),
                ("ring_members", members),
                ("campaigns", campaigns),
                ("ring_lineage", edges),
            ):
                self._insert(table, frame)
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            self._con.execute("ROLLBACK")
            raise StoreError(f"DuckDB refused sweep {sweep.sweep_id}: {exc}") from exc

    def _check_members(self, sweep_id: str, members: pd.DataFrame, rings: pd.DataFrame) -> None:
        self._con.register("incoming", members)
        try:
            (unknown,) = self._con.execute(
                "SELECT count(*) FROM incoming m WHERE m.account_id NOT IN "
                "(SELECT account_id FROM accounts) OR NOT list_contains($rings, m.ring_id)",
                {"rings": rings["ring_id"].tolist()},
            ).fetchall()[0]
        finally:
            self._con.unregister("incoming")
        if unknown:
            raise StoreError(
                f"sweep {sweep_id}: {unknown} member(s) name accounts or rings that are "
                "not in the store"
            )

    def _check_edges(
        self,
        sweep_id: str,
        edges: pd.DataFrame,
        rings: pd.DataFrame,
        previous_sweep_id: str | None,
    ) -> None:
        if edges.empty:
            return
        self._con.register("incoming", edges)
        try:
            (unknown,) = self._con.execute(
                "SELECT count(*) FROM incoming e WHERE NOT list_contains($rings, e.ring_id) "
                "OR e.previous_ring_id NOT IN "
                "(SELECT ring_id FROM rings WHERE sweep_id = $previous)",
                {"rings": rings["ring_id"].tolist(), "previous": previous_sweep_id},
            ).fetchall()[0]
        finally:
            self._con.unregister("incoming")
        if unknown:
            raise StoreError(
                f"sweep {sweep_id}: {unknown} lineage edge(s) name rings that are not in this "
                f"sweep or in sweep {previous_sweep_id}"
            )

    def _clear_sweep(self, sweep_id: str) -> None:
        for table in _SWEEP_TABLES:
            self._con.execute(f"DELETE FROM {table} WHERE sweep_id = $id", {"id": sweep_id})
        self._con.execute(
            "DELETE FROM ring_lineage WHERE sweep_id = $id OR previous_sweep_id = $id",
            {"id": sweep_id},
        )

    def _insert(self, table: str, frame: pd.DataFrame) -> None:
        """Append a frame to a result table, matching columns by name."""
        self._con.register("incoming", frame)
        try:
            columns = [r[0] for r in self._con.execute(f"DESCRIBE {table}").fetchall()]
            listed = ", ".join(_quote(c) for c in columns)
            self._con.execute(f"INSERT INTO {table} SELECT {listed} FROM incoming")
        finally:
            self._con.unregister("incoming")

    def read_sweeps(self) -> pd.DataFrame:
        rows = self._con.execute('SELECT sweep_id, "at", params FROM sweeps').df()
        return sweeps_frame(rows.to_dict("records"))

    def read_rings(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        # SELECT * so a read-only file from before the lineage columns still reads.
        rows = self._con.execute(
            "SELECT * FROM rings WHERE sweep_id = $id", {"id": sweep_id or self._latest_sweep()}
        ).df()
        return rings_frame(rows.to_dict("records"))

    def read_lineage(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        if not self._has_table("ring_lineage"):  # a read-only file from before lineage
            return lineage_read_frame([])
        columns = ", ".join(_quote(c) for c in LINEAGE_READ_COLUMNS)
        rows = self._con.execute(
            f"SELECT {columns} FROM ring_lineage WHERE sweep_id = $id",
            {"id": sweep_id or self._latest_sweep()},
        ).df()
        return lineage_read_frame(rows.to_dict("records"))

    def read_ring_members(self, ring_id: str, *, sweep_id: str | None = None) -> pd.DataFrame:
        sweep_id = sweep_id or self._latest_sweep()
        params = {"id": sweep_id, "ring": ring_id}
        (found,) = self._con.execute(
            "SELECT count(*) FROM rings WHERE sweep_id = $id AND ring_id = $ring", params
        ).fetchall()[0]
        if found == 0:
            raise RingNotFound(f"ring {ring_id!r} is not in sweep {sweep_id!r}")
        return self._con.execute(
            "SELECT ring_id, account_id FROM ring_members "
            "WHERE sweep_id = $id AND ring_id = $ring ORDER BY account_id",
            params,
        ).df()

    def read_members(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        return self._con.execute(
            "SELECT ring_id, account_id FROM ring_members WHERE sweep_id = $id "
            "ORDER BY ring_id, account_id",
            {"id": sweep_id or self._latest_sweep()},
        ).df()

    def _has_table(self, name: str) -> bool:
        found = self._con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name", {"name": name}
        ).fetchall()
        return bool(found[0][0])

    def _latest_sweep(self) -> str | None:
        rows = self._con.execute(
            'SELECT sweep_id FROM sweeps ORDER BY "at" DESC, sweep_id DESC LIMIT 1'
        ).fetchall()
        return rows[0][0] if rows else None

    # -- review decisions (append-only; see graphinv.investigate.review) -------------------

    def append_decision(self, decision: Mapping[str, Any]) -> None:
        """Record one decision event: ``DECISION_COLUMNS`` (missing keys stored as NULL)."""
        values = {c: decision.get(c) for c in DECISION_COLUMNS}
        try:
            self._con.execute(
                "INSERT INTO ring_decisions VALUES ($ring_id, $at, $by, $status, $assignee, "
                "$note, $sweep_id, $size)",
                values,
            )
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB refused the decision on {values['ring_id']}: {exc}") from exc

    def read_decisions(self) -> pd.DataFrame:
        """Every decision event, oldest first (``DECISION_COLUMNS``)."""
        columns = list(DECISION_COLUMNS)
        if not self._has_table("ring_decisions"):  # a read-only file from before decisions
            return pd.DataFrame(columns=columns)
        listed = ", ".join(_quote(c) for c in columns)
        return self._con.execute(
            f'SELECT {listed} FROM ring_decisions ORDER BY "at", rowid'
        ).df()

    # -- generic -------------------------------------------------------------------------

    def default_quarantine_dir(self) -> Path:
        """``quarantine/`` beside the DuckDB file."""
        return self.path.parent / "quarantine"

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run SQL with ``$name`` parameters into a frame.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = EmbeddedStore(Path(tmp) / "g.duckdb")
        ...     out = store.query("SELECT $x AS x", {"x": "it's text"})
        ...     store.close()
        >>> out["x"].item()
        "it's text"
        """
        try:
            return self._con.execute(text, dict(params or {})).df()
        except duckdb.Error as exc:
            raise StoreError(f"DuckDB query failed: {exc}") from exc

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quote(name: str) -> str:
    # Names come from TABLES (code), never from data; quoting keeps `count`, `hour` literal.
    return '"' + name.replace('"', '""') + '"'


def _table_ddl(spec: TableSpec) -> str:
    columns = ", ".join(f"{_quote(c.name)} {_SQL_TYPES[c.type]}" for c in spec.columns)
    return f"CREATE TABLE IF NOT EXISTS {_quote(spec.name)} ({columns})"


def _merge_select(spec: TableSpec) -> str:
    """SELECT combining stored rows (``o``) with incoming rows (``n``) by the merge rule."""
    parts = []
    for name in spec.column_names:
        col = _quote(name)
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
    on = " AND ".join(f"o.{_quote(k)} = n.{_quote(k)}" for k in spec.key)
    return (
        f"SELECT {', '.join(parts)} FROM {_quote(spec.name)} AS o "
        f"FULL OUTER JOIN incoming AS n ON {on}"
    )
