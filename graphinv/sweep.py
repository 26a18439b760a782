"""One sweep: load the platform from a store, find rings, score them, keep their ids
stable across sweeps, write the result back and report.

Banned and suspended accounts stay in the projection as structure (a banned member's card
is often the one the survivors share) but are never ring members: detection lists live
accounts only (``DetectionOptions.inactive_statuses``, ``docs/detection.md``). Lineage
compares rings over live links (:func:`live_platform`), and the store keeps every link,
so a respawn can still be traced to the ring it replaces (``docs/lineage.md``).

Alerts are grouped by campaign: rings of one operator (sharing cards, templates or a
proxy ASN) raise one alert, not one per ring.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from graphinv.stores import open_store
>>> from graphinv.synth import generate
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = open_store(path=Path(tmp) / "g.duckdb", use_env=False)
...     _ = store.load(generate(preset="small", seed=3, n_accounts=1_000), progress=False)
...     report = run_sweep(store, progress=False)
...     store.close()
>>> int(report.rings["rank"].min())
1
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import pandas as pd
from rich.console import Console

from graphinv.config import Settings
from graphinv.detect.communities import Detection, detect_rings
from graphinv.detect.projection import project
from graphinv.detect.workers import Forked
from graphinv.lineage import Lineage, match_rings, ring_identifiers
from graphinv.schema import Platform
from graphinv.score.features import FEATURES
from graphinv.score.scoring import Measure, score_rings
from graphinv.stores.base import Store, SweepRecord
from graphinv.stores.codes import is_in

# Exit status of `graphinv sweep` when a ring that was not there before (new or
# respawned) scores at or above the alert threshold: pipelines page on it.
EXIT_ALERT = 10

# Detection elsewhere (``graphinv.engines``): platform and settings in, the projection's
# stats and the rings out; it carries a ``name`` for the stage timer.
Detector = Callable[[Platform, Settings], tuple[dict[str, Any], Detection]]


@dataclass(frozen=True)
class SweepReport:
    """What a sweep found, ready for a terminal (``table``) or a pipeline (``to_dict``).

    Attributes
    ----------
    rings : DataFrame
        Every ring, best rank first: ``ring_id`` (stable across sweeps), ``rank``,
        ``score``, ``flagged``, ``size``, ``campaign_id``, ``status`` (lineage class),
        ``predecessors``, ``explanation``, and the feature values.
    alerts : DataFrame
        New or respawned rings scoring at or above ``alert_threshold``.
    alert_campaigns : DataFrame
        The same alerts, one row per campaign (one operator): ``campaign_id``, ``rings``
        (ring ids, best score first), ``accounts``, ``top_score``.
    """

    sweep_id: str
    at: datetime
    store: str
    data_window: tuple[str | None, str | None]
    counts: dict[str, int]
    projection: dict[str, Any]
    detection: dict[str, Any]
    lineage: dict[str, int]
    rings: pd.DataFrame
    dissolved: pd.DataFrame
    alert_threshold: float
    seconds: dict[str, float]
    peak_memory_mb: float
    settings: dict[str, Any] = field(repr=False)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def alerts(self) -> pd.DataFrame:
        fresh = self.rings["status"].isin(["new", "respawned"])
        return self.rings[fresh & (self.rings["score"] >= self.alert_threshold)]

    @property
    def alert_campaigns(self) -> pd.DataFrame:
        alerts = self.alerts.sort_values(["score", "ring_id"], ascending=[False, True])
        grouped = alerts.groupby("campaign_id", sort=False).agg(
            rings=("ring_id", list), accounts=("size", "sum"), top_score=("score", "max")
        )
        return grouped.reset_index()

    @property
    def exit_code(self) -> int:
        """0, or ``EXIT_ALERT`` when a new or respawned ring scores at the alert threshold."""
        return EXIT_ALERT if len(self.alerts) else 0

    def to_dict(self, *, top: int | None = None) -> dict[str, Any]:
        """JSON-ready report; ``top`` limits the rings listed (all by default)."""
        columns = [
            "ring_id", "rank", "score", "flagged", "size", "campaign_id", "status",
            "predecessors", "lineage_evidence", "explanation",
        ]
        rings = self.rings[columns].head(top) if top else self.rings[columns]
        return json.loads(
            json.dumps(
                {
                    "sweep_id": self.sweep_id,
                    "at": self.at.isoformat(),
                    "store": self.store,
                    "data_window": list(self.data_window),
                    "counts": self.counts,
                    "projection": self.projection,
                    "detection": self.detection,
                    "lineage": self.lineage,
                    "alert_threshold": self.alert_threshold,
                    "alerts": self.alerts["ring_id"].tolist(),
                    "alert_campaigns": self.alert_campaigns.to_dict("records"),
                    "exit_code": self.exit_code,
                    "seconds": self.seconds,
                    "cpu_seconds": self.cpu_seconds,
                    "peak_memory_mb": self.peak_memory_mb,
                    "rings": rings.to_dict("records"),
                    "dissolved": self.dissolved.to_dict("records"),
                    "settings": self.settings,
                },
                default=_json_default,
            )
        )


def run_sweep(
    store: Store,
    *,
    settings: Settings | None = None,
    alert_threshold: float | None = None,
    at: datetime | None = None,
    progress: bool = True,
    detector: Detector | None = None,
    measure: Measure | None = None,
) -> SweepReport:
    """Detect, score and record rings over everything the store holds.

    Parameters
    ----------
    store
        Embedded or Neo4j store holding a loaded platform.
    settings
        Options of every stage (defaults when None).
    alert_threshold
        Score at which a new or respawned ring makes the sweep exit with ``EXIT_ALERT``;
        defaults to the scoring threshold.
    at
        Time recorded for the sweep (now, UTC, by default).
    progress
        Show a spinner per stage on the terminal.
    detector
        Runs projection and detection instead of this process (e.g.
        :class:`graphinv.engines.spark.SparkDetector`); scoring, lineage and writing
        are the same.
    measure
        Measures the rings' features instead of this process (e.g.
        ``SparkDetector.features``, Spark aggregations); the score is the same.

    Raises
    ------
    StoreError
        The store's last load did not finish (rerun it first), or another load or sweep
        kept the store's write lock past its ``lock_wait``.
    """
    settings = settings or Settings()
    timer = _StageTimer(progress)
    # One sweep at a time per store (across processes): each sees the one before it, so
    # sweep ids and lineage follow the order in which they ran.
    with store.exclusive("sweep"):
        store.require_finished_load()
        return _locked_sweep(
            store, settings, alert_threshold, at or datetime.now(UTC), timer, detector,
            measure,
        )


def _locked_sweep(
    store: Store,
    settings: Settings,
    alert_threshold: float | None,
    at: datetime,
    timer: _StageTimer,
    detector: Detector | None = None,
    measure: Measure | None = None,
) -> SweepReport:
    with timer("reading the platform"):
        platform = store.read_platform()
        # Computing takes long: the embedded store lets readers open its file meanwhile.
        store.release()
    if detector is None:
        with timer("projection"):
            projection = project(platform, options=settings.projection)
        with timer("leiden"):
            detection = detect_rings(projection, platform=platform, options=settings.detection)
        projection_stats = projection.stats.to_dict()
        # Scoring is the sweep's peak: the projection's matrices must not be alive for it.
        del projection
    else:
        with timer(f"detection ({getattr(detector, 'name', 'engine')})"):
            projection_stats, detection = detector(platform, settings)
    with timer("lineage"):
        # Lineage needs the rings, not their scores: a forked child matches them with the
        # last sweep's while this process scores. The store is read here, never across
        # the fork (a connection is not shared between processes).
        previous = store.read_sweeps()
        previous_members = _previous_members(store, previous)
        store.release()
        matching = Forked(_lineage, previous_members, detection.members, platform, settings)
    with timer("scoring"):
        scores = score_rings(detection.members, platform, options=settings.scoring,
                             measure=measure)
    with timer("lineage"):
        lineage, inactive_accounts = matching.result()
    sweep_id = f"S{len(previous) + 1:04d}-{at:%Y%m%dT%H%M%S}"
    rings, members = _stable_results(detection, scores.rings, lineage)
    with timer("writing results"):
        store.write_sweep(
            SweepRecord(
                sweep_id=sweep_id,
                at=at,
                params={
                    "settings": settings.to_dict(),
                    "settings_source": settings.source,
                    "code_version": version("graphinv"),
                    "data_window": list(_data_window(platform)),
                },
            ),
            rings=rings,
            members=members,
            campaigns=detection.campaigns,
            lineage=lineage.edges,
            previous_sweep_id=str(previous["sweep_id"].iloc[-1]) if len(previous) else None,
        )
        # Kept with the sweep so a case on one ring never re-scores the whole platform.
        stable_ids = lineage.rings.set_index("new_ring_key")["ring_id"]
        store.write_breakdown(
            sweep_id, scores.contributions.assign(
                ring_id=scores.contributions["ring_id"].map(stable_ids))
        )
    return SweepReport(
        sweep_id=sweep_id,
        at=at,
        store=store.backend,
        data_window=_data_window(platform),
        counts={
            "accounts": len(platform.accounts),
            "inactive_accounts": inactive_accounts,
            "links": len(platform.links),
            "usage_rows": len(platform.usage),
            "rings": len(rings),
            "accounts_in_rings": len(members),
            "campaigns": len(detection.campaigns),
            "flagged_rings": int(rings["flagged"].sum()),
        },
        projection=projection_stats,
        detection={"resolution": settings.detection.resolution,
                   "min_ring_size": settings.detection.min_ring_size,
                   "seed": settings.detection.seed,
                   **detection.stats.to_dict()},
        lineage=lineage.summary(),
        rings=rings,
        dissolved=lineage.dissolved,
        alert_threshold=settings.scoring.threshold if alert_threshold is None
        else alert_threshold,
        seconds=timer.seconds,
        cpu_seconds=timer.cpu_seconds,
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        settings=settings.to_dict(),
    )


def live_platform(platform: Platform, inactive_statuses: Iterable[str]) -> Platform:
    """The platform without accounts whose ``status`` is one of ``inactive_statuses``.

    Their links and usage go too; identifier tables (IPs, cards, templates) and labels
    stay. Accounts without a status count as live.

    Examples
    --------
    >>> import pandas as pd
    >>> accounts = pd.DataFrame({"account_id": ["a", "b", "c"],
    ...                          "status": ["active", "banned", None]})
    >>> links = pd.DataFrame({"account_id": ["a", "b"], "kind": "ip", "value": "10.0.0.1"})
    >>> usage = pd.DataFrame({"account_id": pd.Series(dtype=str)})
    >>> live = live_platform(Platform(accounts, links, usage), ["banned"])
    >>> live.accounts["account_id"].tolist(), live.links["account_id"].tolist()
    (['a', 'c'], ['a'])
    """
    accounts = platform.accounts
    if "status" not in accounts.columns:
        return platform
    gone = is_in(accounts["status"], inactive_statuses)
    if not gone.any():
        return platform
    kept = accounts.loc[~gone].reset_index(drop=True)
    ids = kept["account_id"]
    return dataclasses.replace(
        platform,
        accounts=kept,
        links=platform.links[is_in(platform.links["account_id"], ids)].reset_index(drop=True),
        usage=platform.usage[is_in(platform.usage["account_id"], ids)].reset_index(drop=True),
    )


@dataclass(frozen=True)
class _LiveLinks:
    links: pd.DataFrame
    inactive_accounts: int


def _live_links(platform: Platform, inactive_statuses: Iterable[str]) -> _LiveLinks:
    """The links of live accounts (as in :func:`live_platform`) and how many are not."""
    accounts = platform.accounts
    if "status" not in accounts.columns:
        return _LiveLinks(platform.links, 0)
    gone = is_in(accounts["status"], inactive_statuses)
    if not gone.any():
        return _LiveLinks(platform.links, 0)
    kept = is_in(platform.links["account_id"], accounts.loc[~gone, "account_id"])
    return _LiveLinks(platform.links[kept].reset_index(drop=True), int(gone.sum()))


def _previous_members(store: Store, previous: pd.DataFrame) -> pd.DataFrame | None:
    """The members of the last sweep's rings (None before the first sweep)."""
    if not len(previous):
        return None
    return store.read_members(sweep_id=str(previous["sweep_id"].iloc[-1]))


def _lineage(
    previous_members: pd.DataFrame | None,
    members: pd.DataFrame,
    platform: Platform,
    settings: Settings,
) -> tuple[Lineage, int]:
    """Lineage of this sweep's rings, and the number of inactive accounts."""
    kinds = settings.lineage.infra_kinds
    previous_identifiers: pd.DataFrame | None = None
    if previous_members is not None:
        # All links: the store keeps every link ever loaded, so a banned ring's cards and
        # proxies are still there, and its members' links are its history.
        previous_identifiers = ring_identifiers(previous_members, platform.links, kinds=kinds)
    # Live links only: a respawn's reused proxies were used by the banned accounts it
    # replaces, and counted as outsiders those would make every reused identifier a hub.
    live = _live_links(platform, settings.lineage.inactive_statuses)
    current_identifiers = ring_identifiers(members, live.links, kinds=kinds)
    lineage = match_rings(
        previous_members=previous_members,
        previous_identifiers=previous_identifiers,
        current_members=members,
        current_identifiers=current_identifiers,
        options=settings.lineage,
    )
    return lineage, live.inactive_accounts


def _stable_results(
    detection: Any, scored: pd.DataFrame, lineage: Lineage
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rings and members under their stable ids, with lineage, campaign and score."""
    stable = lineage.rings.set_index("new_ring_key")
    rings = scored.merge(
        detection.rings[["ring_id", "campaign_id", "density"]], on="ring_id", how="left"
    )
    rings["status"] = rings["ring_id"].map(stable["status"])
    rings["predecessors"] = rings["ring_id"].map(stable["predecessors"]).map(list)
    rings["lineage_evidence"] = rings["ring_id"].map(stable["evidence"])
    rings["ring_id"] = rings["ring_id"].map(stable["ring_id"])
    feature_names = [spec.name for spec in FEATURES]
    # pandas-stubs takes no list of dicts as a column; pandas stores one dict per row.
    rings["features"] = rings[feature_names].to_dict("records")  # type: ignore[assignment]
    members = detection.members.assign(
        ring_id=detection.members["ring_id"].map(stable["ring_id"])
    )
    return rings.reset_index(drop=True), members


def _data_window(platform: Platform) -> tuple[str | None, str | None]:
    hours = platform.usage["hour"] if len(platform.usage) else platform.links["last_seen"]
    if not len(hours):
        return (None, None)
    return (hours.min().isoformat(), hours.max().isoformat())


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class _StageTimer:
    """Times each stage and, on a terminal, shows which one is running."""

    def __init__(self, progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        # CPU seconds of this process and its finished children (Leiden runs in one): on a
        # shared machine wall time says how busy the machine was, CPU time what the
        # stage cost.
        self.cpu_seconds: dict[str, float] = {}
        self._console = Console(stderr=True) if progress else None

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), _cpu()
        if self._console is None:
            yield
        else:
            with self._console.status(f"{stage}…"):
                yield
        # A stage entered twice (lineage: started before scoring, collected after) adds up.
        self.seconds[stage] = round(self.seconds.get(stage, 0) + time.perf_counter() - start, 3)
        self.cpu_seconds[stage] = round(self.cpu_seconds.get(stage, 0) + _cpu() - cpu, 3)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

