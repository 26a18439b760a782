"""The store interface every backend implements, and the records and rules they share.

Two backends sit behind the abstract :class:`Store`: the embedded DuckDB file (default, no
server) and Neo4j over Bolt (what investigators explore). Compute never talks to a backend
directly; it reads frames out (:meth:`Store.read_platform`) and writes results back
(:meth:`Store.write_sweep`). The shared logic (checking and normalising frames, picking the
latest sweep, wrapping backend errors with the statement that failed) lives in ``@final``
template methods here; a backend implements a few protected hooks. The loader only needs
:class:`LoadTarget`, which the offline Neo4j importer implements too.

Merge rule (both backends, see :data:`MERGE_RULES`): a load MERGEs on each table's key.
``accounts.created_at`` and ``links.first_seen`` keep the earliest value,
``links.last_seen`` and ``links.count`` the largest; every other column takes the newer
load's value when it has one and keeps the stored one when the newer value is missing.
``count`` is read as a cumulative counter (times seen between first and last), so loading
the same export twice, or an overlapping later one, never double-counts; exports of
disjoint windows must be summed before loading. Usage rows (account, hour, model) are
replaced by the newer load's figures.

Examples
--------
>>> from graphinv.stores.base import MERGE_RULES
>>> MERGE_RULES["links"]
{'first_seen': 'min', 'last_seen': 'max', 'count': 'max'}
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import textwrap
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, final

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from graphinv.errors import GraphinvError, InputError, RingNotFound, StoreError
from graphinv.schema import STATUSES, TABLES, Platform, conform, duplicated_rows

MergeRule = Literal["min", "max", "new"]

# Columns not named here follow "new": the newer non-missing value wins.
MERGE_RULES: dict[str, dict[str, MergeRule]] = {
    "accounts": {"created_at": "min"},
    "links": {"first_seen": "min", "last_seen": "max", "count": "max"},
}

RING_COLUMNS = ("ring_id", "size", "score", "rank", "campaign_id", "explanation", "features")
# Lineage columns a sweep adds to its rings; optional so callers without lineage still write.
RING_LINEAGE_COLUMNS = ("flagged", "status", "predecessors", "lineage_evidence", "density")
LINEAGE_COLUMNS = (
    "ring_id",
    "previous_ring_id",
    "status",
    "shared_members",
    "member_jaccard",
    "shared_identifiers",
    "infra_overlap",
)
MEMBER_COLUMNS = ("ring_id", "account_id")
# A ring's score breakdown, one row per feature (graphinv.score.scoring.RingScores).
BREAKDOWN_COLUMNS = ("feature", "group", "value", "baseline", "suspicion", "weight",
                     "contribution", "text")
CAMPAIGN_COLUMNS = ("campaign_id", "n_rings", "size")
SWEEP_COLUMNS = ("sweep_id", "at", "params")
LINEAGE_READ_COLUMNS = ("sweep_id", "previous_sweep_id", *LINEAGE_COLUMNS)

# Feature names become Neo4j property names (``f_<name>``) and Browser captions.
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# The store's facts table (key -> text) holds the last load's record under this key.
LOAD_KEY = "load"
# Every finished load is also kept under LOAD_KEY/<load id>: the store's load history.
LOAD_HISTORY_PREFIX = f"{LOAD_KEY}/"
# How long a writer waits for another one's lock before giving up (GRAPHINV_LOCK_WAIT).
DEFAULT_LOCK_WAIT = 300.0


def merge_rule(table: str, column: str) -> MergeRule:
    """How a stored value and a newly loaded value of one column combine."""
    return MERGE_RULES.get(table, {}).get(column, "new")


@dataclass(frozen=True)
class SweepRecord:
    """One detection run: its id, when it ran, and the parameters it ran with (JSON-able)."""

    sweep_id: str
    at: datetime
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadStats:
    """What one :meth:`Store.load` wrote: rows per table, relationships, wall time.

    ``steps`` holds wall seconds per step where a backend times them (Neo4j: ``nodes``,
    ``links``, ``usage``, ``labels``), so a relationship rate can leave node writes out.
    """

    rows: Mapping[str, int]
    relationships: int
    seconds: float
    steps: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class InputFile:
    """One file a load read: its name in the input folder, SHA-256 of its bytes, its size.

    Examples
    --------
    >>> InputFile.from_json(InputFile("links.csv", "ab" * 32, 10).to_json()).name
    'links.csv'
    """

    name: str
    sha256: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputFile:
        return cls(name=str(data["name"]), sha256=str(data["sha256"]), bytes=int(data["bytes"]))


@dataclass(frozen=True)
class LoadRecord:
    """What a store knows of a load: which, from where, which files (with their SHA-256), how
    many rows, and whether it finished (``finished`` is None while it runs, and forever
    after a crash).

    Examples
    --------
    >>> record = LoadRecord.begin("exports/2026-12-03", {"accounts": 3})
    >>> record.finished is None, LoadRecord.from_json(record.done().to_json()).finished is None
    (True, False)
    """

    load_id: str
    started: datetime
    source: str
    rows: Mapping[str, int]
    host: str
    pid: int
    finished: datetime | None = None
    files: tuple[InputFile, ...] = ()

    @classmethod
    def begin(
        cls, source: str, rows: Mapping[str, int], files: tuple[InputFile, ...] = ()
    ) -> LoadRecord:
        started = datetime.now(UTC)
        return cls(
            load_id=f"L{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            started=started,
            source=source,
            rows=dict(rows),
            host=socket.gethostname(),
            pid=os.getpid(),
            files=tuple(files),
        )

    def done(self) -> LoadRecord:
        """The same record, finished now."""
        return replace(self, finished=datetime.now(UTC))

    def to_json(self) -> str:
        return json.dumps(
            {
                "load_id": self.load_id,
                "started": self.started.isoformat(),
                "finished": None if self.finished is None else self.finished.isoformat(),
                "source": self.source,
                "rows": dict(self.rows),
                "host": self.host,
                "pid": self.pid,
                "files": [file.to_json() for file in self.files],
            },
            sort_keys=True,
        )

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> LoadRecord | None:
        """The last load's record among a store's facts (None before records existed)."""
        text = meta.get(LOAD_KEY)
        return None if text is None else cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> LoadRecord:
        data = json.loads(text)
        finished = data.get("finished")
        return cls(
            load_id=str(data["load_id"]),
            started=datetime.fromisoformat(data["started"]),
            source=str(data["source"]),
            rows={str(k): int(v) for k, v in data.get("rows", {}).items()},
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            finished=None if finished is None else datetime.fromisoformat(finished),
            files=tuple(InputFile.from_json(file) for file in data.get("files", ())),
        )

    def describe(self) -> str:
        """One line for messages: id, source, start time, rows."""
        rows = sum(self.rows.values())
        return (
            f"load {self.load_id} of {self.source} ({rows:,} rows, started "
            f"{self.started:%Y-%m-%d %H:%M:%S} UTC by pid {self.pid} on {self.host})"
        )


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or wants) a store's write lock: enough for a message and a stale check."""

    operation: str
    token: str
    pid: int
    host: str
    command: str
    started: datetime

    @classmethod
    def here(cls, operation: str) -> LockHolder:
        return cls(
            operation=operation,
            token=uuid.uuid4().hex,
            pid=os.getpid(),
            host=socket.gethostname(),
            command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
            started=datetime.now(UTC),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "token": self.token,
            "pid": self.pid,
            "host": self.host,
            "command": self.command,
            "started": self.started.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockHolder:
        started = data.get("started")
        return cls(
            operation=str(data.get("operation", "?")),
            token=str(data.get("token", "")),
            pid=int(data.get("pid") or 0),
            host=str(data.get("host", "?")),
            command=str(data.get("command", "")),
            started=datetime.fromisoformat(str(started)) if started else datetime.now(UTC),
        )

    def describe(self) -> str:
        return (
            f"a {self.operation} by pid {self.pid} on host {self.host} since "
            f"{self.started:%Y-%m-%d %H:%M:%S} UTC ({self.command!r})"
        )

    def is_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class LoadTarget(ABC):
    """Somewhere a validated platform can be loaded: a store, or an offline importer.

    :meth:`load` is the template: it checks that keys are unique (loads MERGE on them),
    times the load and counts rows; a backend implements :meth:`_load` only.
    """

    #: What the target is, for reports: ``embedded``, ``neo4j``, ``neo4j-admin import``.
    backend: ClassVar[str]

    @final
    def load(
        self,
        platform: Platform,
        *,
        progress: bool = True,
        source: str | None = None,
        files: tuple[InputFile, ...] = (),
        keys_checked: bool = False,
    ) -> LoadStats:
        """Write validated frames: a store MERGEs them (the module's merge rule), so loading
        the same frames twice changes nothing; the offline importer needs an empty database.

        A store records the load (:class:`LoadRecord`, ``source`` naming where the rows came
        from) as unfinished before it writes anything and as finished with its last write;
        sweeps refuse a store whose last load did not finish. It holds the store's write
        lock meanwhile (:meth:`Store.exclusive`).

        Keys are checked for repeats unless ``keys_checked`` says the frames come straight
        from :func:`graphinv.schema.validate`, which already quarantined every repeat (the
        check costs seconds on a million accounts' usage).

        Raises
        ------
        InputError
            A key repeats within a table.
        StoreError
            The backend refused a statement (the message quotes it), a link names an
            account that is neither loaded now nor stored, or another writer kept the
            store's lock past the wait.
        """
        if not keys_checked:
            check_unique_keys(platform)
        record = LoadRecord.begin(
            source or "frames in memory",
            {name: len(frame) for name, frame in platform.tables().items()},
            files,
        )
        started = time.perf_counter()
        relationships, steps = self._recorded_load(platform, record, progress=progress)
        return LoadStats(
            rows={name: len(frame) for name, frame in platform.tables().items()},
            relationships=relationships,
            seconds=time.perf_counter() - started,
            steps=steps,
        )

    @abstractmethod
    def read_meta(self) -> dict[str, str]:
        """Facts recorded about the target (key -> text): the last load's record, markers."""

    @abstractmethod
    def write_meta(self, values: Mapping[str, str]) -> None:
        """Record facts about the target, replacing earlier values of the same keys."""

    def default_quarantine_dir(self) -> Path:
        """Where a load puts refused rows unless told otherwise (``./quarantine``)."""
        return Path.cwd() / "quarantine"

    def _recorded_load(
        self, platform: Platform, record: LoadRecord, *, progress: bool
    ) -> tuple[int, dict[str, float]]:
        """Run :meth:`_load`; a store records the load around it (see :class:`Store`)."""
        return self._load(platform, progress=progress, finish=_finished(record))

    @abstractmethod
    def _load(
        self, platform: Platform, *, progress: bool, finish: Mapping[str, str]
    ) -> tuple[int, dict[str, float]]:
        """Write key-unique frames; returns relationships written and seconds per timed step.

        ``finish`` are facts (key -> text) to record as the load's last write, in the same
        transaction as the rows where the backend has one: the finished load record.
        """


def _finished(record: LoadRecord) -> dict[str, str]:
    """The facts a finished load writes: the last load's record and its history entry."""
    text = record.done().to_json()
    return {LOAD_KEY: text, f"{LOAD_HISTORY_PREFIX}{record.load_id}": text}


@dataclass(frozen=True)
class ReadStatements:
    """The read statements of a backend (SQL or Cypher), with ``$sweep_id``/``$ring_id``.

    Each returns the columns :class:`Store`'s readers turn into frames: ``sweeps``
    (:data:`SWEEP_COLUMNS`), ``latest_sweep`` (``sweep_id``, at most one row), ``rings``
    (``sweep_id`` and ring columns), ``lineage`` (:data:`LINEAGE_READ_COLUMNS`),
    ``ring_exists`` (``n``), ``ring_members``, ``members`` and ``rings_members`` (the rings
    ``$ring_ids`` of a sweep): ``ring_id, account_id``, ordered; ``breakdown``
    (``breakdown``: one ring's stored score breakdown as JSON, no row or NULL when the
    sweep stored none).
    """

    sweeps: str
    latest_sweep: str
    rings: str
    lineage: str
    ring_exists: str
    ring_members: str
    members: str
    rings_members: str
    breakdown: str


class Store(LoadTarget):
    """A place that holds a platform's tables and the rings found in it.

    The public methods are ``@final`` templates: they check and normalise frames the same
    way for every backend and run the backend's statements through :meth:`_frame`, which
    turns a backend error into :class:`~graphinv.errors.StoreError` quoting the statement
    that failed (the backend's exception stays attached as ``__cause__``). A backend
    supplies its :class:`ReadStatements`, the exceptions it raises (``_backend_errors``)
    and hooks: ``_load``, ``_fetch``, ``_read_table``, ``_write_sweep``, ``close``, the
    facts table (``_read_meta``, ``_write_meta``) and the write lock (``_acquire_lock``,
    ``_release_lock``, ``_break_lock``).

    Integrity: every load is recorded (:meth:`last_load`) and holds the write lock
    (:meth:`exclusive`); a sweep holds it too and refuses a store whose last load did not
    finish (:meth:`require_finished_load`).
    """

    _backend_errors: ClassVar[tuple[type[Exception], ...]]
    _reads: ClassVar[ReadStatements]
    #: Whether an unfinished load can have left part of its rows behind (Neo4j, loaded in
    #: many transactions) or none (DuckDB, one transaction).
    _partial_loads: ClassVar[bool]
    #: Seconds a writer waits for another's lock (and a DuckDB open for another process).
    lock_wait: float = DEFAULT_LOCK_WAIT
    _lock_depth: int = 0
    _lock_holder: LockHolder | None = None

    # -- facts, load records and the write lock -------------------------------------------

    @final
    def read_meta(self) -> dict[str, str]:
        """Facts recorded about the store (key -> text): the last load's record, markers."""
        return dict(self._read_meta())

    @final
    def write_meta(self, values: Mapping[str, str]) -> None:
        """Record facts about the store, replacing earlier values of the same keys."""
        self._write_meta({str(k): str(v) for k, v in values.items()})

    @final
    def last_load(self) -> LoadRecord | None:
        """The record of the last load (None for a store loaded before records existed)."""
        return LoadRecord.from_meta(self.read_meta())

    @final
    def load_history(self) -> list[LoadRecord]:
        """Every finished load, oldest first (loads from before histories existed are absent)."""
        records = [
            LoadRecord.from_json(text)
            for key, text in self.read_meta().items()
            if key.startswith(LOAD_HISTORY_PREFIX)
        ]
        return sorted(records, key=lambda record: record.started)

    @final
    def unfinished_load(self) -> str | None:
        """Why the store's content is suspect (its last load did not finish), else None."""
        record = self.last_load()
        if record is None or record.finished is not None:
            return None
        if self._partial_loads:
            state = "the store may hold part of its rows"
        else:
            state = "none of its rows were written (a load is one transaction here)"
        return (
            f"the last {record.describe()} did not finish (it crashed, failed or still "
            f"runs): {state}. Rerun `graphinv load {record.source}` to complete it"
        )

    @final
    def require_finished_load(self) -> None:
        """Refuse (StoreError) a store whose last load did not finish."""
        problem = self.unfinished_load()
        if problem is not None:
            raise StoreError(f"{problem}; sweeps refuse this store until then.")

    @final
    @contextmanager
    def exclusive(self, operation: str) -> Iterator[LockHolder]:
        """Hold the store's write lock (one load or sweep at a time, across processes).

        Waits up to :attr:`lock_wait` seconds for another holder, then raises StoreError
        naming it (pid, host, command, since when). Re-entrant within one store object.
        """
        if self._lock_depth:
            assert self._lock_holder is not None
            self._lock_depth += 1
            try:
                yield self._lock_holder
            finally:
                self._lock_depth -= 1
            return
        holder = LockHolder.here(operation)
        self._acquire_lock(holder, wait=self.lock_wait)
        self._lock_holder, self._lock_depth = holder, 1
        try:
            yield holder
        except BaseException as exc:
            self._lock_holder, self._lock_depth = None, 0
            try:
                self._release_lock(holder)
            except GraphinvError as failed:
                # The operation's own error says what went wrong; keep it in front.
                exc.add_note(f"(releasing the write lock failed too: {failed})")
            raise
        self._lock_holder, self._lock_depth = None, 0
        self._release_lock(holder)

    @final
    def break_lock(self) -> LockHolder | None:
        """Remove a write lock left by a process that cannot release it; returns its holder."""
        return self._break_lock()

    def release(self) -> None:
        """Let go of the backend until the next call (the embedded store closes its file so
        other processes can open it during a long computation); a no-op on a server."""

    @final
    def _recorded_load(
        self, platform: Platform, record: LoadRecord, *, progress: bool
    ) -> tuple[int, dict[str, float]]:
        with self.exclusive("load"):
            # Committed on its own before any row: a crash from here on leaves it unfinished.
            self._write_meta({LOAD_KEY: record.to_json()})
            return self._load(platform, progress=progress, finish=_finished(record))

    @abstractmethod
    def _read_meta(self) -> Mapping[str, str]:
        """Every recorded fact; empty for a store without any (or without the table)."""

    @abstractmethod
    def _write_meta(self, values: Mapping[str, str]) -> None:
        """Upsert facts, committed before returning."""

    @abstractmethod
    def _acquire_lock(self, holder: LockHolder, *, wait: float) -> None:
        """Take the write lock for ``holder`` within ``wait`` seconds, else StoreError."""

    @abstractmethod
    def _release_lock(self, holder: LockHolder) -> None:
        """Release ``holder``'s lock (never someone else's)."""

    @abstractmethod
    def _break_lock(self) -> LockHolder | None:
        """Remove a lock whatever its holder; the holder removed, if any."""

    # -- tables ------------------------------------------------------------------------

    @final
    def read_platform(self, *, include_labels: bool = False) -> Platform:
        """Every table back out, ordered by key, with the columns and dtypes of ``TABLES``.

        Optional tables without rows come back as None.
        """
        frames: dict[str, Any] = {}
        with self._reading():
            for name, spec in TABLES.items():
                if name == "labels" and not include_labels:
                    continue
                frame = self._read_table(name)
                frames[name] = None if frame.empty and not spec.required else conform(frame, spec)
        return Platform(**frames)

    # -- results -----------------------------------------------------------------------

    @final
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
        """Record a sweep, its rings and their lineage edges to ``previous_sweep_id``.

        Writing the same sweep id again replaces its rings, campaigns and every lineage
        edge that touches its rings (from this sweep or from a later one).

        Parameters
        ----------
        sweep
            Id, time and parameters of the run.
        rings, members, campaigns
            Result frames (see :func:`sweep_frames`).
        lineage
            ``CONTINUES`` edges (:data:`LINEAGE_COLUMNS`) from this sweep's rings to rings
            of ``previous_sweep_id``; None writes none.
        previous_sweep_id
            The sweep the lineage edges point into (the latest one before this).

        Raises
        ------
        StoreError
            A frame breaks :func:`sweep_frames` or :func:`lineage_frame`, a member names an
            account that is not loaded or a ring not in ``rings``, or an edge names a ring
            missing from this sweep or from ``previous_sweep_id`` (then nothing of the
            sweep is written).
        """
        rings, members, campaigns = sweep_frames(rings, members, campaigns)
        edges = lineage_frame(lineage, sweep_id=sweep.sweep_id, previous_sweep_id=previous_sweep_id)
        self._write_sweep(
            sweep,
            rings=rings,
            members=members,
            campaigns=campaigns,
            edges=edges,
            previous_sweep_id=previous_sweep_id,
        )

    @final
    def write_breakdown(self, sweep_id: str, contributions: pd.DataFrame) -> None:
        """Keep each ring's score breakdown with a written sweep, so a case on one ring
        needs no platform-wide recomputation.

        Parameters
        ----------
        sweep_id
            A sweep already written (its rings receive the breakdown).
        contributions
            :attr:`graphinv.score.scoring.RingScores.contributions` under the rings' stored
            ids: ``ring_id`` and :data:`BREAKDOWN_COLUMNS`.

        Raises
        ------
        StoreError
            A column is missing, or a ring is not in the sweep.
        """
        _require("contributions", contributions, ("ring_id", *BREAKDOWN_COLUMNS))
        rows = breakdown_rows(contributions)
        written = self._write_breakdown(sweep_id, rows)
        if written != len(rows):
            raise StoreError(
                f"sweep {sweep_id}: {len(rows) - written} breakdown(s) name rings that are not "
                "in the sweep"
            )

    @final
    def read_breakdown(self, ring_id: str, *, sweep_id: str | None = None) -> pd.DataFrame | None:
        """One ring's stored score breakdown (:data:`BREAKDOWN_COLUMNS`, largest
        contribution first), or None when its sweep stored none (written by an older
        graphinv)."""
        found = self._frame(self._reads.breakdown, sweep_id=self._sweep(sweep_id),
                            ring_id=str(ring_id))
        if found.empty or not isinstance(found["breakdown"].iloc[0], str):
            return None
        frame = pd.DataFrame(json.loads(found["breakdown"].iloc[0]),
                             columns=list(BREAKDOWN_COLUMNS))
        for column in ("value", "baseline", "suspicion", "weight", "contribution"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
        return frame.sort_values("contribution", ascending=False, kind="stable").reset_index(
            drop=True)

    @final
    def read_neighbourhood(self, account_ids: Sequence[str]) -> Platform:
        """A ring's neighbourhood: what a case on these accounts reads, never the platform.

        ``accounts`` and ``usage`` of the given accounts; ``links``: every link on an
        identifier they use, theirs and other accounts' (so the case can count who else
        uses a card, and which sibling rings share it); the attribute tables' rows of those
        identifiers. Ordered by key, typed as :meth:`read_platform`; ``labels`` never.
        """
        ids = sorted({str(a) for a in account_ids})
        frames: dict[str, Any] = {}
        with self._reading():
            for name, spec in TABLES.items():
                if name == "labels":
                    continue
                frame = self._read_near(name, ids)
                frames[name] = None if frame.empty and not spec.required else conform(frame, spec)
        return Platform(**frames)

    @final
    def read_sweeps(self) -> pd.DataFrame:
        """Sweeps (``sweep_id, at, params``) oldest first; ``params`` as dicts."""
        return sweeps_frame(self._frame(self._reads.sweeps))

    @final
    def read_rings(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """Rings of one sweep (the latest by default), best rank first.

        Columns: ``sweep_id``, :data:`RING_COLUMNS`, :data:`RING_LINEAGE_COLUMNS`.
        """
        return rings_frame(self._frame(self._reads.rings, sweep_id=self._sweep(sweep_id)))

    @final
    def read_ring_members(self, ring_id: str, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``ring_id, account_id`` of one ring; RingNotFound when the sweep lacks it."""
        sweep_id = self._sweep(sweep_id)
        found = self._frame(self._reads.ring_exists, sweep_id=sweep_id, ring_id=ring_id)
        if found.empty or int(found["n"].iloc[0]) == 0:
            raise RingNotFound(f"ring {ring_id!r} is not in sweep {sweep_id!r}")
        return self._frame(self._reads.ring_members, sweep_id=sweep_id, ring_id=ring_id)

    @final
    def read_members(
        self, *, sweep_id: str | None = None, ring_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """``ring_id, account_id`` of every ring of a sweep (the latest by default), or of
        the rings ``ring_ids`` only (a case's campaign, without reading every ring)."""
        if ring_ids is None:
            return self._frame(self._reads.members, sweep_id=self._sweep(sweep_id))
        if isinstance(ring_ids, str):
            raise TypeError("ring_ids is a sequence of ring ids, not one string")
        return self._frame(self._reads.rings_members, sweep_id=self._sweep(sweep_id),
                           ring_ids=[str(r) for r in ring_ids])

    @final
    def read_lineage(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``CONTINUES`` edges from a sweep's rings (the latest by default) to the sweep before.

        Columns :data:`LINEAGE_READ_COLUMNS`: ``sweep_id``, ``previous_sweep_id``, then
        :data:`LINEAGE_COLUMNS`; ordered by ``ring_id``, ``previous_ring_id``.
        """
        return lineage_read_frame(self._frame(self._reads.lineage, sweep_id=self._sweep(sweep_id)))

    @final
    def _sweep(self, sweep_id: str | None) -> str | None:
        """The given sweep id, else the latest sweep's (None before the first sweep)."""
        if sweep_id is not None:
            return sweep_id
        latest = self._frame(self._reads.latest_sweep)
        return None if latest.empty else str(latest["sweep_id"].iloc[0])

    # -- queries -----------------------------------------------------------------------

    @abstractmethod
    def append_decision(self, decision: Mapping[str, Any]) -> None:
        """Append one review decision on a ring (graphinv.investigate.review); never edits."""

    @abstractmethod
    def read_decisions(self) -> pd.DataFrame:
        """Every review decision, oldest first."""

    @final
    def query(self, text: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read query (SQL for embedded, Cypher for Neo4j) with ``$name`` parameters.

        Raises
        ------
        StoreError
            The backend refused it; the message quotes the query.
        """
        return self._frame(text, params)

    def run_cypher(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a Cypher read query: a capability of the Neo4j store only.

        Raises
        ------
        StoreError
            Always, on a store that does not speak Cypher.
        """
        raise StoreError(
            f"Cypher queries (saved queries among them) need the Neo4j store; this store is "
            f"{self.backend}. Open the Neo4j store with a Bolt URI (--neo4j URI or NEO4J_URI)."
        )

    # -- lifecycle ---------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the connection (a driver the store did not open stays open)."""

    @final
    def __enter__(self) -> Self:
        return self

    @final
    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running statements --------------------------------------------------------------

    @final
    def _frame(
        self, statement: str, params: Mapping[str, Any] | None = None, **named: Any
    ) -> pd.DataFrame:
        """Run one read statement into a frame; a backend error quotes the statement."""
        with self._failing(statement):
            return self._fetch(statement, {**(params or {}), **named})

    @final
    @contextmanager
    def _failing(self, statement: str) -> Iterator[None]:
        """Turn a backend error raised inside into a StoreError that quotes ``statement``."""
        try:
            yield
        except self._backend_errors as exc:
            # Neo4j errors carry the server's message apart from their status codes.
            detail = getattr(exc, "message", None) or str(exc)
            raise StoreError(
                f"the {self.backend} store refused the statement {shorten(statement)!r}: {detail}"
            ) from exc

    @abstractmethod
    def _fetch(self, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
        """Run one read statement into a frame, one column per returned name.

        Called through :meth:`_frame`, which wraps the backend's errors.
        """

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Around the table reads of one :meth:`read_platform` or :meth:`read_neighbourhood`:
        a backend that can read from two places decides once where, not per table."""
        yield

    @abstractmethod
    def _read_table(self, name: str) -> pd.DataFrame:
        """The rows of one input table, ordered by its key (conformed by the caller)."""

    @abstractmethod
    def _read_near(self, name: str, account_ids: list[str]) -> pd.DataFrame:
        """The rows of one input table in the neighbourhood of ``account_ids`` (see
        :meth:`read_neighbourhood`), ordered by its key (conformed by the caller)."""

    @abstractmethod
    def _write_breakdown(self, sweep_id: str, rows: list[tuple[str, str]]) -> int:
        """Store ``(ring_id, breakdown JSON)`` on the sweep's rings; how many it found."""

    @abstractmethod
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
        """Write normalised result frames all or nothing (members may follow in batches).

        Must refuse (StoreError) members naming unknown accounts or rings, and edges naming
        rings missing from this sweep or from ``previous_sweep_id``.
        """


# -- helpers the backends share ---------------------------------------------------------


def check_unique_keys(platform: Platform) -> None:
    """Refuse frames whose keys repeat: loads MERGE on keys, so a repeat would be ambiguous.

    :func:`graphinv.schema.validate` already guarantees this for loaded folders; frames
    built in code (a generator, a notebook) get the same guarantee here.
    """
    for name, frame in platform.tables().items():
        key = list(TABLES[name].key)
        repeats = int(duplicated_rows(frame, key).sum())
        if repeats:
            raise InputError(f"{name}: {repeats} row(s) repeat a key {tuple(key)}; validate first")


def sweep_frames(
    rings: pd.DataFrame, members: pd.DataFrame, campaigns: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Check and normalise result frames: columns present, ``features`` as dicts, NaN → None.

    Rings keep :data:`RING_COLUMNS` then :data:`RING_LINEAGE_COLUMNS` (missing lineage
    columns are added empty); ``predecessors`` becomes a list of ids per ring.

    Raises
    ------
    StoreError
        A column is missing, a ring id repeats, a feature name is not an identifier, or a
        status is not one of :data:`graphinv.schema.STATUSES`.
    """
    for name, frame, columns in (
        ("rings", rings, RING_COLUMNS),
        ("members", members, MEMBER_COLUMNS),
        ("campaigns", campaigns, CAMPAIGN_COLUMNS),
    ):
        _require(name, frame, columns)
    rings = rings.reindex(columns=[*RING_COLUMNS, *RING_LINEAGE_COLUMNS])
    if rings["ring_id"].duplicated().any():
        raise StoreError("ring ids must be unique within a sweep")
    rings["ring_id"] = rings["ring_id"].astype("str")
    rings["features"] = _mapped(rings["features"], _features)
    for features in rings["features"]:
        bad = [k for k in features if not FEATURE_NAME.fullmatch(k)]
        if bad:
            raise StoreError(f"feature names {bad} are not identifiers ([A-Za-z_][A-Za-z0-9_]*)")
    _check_statuses("rings status", rings["status"])
    rings["flagged"] = rings["flagged"].astype("boolean")
    rings["predecessors"] = _mapped(rings["predecessors"], _id_list)
    rings["density"] = pd.to_numeric(rings["density"]).astype("float64")
    for column in ("status", "lineage_evidence"):
        rings[column] = _texts(rings[column])
    members = members.loc[:, list(MEMBER_COLUMNS)].astype("str").drop_duplicates()
    campaigns = campaigns.loc[:, list(CAMPAIGN_COLUMNS)].copy()
    campaigns["campaign_id"] = campaigns["campaign_id"].astype("str")
    return rings, members, campaigns


def lineage_frame(
    lineage: pd.DataFrame | None, *, sweep_id: str, previous_sweep_id: str | None
) -> pd.DataFrame:
    """Check and normalise lineage edges (:data:`LINEAGE_COLUMNS`); None gives no edges.

    Raises
    ------
    StoreError
        A column is missing, an edge repeats, a status is not a lineage status, or edges
        come without the previous sweep they point into.
    """
    if lineage is None:
        lineage = pd.DataFrame(columns=list(LINEAGE_COLUMNS))
    _require("lineage", lineage, LINEAGE_COLUMNS)
    edges = lineage.loc[:, list(LINEAGE_COLUMNS)].copy()
    if len(edges) and previous_sweep_id is None:
        raise StoreError("lineage edges need previous_sweep_id, the sweep they point into")
    if previous_sweep_id == sweep_id:
        raise StoreError(f"sweep {sweep_id}: previous_sweep_id must name an earlier sweep")
    for column in ("ring_id", "previous_ring_id"):
        edges[column] = edges[column].astype("str")
    if edges.duplicated(subset=["ring_id", "previous_ring_id"]).any():
        raise StoreError("lineage edges must be unique per (ring_id, previous_ring_id)")
    _check_statuses("lineage status", edges["status"])
    for column in ("shared_members", "shared_identifiers"):
        edges[column] = pd.to_numeric(edges[column]).astype("Int64")
    for column in ("member_jaccard", "infra_overlap"):
        edges[column] = pd.to_numeric(edges[column]).astype("float64")
    return edges.reset_index(drop=True)


def rings_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The frame :meth:`Store.read_rings` returns, from backend rows (``features`` as JSON).

    Lineage columns a backend lacks (rings written before they existed) come back empty.
    """
    frame = rows.reindex(
        columns=["sweep_id", *RING_COLUMNS, *RING_LINEAGE_COLUMNS]
    )
    frame["features"] = _mapped(frame["features"], _features)
    for column in ("score", "density"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    for column in ("size", "rank"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    frame["campaign_id"] = frame["campaign_id"].astype("str")
    frame["flagged"] = frame["flagged"].astype("boolean")
    frame["predecessors"] = _mapped(frame["predecessors"], _id_list)
    for column in ("status", "lineage_evidence"):
        frame[column] = _texts(frame[column])
    return frame.sort_values(["rank", "ring_id"], na_position="last").reset_index(drop=True)


def lineage_read_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The frame :meth:`Store.read_lineage` returns, ordered by ring then previous ring."""
    frame = rows.reindex(columns=list(LINEAGE_READ_COLUMNS))
    for column in ("shared_members", "shared_identifiers"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    for column in ("member_jaccard", "infra_overlap"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame.sort_values(["ring_id", "previous_ring_id"]).reset_index(drop=True)


def sweeps_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The frame :meth:`Store.read_sweeps` returns (``at`` tz-aware UTC, ``params`` dicts)."""
    frame = rows.reindex(columns=list(SWEEP_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["params"] = _mapped(
        frame["params"], lambda p: json.loads(p) if isinstance(p, str) else dict(p)
    )
    return frame.sort_values("at").reset_index(drop=True)


def sql_identifier(name: str) -> str:
    """A quoted SQL identifier for DuckDB (names from :data:`graphinv.schema.TABLES` and
    typed headers, never from data; quoting keeps ``count`` and ``hour`` literal).

    Examples
    --------
    >>> sql_identifier('id:ID(Account)'), sql_identifier('a"b')
    ('"id:ID(Account)"', '"a""b"')
    """
    return '"' + name.replace('"', '""') + '"'


def shorten(statement: str, width: int = 240) -> str:
    """A statement on one line, cut to ``width`` characters for an error message.

    Examples
    --------
    >>> shorten("SELECT *   FROM rings   WHERE sweep_id = $sweep_id", width=30)
    'SELECT * FROM rings WHERE […]'
    """
    return textwrap.shorten(statement, width=width, placeholder=" […]")


def breakdown_rows(contributions: pd.DataFrame) -> list[tuple[str, str]]:
    """``(ring_id, JSON text)`` per ring, by ring id: each ring's breakdown rows in their
    order, as JSON records of :data:`BREAKDOWN_COLUMNS` (missing numbers as null).

    The frame is turned into records once, not once per ring (thousands of rings).

    Examples
    --------
    >>> frame = pd.DataFrame({"ring_id": ["r2", "r1", "r2"], "feature": ["a", "b", "c"],
    ...                       "group": "g", "value": [1.0, float("nan"), 2.0],
    ...                       "baseline": 0.5, "suspicion": 0.1, "weight": 1.0,
    ...                       "contribution": 0.1, "text": "t"})
    >>> [(ring, len(json.loads(text))) for ring, text in breakdown_rows(frame)]
    [('r1', 1), ('r2', 2)]
    """
    keyed = contributions.loc[contributions["ring_id"].notna()]
    columns = keyed[list(BREAKDOWN_COLUMNS)].to_dict("list")
    by_ring: dict[Any, list[dict[str, Any]]] = {}
    for row, ring_id in enumerate(keyed["ring_id"]):
        by_ring.setdefault(ring_id, []).append(
            {c: optional(columns[c][row]) for c in BREAKDOWN_COLUMNS})
    return [(str(ring_id), json.dumps(by_ring[ring_id], default=_json_number))
            for ring_id in sorted(by_ring)]


def _json_number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def params_json(params: Mapping[str, Any]) -> str:
    """Sweep parameters as canonical JSON (sorted keys; non-JSON values as text)."""
    return json.dumps(dict(params), sort_keys=True, default=str)


def optional(value: Any) -> Any:
    """None for NaN/NA, so a missing score is stored as missing rather than as NaN."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _require(name: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise StoreError(f"{name} frame lacks column(s) {missing}")


def _check_statuses(what: str, values: pd.Series) -> None:
    unknown = sorted({str(v) for v in values if optional(v) is not None} - set(STATUSES))
    if unknown:
        raise StoreError(f"{what} {unknown} not among {list(STATUSES)}")


def _mapped(values: pd.Series, function: Callable[[Any], Any]) -> pd.Series:
    """``function`` of each value, as Python objects (dicts, lists, None) on the same index."""
    return pd.Series([function(v) for v in values], index=values.index, dtype=object)


def _texts(values: pd.Series) -> pd.Series:
    # object dtype: pandas' string dtype would turn None back into NaN.
    return _mapped(values, optional)


def _id_list(value: Any) -> list[str]:
    """Predecessor ids as a list of text (empty for a new ring or a missing value)."""
    if isinstance(value, str):
        return [value]
    if value is None or (not hasattr(value, "__iter__") and optional(value) is None):
        return []
    return [str(v) for v in value]


def _features(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value) if value else {}
    if isinstance(value, Mapping):
        return {str(k): optional(v) for k, v in value.items()}
    if optional(value) is None:
        return {}
    raise StoreError(f"features must be a dict or JSON text, not {type(value).__name__}")


def progress_bar(enabled: bool) -> Progress:
    """A rich progress display for long loads (a no-op when disabled)."""
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
