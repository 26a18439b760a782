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
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import neo4j
import numpy as np
import pandas as pd
from rich.progress import Progress, TaskID

from graphinv.errors import Neo4jUnavailable, StoreError
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores.base import (
    DEFAULT_LOCK_WAIT,
    LOAD_KEY,
    LoadRecord,
    LockHolder,
    ReadStatements,
    Store,
    SweepRecord,
    optional,
    params_json,
    progress_bar,
)
from graphinv.stores.neo4j import cypher

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_WRITERS = 2
_MICROS_PER_HOUR = 3_600_000_000
_KIND_OF_TYPE = {rel: kind for kind, (_, rel) in cypher.KIND_GRAPH.items()}
_USAGE_ARRAYS = ("hours", "requests", "input_tokens", "output_tokens")
_DECISION_KEYS = ("ring_id", "at", "by", "status", "assignee", "note", "sweep_id", "size")
_LOCK_NAME = "write"
# The token a load writes into the graph and its columnar copy once both hold its rows.
COLUMNAR_KEY = "columnar_copy"
_POLL_SECONDS = 0.5
log = logging.getLogger(__name__)


class Neo4jStore(Store):
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
    lock_wait
        Seconds a load or sweep waits for another's write lock before giving up.

    Integrity: a load of millions of rows cannot be one transaction, so the load record
    (``(:GraphinvMeta {key: "load"})``) says whether the last load finished, and sweeps
    refuse a graph whose last load did not. Loads and sweeps hold the write lock, a
    ``(:GraphinvLock {name: "write"})`` node made unique by a constraint; a lock left by a
    dead process on this host is taken over, one from another host is removed with
    ``graphinv unlock``.
    """

    backend = "neo4j"
    _partial_loads = True
    # The errors the driver does not retry. Transient ones (deadlocks, leader switches) pass
    # through transaction functions untouched so execute_read/execute_write can retry them.
    _backend_errors = (neo4j.exceptions.ClientError, neo4j.exceptions.DatabaseError)
    _reads = ReadStatements(
        sweeps=cypher.SWEEPS_READ,
        latest_sweep=cypher.LATEST_SWEEP,
        rings=cypher.RINGS_READ,
        lineage=cypher.LINEAGE_READ,
        ring_exists=cypher.RING_EXISTS,
        ring_members=cypher.MEMBERS_READ,
        members=cypher.SWEEP_MEMBERS_READ,
        rings_members=cypher.RINGS_MEMBERS_READ,
        breakdown=cypher.BREAKDOWN_READ,
    )

    def __init__(
        self,
        driver: neo4j.Driver,
        *,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        writers: int = DEFAULT_WRITERS,
        owns_driver: bool = False,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        columnar: Store | None = None,
    ) -> None:
        if lock_wait < 0:
            raise ValueError(f"lock_wait must be >= 0 seconds, not {lock_wait}")
        if columnar is not None and columnar.backend == self.backend:
            raise ValueError("the columnar copy of a Neo4j store is an embedded store")
        self.columnar = columnar
        self.driver = driver
        self.database = database
        self.batch_size = batch_size
        self.writers = writers
        self.lock_wait = lock_wait
        self._owns_driver = owns_driver
        self._schema_ready = False
        # Whether the copy is in step, decided once per read_platform / read_neighbourhood.
        self._reading_copy: bool | None = None

    @classmethod
    def connect(
        cls,
        uri: str,
        *,
        auth: tuple[str, str] | None = None,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        writers: int = DEFAULT_WRITERS,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        columnar: Store | None = None,
    ) -> Neo4jStore:
        """Open a driver on ``uri`` and check that the server answers.

        ``columnar``: an embedded store kept in step with the graph at every load, which
        sweeps and cases then read instead of the graph (see the class docstring).

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
            driver,
            database=database,
            batch_size=batch_size,
            writers=writers,
            owns_driver=True,
            lock_wait=lock_wait,
            columnar=columnar,
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
            # Statements run inside _failing; what arrives here is a transient error the
            # driver gave up retrying, or a driver fault outside any one statement.
            raise StoreError(f"Neo4j failed the operation: {exc}") from exc

    def _fetch(self, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
        # _failing inside the session, so the session's catch-all never hides the statement.
        with self._session() as session, self._failing(statement):
            keys, values = session.execute_read(_keys_and_values, statement, dict(params))
        return pd.DataFrame(values, columns=keys)

    def _run(
        self, tx: neo4j.ManagedTransaction, statement: str, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """One statement of a transaction function, its records as dicts."""
        with self._failing(statement):
            return tx.run(statement, dict(params)).data()

    def ensure_schema(self) -> None:
        """Create the uniqueness constraints and indexes (idempotent) and wait for them.

        Also renames the ``kind`` of ``CONTINUES`` edges written by older versions to
        ``status``.
        """
        if self._schema_ready:
            return
        with self._session() as session:
            for statement in (*cypher.CONSTRAINTS, *cypher.INDEXES):
                with self._failing(statement):
                    session.run(statement).consume()
            with self._failing(cypher.AWAIT_INDEXES):
                session.run(cypher.AWAIT_INDEXES, seconds=300).consume()
            with self._failing(cypher.LINEAGE_STATUS_UPGRADE):
                session.run(cypher.LINEAGE_STATUS_UPGRADE).consume()
        self._schema_ready = True

    def graph_counts(self) -> dict[str, int]:
        """Nodes per label and relationships per type (``:Label`` / ``[TYPE]`` keys), without
        graphinv's bookkeeping nodes (facts, lock)."""
        nodes = self._frame(cypher.NODE_COUNTS, internal=list(cypher.INTERNAL_LABELS))
        relationships = self._frame(cypher.RELATIONSHIP_COUNTS)
        counts = dict(zip(":" + nodes["label"], nodes["n"].tolist(), strict=True))
        types = "[" + relationships["type"] + "]"
        counts.update(zip(types, relationships["n"].tolist(), strict=True))
        return counts

    def run_cypher(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a Cypher read query (a saved query, say) into a frame, one column per key."""
        return self._frame(query, params)

    def close(self) -> None:
        if self.columnar is not None:
            self.columnar.close()
        if self._owns_driver:
            self.driver.close()

    def release(self) -> None:
        """Let the columnar copy's file go (see :meth:`Store.release`)."""
        if self.columnar is not None:
            self.columnar.release()

    # -- facts and the write lock --------------------------------------------------------

    def _read_meta(self) -> Mapping[str, str]:
        rows = self._frame(cypher.META_READ)
        return {str(k): str(v) for k, v in zip(rows["key"], rows["value"], strict=True)}

    def _write_meta(self, values: Mapping[str, str]) -> None:
        self.ensure_schema()
        rows = [{"key": k, "value": v} for k, v in values.items()]
        self._write(cypher.META_WRITE, rows=rows)

    def _write(self, statement: str, **params: Any) -> None:
        """One write statement in its own transaction."""
        with self._session() as session, self._failing(statement):
            session.execute_write(_values, statement, params)

    def _lock_holder_now(self) -> LockHolder | None:
        found = self._frame(cypher.LOCK_READ, name=_LOCK_NAME)
        return None if found.empty else LockHolder.from_dict(found["holder"].iloc[0])

    def _acquire_lock(self, holder: LockHolder, *, wait: float) -> None:
        """Create the lock node; the uniqueness constraint refuses a second one."""
        self.ensure_schema()
        deadline = time.monotonic() + wait
        while True:
            with self._session() as session:
                try:
                    session.execute_write(
                        _values, cypher.LOCK_TAKE, {"name": _LOCK_NAME, "holder": holder.to_dict()}
                    )
                    return
                except neo4j.exceptions.ConstraintError:
                    pass  # held: see by whom below
            current = self._lock_holder_now()
            if current is None:
                continue  # released in between
            if current.is_gone():
                log.warning(
                    "taking over the write lock of %s: that process no longer runs",
                    current.describe(),
                )
                self._write(cypher.LOCK_RELEASE, name=_LOCK_NAME, token=current.token)
                continue
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"the Neo4j store is locked by {current.describe()}; waited {wait:g} s "
                    "(GRAPHINV_LOCK_WAIT sets how long). If that process is gone (another "
                    "host, a lost machine), `graphinv unlock` removes the lock."
                )
            time.sleep(_POLL_SECONDS)

    def _release_lock(self, holder: LockHolder) -> None:
        self._write(cypher.LOCK_RELEASE, name=_LOCK_NAME, token=holder.token)

    def _break_lock(self) -> LockHolder | None:
        current = self._lock_holder_now()
        if current is not None:
            self._write(cypher.LOCK_BREAK, name=_LOCK_NAME)
        return current

    # -- loading -------------------------------------------------------------------------

    def _load(
        self, platform: Platform, *, progress: bool, finish: Mapping[str, str]
    ) -> tuple[int, dict[str, float]]:
        """MERGE validated frames into the graph; loading the same frames twice changes nothing.

        Order: constraints, accounts, identifier nodes, attribute tables, relationships,
        usage, labels (each kind of node exists before relationships MATCH it), then the
        facts ``finish`` (the finished load record). Node writes return element ids, so
        relationship batches find both ends without an index seek. Steps timed: ``nodes``,
        ``links``, ``usage`` and ``labels``.
        """
        self.ensure_schema()
        # The load record now says "unfinished": whether the copy was in step before this
        # load is in the tokens alone.
        copy_in_step = self.columnar is not None and (
            self._tokens_match() or (self._graph_empty() and self._copy_empty()))
        # Out of step from here until both hold the rows (a crash leaves it so); a load
        # without the copy clears the token too, so the copy never counts as in step again.
        self._write_meta({COLUMNAR_KEY: ""})
        tables = {name: conform(frame, TABLES[name]) for name, frame in platform.tables().items()}
        links = tables["links"]
        by_kind = {str(kind): group for kind, group in links.groupby("kind", sort=True)}
        steps: dict[str, float] = {}
        with progress_bar(progress) as bar, self._session() as session:
            writer = _BatchWriter(
                session,
                self._session,
                self._failing,
                bar,
                batch_size=self.batch_size,
                writers=self.writers,
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
        self._write_meta(finish)
        if self.columnar is not None and copy_in_step:
            with _timed(steps, "columnar copy"):
                self._load_copy(platform, finish)
        return len(links) + usage_nodes, steps

    # -- the columnar copy -------------------------------------------------------------

    def _load_copy(self, platform: Platform, finish: Mapping[str, str]) -> None:
        """Load the same frames into the columnar copy, then mark both with one token."""
        assert self.columnar is not None
        record = LoadRecord.from_json(finish[LOAD_KEY])
        self.columnar.load(platform, progress=False, source=record.source)
        token = uuid.uuid4().hex
        self.columnar.write_meta({COLUMNAR_KEY: token})
        self._write_meta({COLUMNAR_KEY: token})

    def _columnar_in_step(self) -> bool:
        """Whether the copy holds exactly the graph's rows: the same token in both, written
        after both finished the same loads, and no load unfinished since."""
        return self._tokens_match(graph_finished=True)

    def _tokens_match(self, *, graph_finished: bool = False) -> bool:
        """The graph and a finished copy carry the same token of their last joint load
        (and, with ``graph_finished``, the graph's last load finished too)."""
        if self.columnar is None:
            return False
        # One read of each store's facts: this runs before every read from the copy.
        graph = self.read_meta()
        token = graph.get(COLUMNAR_KEY)
        if not token or (graph_finished and not _load_finished(graph)):
            return False
        copy = self.columnar.read_meta()
        return copy.get(COLUMNAR_KEY) == token and _load_finished(copy)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        self._reading_copy = self._columnar_in_step()
        try:
            yield
        finally:
            self._reading_copy = None

    def _from_copy(self) -> bool:
        """Read from the columnar copy (decided once per platform or neighbourhood read)."""
        if self._reading_copy is not None:
            return self._reading_copy
        return self._columnar_in_step()

    def _graph_empty(self) -> bool:
        return self._frame(cypher.ANY_ACCOUNT).empty

    def _copy_empty(self) -> bool:
        assert self.columnar is not None
        found = self.columnar.query("SELECT count(*) AS n FROM accounts")
        return int(found["n"].iloc[0]) == 0

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
                writer.session.execute_write(self._write_usage, batch, existing)
                writer.bar.advance(task, filled)
                batch, filled = [], 0
        if batch:
            writer.session.execute_write(self._write_usage, batch, existing)
            writer.bar.advance(task, filled)
        return len(groups)

    def _write_usage(
        self, tx: neo4j.ManagedTransaction, batch: list[list[Any]], existing: bool
    ) -> None:
        if not existing:
            self._run(tx, cypher.USAGE_CREATE, {"rows": batch})
            return
        keys = [[row[0], row[1]] for row in batch]
        stored = self._run(tx, cypher.USAGE_READ_KEYS, {"keys": keys})
        if stored:
            batch = _merge_usage(batch, stored)
        self._run(tx, cypher.USAGE_WRITE, {"rows": batch})

    # -- reading -------------------------------------------------------------------------

    def _read_table(self, name: str) -> pd.DataFrame:
        if self._from_copy():
            assert self.columnar is not None
            return self.columnar._read_table(name)
        if name == "links":
            frame = self._read_links()
        elif name == "usage":
            frame = _explode_usage(self._frame(cypher.USAGE_READ))
        else:
            reads = {"accounts": cypher.ACCOUNTS_READ, "labels": cypher.LABELS_READ}
            frame = self._frame(reads.get(name) or cypher.attribute_read_query(name))
            if name == "accounts":
                frame["created_at"] = _from_micros(frame["created_at"])
        return frame.sort_values(list(TABLES[name].key))

    def _read_near(self, name: str, account_ids: list[str]) -> pd.DataFrame:
        if self._from_copy():
            assert self.columnar is not None
            return self.columnar._read_near(name, account_ids)
        reads = {"accounts": cypher.ACCOUNTS_NEAR_READ, "links": cypher.LINKS_NEAR_READ,
                 "usage": cypher.USAGE_NEAR_READ}
        statement = reads.get(name) or cypher.attribute_near_query(name)
        frame = self._frame(statement, ids=account_ids)
        if name == "links":
            frame = _typed_links(frame)
        elif name == "usage":
            frame = _explode_usage(frame)
        elif name == "accounts":
            frame["created_at"] = _from_micros(frame["created_at"])
        return frame.sort_values(list(TABLES[name].key))

    def _write_breakdown(self, sweep_id: str, rows: list[tuple[str, str]]) -> int:
        def write(tx: neo4j.ManagedTransaction) -> int:
            found = self._run(tx, cypher.BREAKDOWN_WRITE,
                              {"sweep_id": sweep_id, "rows": [list(r) for r in rows]})
            written = int(found[0]["written"])
            if written != len(rows):
                # Raising inside the transaction function rolls every write back.
                raise StoreError(f"sweep {sweep_id}: {len(rows) - written} breakdown(s) name "
                                 "rings that are not in the sweep")
            return written

        with self._session() as session:
            return int(session.execute_write(write))

    def _read_links(self) -> pd.DataFrame:
        return _typed_links(self._frame(cypher.LINKS_READ))

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
        """Write a sweep, its campaigns, rings and lineage in one transaction, then members.

        Writing a sweep id again first DETACH DELETEs that sweep's rings and campaigns, which
        also removes the ``CONTINUES`` edges from and into those rings. A lineage edge that
        names a missing ring rolls the whole transaction back.
        """
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
            self._run(tx, cypher.SWEEP_CLEAR_RINGS, key)
            self._run(tx, cypher.SWEEP_CLEAR_CAMPAIGNS, key)
            self._run(
                tx,
                cypher.SWEEP_MERGE,
                {**key, "at": at.isoformat(), "params": params_json(sweep.params)},
            )
            self._run(tx, cypher.CAMPAIGNS_CREATE, {**key, "rows": campaign_rows})
            self._run(tx, cypher.RINGS_CREATE, {**key, "rows": ring_rows})
            if not edge_rows:
                return
            linked = self._run(
                tx,
                cypher.LINEAGE_CREATE,
                {**key, "previous_sweep_id": previous_sweep_id, "rows": edge_rows},
            )[0]["written"]
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
                with self._failing(cypher.MEMBERS_CREATE):
                    record = session.execute_write(
                        _single, cypher.MEMBERS_CREATE, {**key, "rows": batch}
                    )
                written += record["written"]
        if written != len(members):
            raise StoreError(
                f"sweep {sweep.sweep_id}: {len(members) - written} member(s) name accounts or "
                "rings that are not in the graph"
            )

    # -- review decisions (append-only; see graphinv.investigate.review) -------------------

    def append_decision(self, decision: Mapping[str, Any]) -> None:
        """Record one decision event as a ``(:Decision)`` node (missing keys as null)."""
        self.ensure_schema()
        values = {c: _native(optional(decision.get(c))) for c in _DECISION_KEYS}
        values["at"] = pd.Timestamp(values["at"]).isoformat()
        with self._session() as session:
            session.execute_write(self._run, cypher.DECISION_CREATE, values)

    def read_decisions(self) -> pd.DataFrame:
        """Every decision event, oldest first."""
        frame = self._fetch(cypher.DECISIONS_READ, {}).reindex(columns=list(_DECISION_KEYS))
        frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
        return frame


def _load_finished(meta: Mapping[str, str]) -> bool:
    """Whether the last load recorded in a store's facts finished (or none is recorded)."""
    record = LoadRecord.from_meta(meta)
    return record is None or record.finished is not None


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


def _keys_and_values(
    tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any]
) -> tuple[list[str], list[list[Any]]]:
    result = tx.run(query, params)
    return list(result.keys()), result.values()




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
    failing
        The store's wrapper that turns a refusal into a StoreError quoting the statement.
    """

    def __init__(
        self,
        session: neo4j.Session,
        open_session: Callable[[], AbstractContextManager[neo4j.Session]],
        failing: Callable[[str], AbstractContextManager[None]],
        bar: Progress,
        *,
        batch_size: int,
        writers: int,
    ) -> None:
        self.session = session
        self.open_session = open_session
        self.failing = failing
        self.bar = bar
        self.batch_size = batch_size
        self.writers = writers

    def present(self, query: str, **params: Any) -> bool:
        """Answer a ``… AS present`` existence query."""
        with self.failing(query):
            return bool(self.session.execute_read(_single, query, params)["present"])

    def send(self, description: str, query: str, frame: pd.DataFrame, **params: Any) -> None:
        """Write every row, one batch after the other on the load's session."""
        task = self.bar.add_task(description, total=len(frame))
        for batch in _batches(frame, self.batch_size):
            with self.failing(query):
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
            with self.open_session() as session, self.failing(query):
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


def _typed_links(frame: pd.DataFrame) -> pd.DataFrame:
    """Link rows as the links table: core kinds from the relationship type, times typed."""
    core = frame["rel_type"].map(_KIND_OF_TYPE)
    frame["kind"] = core.where(core.notna(), frame["kind"])
    for column in ("first_seen", "last_seen"):
        frame[column] = _from_micros(frame[column])
    return frame.drop(columns="rel_type")


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


def _explode_usage(arrays: pd.DataFrame) -> pd.DataFrame:
    """Usage rows (one per hour) from the per-(account, model) arrays of the Usage nodes."""
    columns = list(TABLES["usage"].column_names)
    if arrays.empty:
        return pd.DataFrame(columns=columns)
    lengths = arrays["hours"].map(len).to_numpy()

    def flat(column: str) -> np.ndarray:
        return np.concatenate(arrays[column].tolist()).astype("int64")

    frame = pd.DataFrame(
        {
            "account_id": np.repeat(arrays["account_id"].to_numpy(), lengths),
            "hour": pd.to_datetime(flat("hours") * 3600, unit="s", utc=True),
            "model": np.repeat(arrays["model"].to_numpy(), lengths),
            **{c: flat(c) for c in _USAGE_ARRAYS[1:]},
        }
    )
    return frame[columns]


def _ring_row(ring: Mapping[Hashable, Any]) -> dict[str, Any]:
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
