"""The Neo4j store: the platform as a graph investigators explore, over Bolt.

Writes create the constraints first, then send batches of ``batch_size`` rows per managed
write transaction (``execute_write``, which retries transient errors such as deadlocks and
leader switches). Nodes are written before the relationships that join them, and each node
write returns the nodes' element ids, so relationship batches find both ends by id
(``NodeByElementIdSeek``) rather than by a locking unique-index seek per row. Into a graph
without nodes of a label (or relationships of a type) yet, they are CREATEd: the same result
as MERGE for validated, key-unique rows, without looking each one up first; afterwards they
are MERGEd with the merge rule of :mod:`graphinv.stores.base`. Batches whose rows touch
distinct keys (nodes, relationships) go out on ``writers`` sessions at once. Measured rates
and what limits them: ``docs/stores.md``.

Usage is stored compactly: one ``(:Usage {account_id, model})`` node per account and model,
holding parallel arrays ``hours`` (hours since the epoch), ``requests``, ``input_tokens``
and ``output_tokens`` sorted by hour, linked ``(:Account)-[:HAS_USAGE]->(:Usage)``. A node
per hour would multiply the graph's size for data investigators read as a timeline. A
later load merges by hour (newer figures win) inside the same transaction that rewrites
the arrays; loads are expected from one writer at a time.

Labels (ground truth) are kept off the investigated graph: one unlinked
``(:GroundTruth {account_id, ring_id, kind, campaign_id, traits})`` node per labelled
account, read back only by ``read_platform(include_labels=True)`` for evaluation.

Examples
--------
With a running Neo4j server::

    store = Neo4jStore.connect("bolt://127.0.0.1:7687")
    store.load(platform).relationships
    # -> 1250000
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import neo4j
import numpy as np
import pandas as pd
from rich.progress import Progress, TaskID

from graphinv.errors import Neo4jUnavailable, RingNotFound, StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores.base import (
    LoadStats,
    SweepRecord,
    check_unique_keys,
    lineage_frame,
    lineage_read_frame,
    optional,
    params_json,
    progress_bar,
    rings_frame,
    sweep_frames,
    sweeps_frame,
)
from graphinv.stores.neo4j import cypher

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_WRITERS = 2
_MICROS_PER_HOUR = 3_600_000_000
_KIND_OF_TYPE = {rel: kind for kind, (_, rel) in cypher.KIND_GRAPH.items()}
_USAGE_ARRAYS = ("hours", "requests", "input_tokens", "output_tokens")
_DECISION_KEYS = ("ring_id", "at", "by", "status", "assignee", "note", "sweep_id", "size")


class Neo4jStore:
    """A platform and its rings in a Neo4j 5 database.

    Parameters
    ----------
    driver
        An open ``neo4j.Driver``; the store closes it only when it opened it itself
        (:meth:`connect`).
    database
        Database name; None uses the server's default.
    batch_size
        Rows per write transaction (10–50k suits a 2–4 GB heap).
    writers
        Sessions writing relationship batches at once (see ``docs/stores.md``).
    """

    kind = "neo4j"

    def __init__(
        self,
        driver: neo4j.Driver,
        *,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        writers: int = DEFAULT_WRITERS,
        owns_driver: bool = False,
    ) -> None:
        self.driver = driver
        self.database = database
        self.batch_size = batch_size
        self.writers = writers
        self._owns_driver = owns_driver
        self._schema_ready = False

    @classmethod
    def connect(
        cls,
        uri: str,
        *,
        auth: tuple[str, str] | None = None,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        writers: int = DEFAULT_WRITERS,
    ) -> Neo4jStore:
        """Open a driver on ``uri`` and check that the server answers.

        Raises
        ------
        Neo4jUnavailable
            Nothing answers, or the server refuses the credentials.
        """
        try:
            driver = neo4j.GraphDatabase.driver(uri, auth=auth)
            driver.verify_connectivity()
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
            raise Neo4jUnavailable(f"no Neo4j answers at {uri}: {exc}") from exc
        return cls(
            driver, database=database, batch_size=batch_size, writers=writers, owns_driver=True
        )

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[neo4j.Session]:
        try:
            # Schema notifications ("property key does not exist" on an empty graph) are
            # noise for a loader that reads before it writes.
            with self.driver.session(
                database=self.database, notifications_min_severity="OFF"
            ) as session:
                yield session
        except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired) as exc:
            raise Neo4jUnavailable(f"Neo4j went away: {exc}") from exc
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            raise StoreError(f"Neo4j refused the operation: {exc}") from exc

    def _read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self._session() as session:
            return session.execute_read(lambda tx: tx.run(query, params).data())

    def _write(self, query: str, **params: Any) -> neo4j.ResultSummary:
        with self._session() as session:
            return session.execute_write(lambda tx: tx.run(query, params).consume())

    def ensure_schema(self) -> None:
        """Create the uniqueness constraints and indexes (idempotent) and wait for them."""
        if self._schema_ready:
            return
        with self._session() as session:
            for statement in (*cypher.CONSTRAINTS, *cypher.INDEXES):
                session.run(statement).consume()
            session.run(cypher.AWAIT_INDEXES, seconds=300).consume()
        self._schema_ready = True

    def graph_counts(self) -> dict[str, int]:
        """Nodes per label and relationships per type (``:Label`` / ``[TYPE]`` keys)."""
        counts = {f":{r['label']}": r["n"] for r in self._read(cypher.NODE_COUNTS)}
        counts.update({f"[{r['type']}]": r["n"] for r in self._read(cypher.RELATIONSHIP_COUNTS)})
        return counts

    # -- loading -------------------------------------------------------------------------

    def load(self, platform: Platform, *, progress: bool = True) -> LoadStats:
        """MERGE validated frames into the graph; loading the same frames twice changes nothing.

        Order: constraints, accounts, identifier nodes, attribute tables, relationships,
        usage, labels (each kind of node exists before relationships MATCH it). Node writes
        return element ids, so relationship batches find both ends without an index seek.
        ``LoadStats.steps`` times ``nodes``, ``links``, ``usage`` and ``labels``.

        Raises
        ------
        StoreError
            A link names an account that is neither in ``platform`` nor in the graph.
        """
        check_unique_keys(platform)
        started = time.perf_counter()
        self.ensure_schema()
        tables = {name: conform(frame, TABLES[name]) for name, frame in platform.tables().items()}
        links = tables["links"]
        by_kind = {str(kind): group for kind, group in links.groupby("kind", sort=True)}
        steps: dict[str, float] = {}
        with progress_bar(progress) as bar, self._session() as session:
            writer = _BatchWriter(
                session, self._session, bar, batch_size=self.batch_size, writers=self.writers
            )
            with _timed(steps, "nodes"):
                accounts, targets = self._write_nodes(writer, tables, by_kind)
            with _timed(steps, "links"):
                self._write_all_links(writer, by_kind, accounts, targets)
            with _timed(steps, "usage"):
                usage_nodes = self._load_usage(writer, tables["usage"])
            if "labels" in tables:
                with _timed(steps, "labels"):
                    writer.send("labels", cypher.LABELS_SET, tables["labels"])
        return LoadStats(
            rows={name: len(frame) for name, frame in tables.items()},
            relationships=len(links) + usage_nodes,
            seconds=time.perf_counter() - started,
            steps=steps,
        )

    def _write_nodes(
        self,
        writer: _BatchWriter,
        tables: Mapping[str, pd.DataFrame],
        by_kind: Mapping[str, pd.DataFrame],
    ) -> tuple[pd.Series, dict[str, pd.Series]]:
        """Accounts, identifier nodes per kind and attribute tables; element ids by key.

        Returns the element ids of every account the links name (loaded now or before) and
        of each kind's identifier nodes.
        """
        accounts = self._write_accounts(writer, tables["accounts"])
        targets = {
            kind: self._write_identifiers(writer, kind, group["value"])
            for kind, group in by_kind.items()
        }
        for table in cypher.ATTRIBUTE_LABELS:
            if table in tables:
                writer.send(table, cypher.attribute_query(table), tables[table])
        return self._add_link_accounts(writer, accounts, tables["links"]), targets

    def _write_all_links(
        self,
        writer: _BatchWriter,
        by_kind: Mapping[str, pd.DataFrame],
        accounts: pd.Series,
        targets: Mapping[str, pd.Series],
    ) -> None:
        # Decided before any link is written: a type without relationships yet is CREATEd.
        creating = {
            rel: not writer.present(cypher.relationship_exists_query(rel))
            for rel in cypher.LINK_TYPES
        }
        for kind, group in by_kind.items():
            create = creating[cypher.graph_of(kind)[1]]
            self._write_links(writer, kind, group, accounts, targets[kind], create)

    @staticmethod
    def _write_accounts(writer: _BatchWriter, accounts: pd.DataFrame) -> pd.Series:
        """Write accounts (CREATE into a graph without any); element id by account id."""
        create = not writer.present(cypher.label_present_query("Account"))
        return writer.nodes("accounts", cypher.accounts_query(create=create), accounts)

    @staticmethod
    def _write_identifiers(writer: _BatchWriter, kind: str, values: pd.Series) -> pd.Series:
        """Write one kind's identifier nodes; element id by value."""
        label, _ = cypher.graph_of(kind)
        if label == cypher.GENERIC_GRAPH[0]:
            present = writer.present(cypher.IDENTIFIER_KIND_PRESENT, kind=kind)
        else:
            present = writer.present(cypher.label_present_query(label))
        query = cypher.identifier_nodes_query(kind, create=not present)
        frame = pd.DataFrame({"value": values.drop_duplicates()})
        return writer.nodes(f"{kind} nodes", query, frame, flat=True, kind=kind)

    @staticmethod
    def _add_link_accounts(
        writer: _BatchWriter, accounts: pd.Series, links: pd.DataFrame
    ) -> pd.Series:
        """Element ids of accounts that links name but this load does not carry (loaded before).

        Raises
        ------
        StoreError
            Some are not in the graph either.
        """
        named = pd.Index(links["account_id"].unique())
        missing = named.difference(accounts.index)
        if missing.empty:
            return accounts
        frame = pd.DataFrame({"account_id": missing})
        found = writer.nodes("earlier accounts", cypher.ACCOUNT_NODES, frame, flat=True)
        if len(found) < len(missing):
            raise StoreError(
                f"{len(missing) - len(found)} account(s) named in links are neither in the "
                "accounts table nor in the graph"
            )
        return pd.concat([accounts, found])

    @staticmethod
    def _write_links(
        writer: _BatchWriter,
        kind: str,
        links: pd.DataFrame,
        accounts: pd.Series,
        targets: pd.Series,
        create: bool,
    ) -> None:
        frame = pd.DataFrame(
            {
                "account": links["account_id"].map(accounts),
                "target": links["value"].map(targets),
                "first_seen": links["first_seen"],
                "last_seen": links["last_seen"],
                "count": links["count"],
            }
        )
        written = writer.count(f"{kind} links", cypher.link_query(kind, create=create), frame)
        if written != len(frame):
            # Both ends were written or found moments ago: only a concurrent delete loses one.
            raise StoreError(
                f"{len(frame) - written} {kind} link(s) lost an end node during the load; "
                "is another process deleting from the graph?"
            )

    def _load_usage(self, writer: _BatchWriter, usage: pd.DataFrame) -> int:
        """Write usage as per-(account, model) arrays; returns the number of Usage nodes."""
        groups = usage_groups(usage)
        existing = writer.present(cypher.label_present_query("Usage"))
        task = writer.bar.add_task("usage", total=len(usage))
        batch: list[list[Any]] = []
        filled = 0
        for group in groups:
            batch.append(group)
            filled += len(group[2])
            if filled >= self.batch_size:
                writer.session.execute_write(_write_usage, batch, existing)
                writer.bar.advance(task, filled)
                batch, filled = [], 0
        if batch:
            writer.session.execute_write(_write_usage, batch, existing)
            writer.bar.advance(task, filled)
        return len(groups)

    # -- reading -------------------------------------------------------------------------

    def read_platform(self, *, include_labels: bool = False) -> Platform:
        """Every table back from the graph, ordered by key (optional tables None when empty)."""
        accounts = pd.DataFrame(
            self._read(cypher.ACCOUNTS_READ), columns=list(TABLES["accounts"].column_names)
        )
        accounts["created_at"] = _from_micros(accounts["created_at"])
        frames: dict[str, pd.DataFrame | None] = {
            "accounts": accounts,
            "links": self._read_links(),
            "usage": self._read_usage(),
        }
        for table in cypher.ATTRIBUTE_LABELS:
            rows = self._read(cypher.attribute_read_query(table))
            frames[table] = pd.DataFrame(rows, columns=list(TABLES[table].column_names))
        if include_labels:
            rows = self._read(cypher.LABELS_READ)
            frames["labels"] = pd.DataFrame(rows, columns=list(TABLES["labels"].column_names))
        out: dict[str, pd.DataFrame | None] = {}
        for name, frame in frames.items():
            spec = TABLES[name]
            if frame is None or (frame.empty and not spec.required):
                out[name] = None
                continue
            out[name] = conform(frame.sort_values(list(spec.key)), spec)
        return Platform(**out)

    def _read_links(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            self._read(cypher.LINKS_READ),
            columns=["account_id", "rel_type", "kind", "value", "first_seen", "last_seen", "count"],
        )
        core = frame["rel_type"].map(_KIND_OF_TYPE)
        frame["kind"] = core.where(core.notna(), frame["kind"])
        for column in ("first_seen", "last_seen"):
            frame[column] = _from_micros(frame[column])
        return frame.drop(columns="rel_type")

    def _read_usage(self) -> pd.DataFrame:
        rows = self._read(cypher.USAGE_READ)
        return _explode_usage(rows)

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
        """Write a sweep, its campaigns, rings and lineage in one transaction, then members.

        Writing a sweep id again first DETACH DELETEs that sweep's rings and campaigns, which
        also removes the ``CONTINUES`` edges from and into those rings.

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
            A member account is not in the graph (load the platform first), or a lineage
            edge names a ring missing from this sweep or from ``previous_sweep_id`` (then
            nothing of the sweep is written).
        """
        rings, members, campaigns = sweep_frames(rings, members, campaigns)
        edges = lineage_frame(
            lineage, sweep_id=sweep.sweep_id, previous_sweep_id=previous_sweep_id
        )
        self.ensure_schema()
        at = pd.Timestamp(sweep.at)
        at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
        ring_rows = [_ring_row(r) for r in rings.to_dict("records")]
        campaign_rows = [
            {k: optional(v) for k, v in r.items()} for r in campaigns.to_dict("records")
        ]
        edge_rows = [[_native(optional(v)) for v in row] for row in edges.itertuples(index=False)]
        key = {"sweep_id": sweep.sweep_id}

        def head(tx: neo4j.ManagedTransaction) -> None:
            tx.run(cypher.SWEEP_CLEAR_RINGS, key).consume()
            tx.run(cypher.SWEEP_CLEAR_CAMPAIGNS, key).consume()
            tx.run(
                cypher.SWEEP_MERGE,
                {**key, "at": at.isoformat(), "params": params_json(sweep.params)},
            ).consume()
            tx.run(cypher.CAMPAIGNS_CREATE, {**key, "rows": campaign_rows}).consume()
            tx.run(cypher.RINGS_CREATE, {**key, "rows": ring_rows}).consume()
            if not edge_rows:
                return
            linked = tx.run(
                cypher.LINEAGE_CREATE,
                {**key, "previous_sweep_id": previous_sweep_id, "rows": edge_rows},
            ).single(strict=True)["written"]
            if linked != len(edge_rows):
                # Raising inside the transaction function rolls the whole head back.
                raise StoreError(
                    f"sweep {sweep.sweep_id}: {len(edge_rows) - linked} lineage edge(s) name "
                    f"rings that are not in this sweep or in sweep {previous_sweep_id}"
                )

        written = 0
        with self._session() as session:
            session.execute_write(head)
            for batch in _batches(members, self.batch_size):
                record = session.execute_write(
                    _single, cypher.MEMBERS_CREATE, {**key, "rows": batch}
                )
                written += record["written"]
        if written != len(members):
            raise StoreError(
                f"sweep {sweep.sweep_id}: {len(members) - written} member(s) name accounts or "
                "rings that are not in the graph"
            )

    def read_sweeps(self) -> pd.DataFrame:
        return sweeps_frame(self._read(cypher.SWEEPS_READ))

    def read_rings(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        sweep_id = sweep_id or self._latest_sweep()
        return rings_frame(self._read(cypher.RINGS_READ, sweep_id=sweep_id))

    def read_lineage(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        sweep_id = sweep_id or self._latest_sweep()
        return lineage_read_frame(self._read(cypher.LINEAGE_READ, sweep_id=sweep_id))

    def read_ring_members(self, ring_id: str, *, sweep_id: str | None = None) -> pd.DataFrame:
        sweep_id = sweep_id or self._latest_sweep()
        found = self._read(cypher.RING_EXISTS, sweep_id=sweep_id, ring_id=ring_id)
        if not found or found[0]["n"] == 0:
            raise RingNotFound(f"ring {ring_id!r} is not in sweep {sweep_id!r}")
        rows = self._read(cypher.MEMBERS_READ, sweep_id=sweep_id, ring_id=ring_id)
        return pd.DataFrame(rows, columns=["ring_id", "account_id"])

    def read_members(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        sweep_id = sweep_id or self._latest_sweep()
        rows = self._read(cypher.SWEEP_MEMBERS_READ, sweep_id=sweep_id)
        return pd.DataFrame(rows, columns=["ring_id", "account_id"])

    def _latest_sweep(self) -> str | None:
        rows = self._read(cypher.LATEST_SWEEP)
        return rows[0]["sweep_id"] if rows else None

    # -- review decisions (append-only; see graphinv.investigate.review) -------------------

    def append_decision(self, decision: Mapping[str, Any]) -> None:
        """Record one decision event as a ``(:Decision)`` node (missing keys as null)."""
        self.ensure_schema()
        values = {c: _native(optional(decision.get(c))) for c in _DECISION_KEYS}
        values["at"] = pd.Timestamp(values["at"]).isoformat()
        self._write(cypher.DECISION_CREATE, **values)

    def read_decisions(self) -> pd.DataFrame:
        """Every decision event, oldest first."""
        frame = pd.DataFrame(self._read(cypher.DECISIONS_READ), columns=list(_DECISION_KEYS))
        frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
        return frame

    # -- generic -------------------------------------------------------------------------

    def default_quarantine_dir(self) -> Path:
        """``./quarantine``: the server's files are not the investigator's."""
        return Path.cwd() / "quarantine"

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run Cypher with ``$name`` parameters into a frame (one column per returned key)."""
        with self._session() as session:
            result = session.run(text, dict(params or {}))
            keys = result.keys()
            return pd.DataFrame(result.values(), columns=keys)

    def close(self) -> None:
        if self._owns_driver:
            self.driver.close()

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _timed(steps: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    steps[step] = time.perf_counter() - started


# -- transaction functions (module level so execute_write can retry them) ----------------


def _single(tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any]) -> dict[str, Any]:
    return tx.run(query, params).single(strict=True).data()


def _values(tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any]) -> list[list[Any]]:
    return tx.run(query, params).values()




def _write_usage(tx: neo4j.ManagedTransaction, batch: list[list[Any]], existing: bool) -> None:
    if not existing:
        tx.run(cypher.USAGE_CREATE, {"rows": batch}).consume()
        return
    keys = [[row[0], row[1]] for row in batch]
    stored = tx.run(cypher.USAGE_READ_KEYS, {"keys": keys}).data()
    if stored:
        batch = _merge_usage(batch, stored)
    tx.run(cypher.USAGE_WRITE, {"rows": batch}).consume()


class _BatchWriter:
    """Sends frames in batches of write transactions, with a progress bar.

    Parameters
    ----------
    session
        The load's session, for existence checks and statements that must run in order.
    open_session
        Opens another session: batches of statements whose rows touch distinct keys go out
        on ``writers`` sessions at once, so the server works on one batch while the next
        crosses the wire, and uses a second core when it has one.
    """

    def __init__(
        self,
        session: neo4j.Session,
        open_session: Callable[[], AbstractContextManager[neo4j.Session]],
        bar: Progress,
        *,
        batch_size: int,
        writers: int,
    ) -> None:
        self.session = session
        self.open_session = open_session
        self.bar = bar
        self.batch_size = batch_size
        self.writers = writers

    def present(self, query: str, **params: Any) -> bool:
        """Answer a ``… AS present`` existence query."""
        return bool(self.session.execute_read(_single, query, params)["present"])

    def send(self, description: str, query: str, frame: pd.DataFrame, **params: Any) -> None:
        """Write every row, one batch after the other on the load's session."""
        task = self.bar.add_task(description, total=len(frame))
        for batch in _batches(frame, self.batch_size):
            self.session.execute_write(_values, query, {"rows": batch, **params})
            self.bar.advance(task, len(batch))

    def count(self, description: str, query: str, frame: pd.DataFrame, **params: Any) -> int:
        """Write key-distinct rows in parallel; the sum of the query's ``written``."""
        batches = self._parallel(description, query, frame, flat=False, params=params)
        return sum(record[0] for records in batches for record in records)

    def nodes(
        self,
        description: str,
        query: str,
        frame: pd.DataFrame,
        *,
        flat: bool = False,
        **params: Any,
    ) -> pd.Series:
        """Write (or find) distinct nodes in parallel; element ids indexed by key."""
        keys: list[Any] = []
        nodes: list[str] = []
        for records in self._parallel(description, query, frame, flat=flat, params=params):
            for batch_keys, batch_nodes in records:
                keys.extend(batch_keys)
                nodes.extend(batch_nodes)
        return pd.Series(nodes, index=pd.Index(keys, dtype=object), dtype=object)

    def _parallel(
        self,
        description: str,
        query: str,
        frame: pd.DataFrame,
        *,
        flat: bool,
        params: dict[str, Any],
    ) -> Iterator[list[list[Any]]]:
        """Records of each batch, in order, with at most ``writers`` batches in flight.

        Only for statements whose batches touch distinct keys: concurrent batches then
        never write the same node or relationship (a deadlock on a shared end node is a
        transient error the driver retries).
        """
        task = self.bar.add_task(description, total=len(frame))

        def write(batch: list[Any]) -> list[list[Any]]:
            with self.open_session() as session:
                return session.execute_write(_values, query, {"rows": batch, **params})

        with ThreadPoolExecutor(self.writers) as pool:
            pending: deque[tuple[Future[list[list[Any]]], int]] = deque()
            for batch in _batches(frame, self.batch_size, flat=flat):
                if len(pending) == self.writers:
                    yield self._collect(pending, task)
                pending.append((pool.submit(write, batch), len(batch)))
            while pending:
                yield self._collect(pending, task)

    def _collect(
        self, pending: deque[tuple[Future[list[list[Any]]], int]], task: TaskID
    ) -> list[list[Any]]:
        future, size = pending.popleft()
        records = future.result()
        self.bar.advance(task, size)
        return records


# -- frames to rows and back ------------------------------------------------------------


def _batches(frame: pd.DataFrame, size: int, *, flat: bool = False) -> Iterator[list[Any]]:
    """Rows of ``frame`` as lists of Bolt-ready values (timestamps as epoch microseconds).

    ``flat`` yields plain values of a one-column frame instead of one-element lists.
    """
    for start in range(0, len(frame), size):
        chunk = frame.iloc[start : start + size]
        columns = [_bolt_values(chunk[c]) for c in chunk.columns]
        yield columns[0] if flat else [list(row) for row in zip(*columns, strict=True)]


def _bolt_values(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.as_unit("us").astype("int64").where(series.notna())
        series = series.astype("Int64")
    return series.astype(object).where(series.notna(), None).tolist()


def _from_micros(values: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.to_numeric(values), unit="us", utc=True)


def usage_groups(usage: pd.DataFrame) -> list[list[Any]]:
    """One row per (account, model): [account_id, model, hours, requests, in, out]."""
    if usage.empty:
        return []
    usage = usage.sort_values(["account_id", "model", "hour"])
    account = usage["account_id"].to_numpy(dtype=object)
    model = usage["model"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, (account[1:] != account[:-1]) | (model[1:] != model[:-1])])
    hours = usage["hour"].dt.as_unit("us").astype("int64").to_numpy() // _MICROS_PER_HOUR
    arrays = [hours] + [usage[c].to_numpy(dtype="int64") for c in _USAGE_ARRAYS[1:]]
    split = [np.split(a, starts[1:]) for a in arrays]
    return [
        [account[s], model[s], *(part[i].tolist() for part in split)] for i, s in enumerate(starts)
    ]


def _merge_usage(batch: list[list[Any]], stored: list[dict[str, Any]]) -> list[list[Any]]:
    """Combine stored arrays with new ones by hour; the new figures win on the same hour."""
    old = {(r["account_id"], r["model"]): r for r in stored}
    merged = []
    for row in batch:
        previous = old.get((row[0], row[1]))
        if previous is None:
            merged.append(row)
            continue
        by_hour = {
            h: values for h, *values in zip(*(previous[c] for c in _USAGE_ARRAYS), strict=True)
        }
        by_hour.update({h: values for h, *values in zip(*row[2:], strict=True)})
        hours = sorted(by_hour)
        columns = [hours, *([by_hour[h][i] for h in hours] for i in range(3))]
        merged.append([row[0], row[1], *columns])
    return merged


def _explode_usage(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    columns = list(TABLES["usage"].column_names)
    if not rows:
        return pd.DataFrame(columns=columns)
    lengths = np.array([len(r["hours"]) for r in rows])
    frame = pd.DataFrame(
        {
            "account_id": np.repeat([r["account_id"] for r in rows], lengths),
            "hour": pd.to_datetime(
                np.concatenate([r["hours"] for r in rows]).astype("int64") * 3600,
                unit="s",
                utc=True,
            ),
            "model": np.repeat([r["model"] for r in rows], lengths),
            **{c: np.concatenate([r[c] for r in rows]).astype("int64") for c in _USAGE_ARRAYS[1:]},
        }
    )
    return frame[columns]


def _ring_row(ring: Mapping[str, Any]) -> dict[str, Any]:
    features: dict[str, Any] = ring["features"]
    props = {
        "size": optional(ring["size"]),
        "score": optional(ring["score"]),
        "rank": optional(ring["rank"]),
        "campaign_id": optional(ring["campaign_id"]),
        "explanation": optional(ring["explanation"]),
        "features": json.dumps(features, sort_keys=True, default=str),
        "flagged": optional(ring["flagged"]),
        "status": ring["status"],
        "predecessors": ring["predecessors"],
        "lineage_evidence": ring["lineage_evidence"],
        "density": optional(ring["density"]),
    }
    # Only scalar features become properties; lists and maps stay in the JSON text.
    props.update({f"f_{k}": _scalar(v) for k, v in features.items() if _scalar(v) is not None})
    return {"ring_id": ring["ring_id"], "props": {k: _native(v) for k, v in props.items()}}


def _scalar(value: Any) -> Any:
    value = optional(value)
    return value if isinstance(value, bool | int | float | str | np.generic) else None


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
