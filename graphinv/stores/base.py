"""The store interface every backend implements, and the records and rules they share.

Two backends sit behind :class:`Store`: the embedded DuckDB file (default, no server) and
Neo4j over Bolt (what investigators explore). Compute never talks to a backend directly;
it reads frames out (:meth:`Store.read_platform`) and writes results back
(:meth:`Store.write_sweep`).

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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from graphinv.errors import InputError, StoreError
from graphinv.schema import STATUSES, TABLES, Platform

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
    "kind",
    "shared_members",
    "member_jaccard",
    "shared_identifiers",
    "infra_overlap",
)
MEMBER_COLUMNS = ("ring_id", "account_id")
CAMPAIGN_COLUMNS = ("campaign_id", "n_rings", "size")
SWEEP_COLUMNS = ("sweep_id", "at", "params")
LINEAGE_READ_COLUMNS = ("sweep_id", "previous_sweep_id", *LINEAGE_COLUMNS)

# Feature names become Neo4j property names (``f_<name>``) and Browser captions.
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


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


@runtime_checkable
class Store(Protocol):
    """A place that holds a platform's tables and the rings found in it."""

    kind: str

    def load(self, platform: Platform, *, progress: bool = True) -> LoadStats:
        """MERGE validated frames in (see the module's merge rule); idempotent."""
        ...

    def read_platform(self, *, include_labels: bool = False) -> Platform:
        """Every table back out, with the columns and dtypes of ``TABLES``."""
        ...

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
        """
        ...

    def read_sweeps(self) -> pd.DataFrame:
        """Sweeps (``sweep_id, at, params``) oldest first; ``params`` as dicts."""
        ...

    def read_rings(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """Rings of one sweep (the latest by default), best rank first.

        Columns: ``sweep_id``, :data:`RING_COLUMNS`, :data:`RING_LINEAGE_COLUMNS`.
        """
        ...

    def read_ring_members(self, ring_id: str, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``ring_id, account_id`` of one ring; RingNotFound when the sweep lacks it."""
        ...

    def read_lineage(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``CONTINUES`` edges from a sweep's rings (the latest by default) to the sweep before.

        Columns :data:`LINEAGE_READ_COLUMNS`: ``sweep_id``, ``previous_sweep_id``, then
        :data:`LINEAGE_COLUMNS`; ordered by ``ring_id``, ``previous_ring_id``.
        """
        ...

    def read_members(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``ring_id, account_id`` of every ring of a sweep (the latest by default)."""
        ...

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read query (SQL for embedded, Cypher for Neo4j) into a frame."""
        ...

    def default_quarantine_dir(self) -> Path:
        """Where a load puts refused rows unless told otherwise."""
        ...

    def close(self) -> None: ...


# -- helpers the backends share ---------------------------------------------------------


def check_unique_keys(platform: Platform) -> None:
    """Refuse frames whose keys repeat: loads MERGE on keys, so a repeat would be ambiguous.

    :func:`graphinv.schema.validate` already guarantees this for loaded folders; frames
    built in code (a generator, a notebook) get the same guarantee here.
    """
    for name, frame in platform.tables().items():
        key = list(TABLES[name].key)
        repeats = int(frame.duplicated(subset=key).sum())
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
    rings["features"] = [_features(f) for f in rings["features"]]
    for features in rings["features"]:
        bad = [k for k in features if not FEATURE_NAME.fullmatch(k)]
        if bad:
            raise StoreError(f"feature names {bad} are not identifiers ([A-Za-z_][A-Za-z0-9_]*)")
    _check_statuses("rings status", rings["status"])
    rings["flagged"] = rings["flagged"].astype("boolean")
    rings["predecessors"] = [_id_list(p) for p in rings["predecessors"]]
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
        A column is missing, an edge repeats, a kind is not a lineage status, or edges
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
    _check_statuses("lineage kind", edges["kind"])
    for column in ("shared_members", "shared_identifiers"):
        edges[column] = pd.to_numeric(edges[column]).astype("Int64")
    for column in ("member_jaccard", "infra_overlap"):
        edges[column] = pd.to_numeric(edges[column]).astype("float64")
    return edges.reset_index(drop=True)


def rings_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame :meth:`Store.read_rings` returns, from backend rows (``features`` as JSON).

    Lineage columns a backend lacks (rings written before they existed) come back empty.
    """
    frame = pd.DataFrame(records).reindex(
        columns=["sweep_id", *RING_COLUMNS, *RING_LINEAGE_COLUMNS]
    )
    frame["features"] = [_features(f) for f in frame["features"]]
    for column in ("score", "density"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    for column in ("size", "rank"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    frame["campaign_id"] = frame["campaign_id"].astype("str")
    frame["flagged"] = frame["flagged"].astype("boolean")
    frame["predecessors"] = [_id_list(p) for p in frame["predecessors"]]
    for column in ("status", "lineage_evidence"):
        frame[column] = _texts(frame[column])
    return frame.sort_values(["rank", "ring_id"], na_position="last").reset_index(drop=True)


def lineage_read_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame :meth:`Store.read_lineage` returns, ordered by ring then previous ring."""
    frame = pd.DataFrame(records).reindex(columns=list(LINEAGE_READ_COLUMNS))
    for column in ("shared_members", "shared_identifiers"):
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    for column in ("member_jaccard", "infra_overlap"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame.sort_values(["ring_id", "previous_ring_id"]).reset_index(drop=True)


def sweeps_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame :meth:`Store.read_sweeps` returns (``at`` tz-aware UTC, ``params`` dicts)."""
    frame = pd.DataFrame(records, columns=list(SWEEP_COLUMNS))
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["params"] = [json.loads(p) if isinstance(p, str) else dict(p) for p in frame["params"]]
    return frame.sort_values("at").reset_index(drop=True)


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


def _texts(values: pd.Series) -> pd.Series:
    # object dtype: pandas' string dtype would turn None back into NaN.
    return pd.Series([optional(v) for v in values], index=values.index, dtype=object)


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
