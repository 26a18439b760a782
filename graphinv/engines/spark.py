"""The sweep's detection on Apache Spark: the same rings as one machine, distributed.

:func:`detect_on_spark` reads an input folder's Parquet files (the data contract of
``docs/input-contract.md``; any Spark-readable location, e.g. ``s3a://…``) and finds rings
with the single-machine algorithm of :mod:`graphinv.detect`, step by step, so that a
seed gives the same rings (``tests/test_spark.py`` checks it on the medium preset):

=====================================  ==================================================
Spark step (this module)               mirrors (``graphinv.detect``)
=====================================  ==================================================
:func:`_account_index`                 ``projection._account_index`` (sorted ids → rows)
:func:`_kept_links`                    ``project``: kinds of weight 0 dropped, ring-evidence
                                       kinds flagged
:func:`_identifier_terms`              ``projection._identifier_matrix`` +
                                       ``_token_matrix`` (hub cap, degree 2 … ``hub_cap``)
:func:`_rarity_weights`                ``projection._surprisal_rarity`` / Adamic–Adar,
                                       computed with numpy on the driver per (kind, degree)
:func:`_common_hubs`                   ``common`` in ``project`` (hubs most of the
                                       platform holds: no co-activity or arrival tokens)
:func:`_hub_arrival_terms`             ``projection._hub_arrival``
:func:`_co_activity_terms`             ``project``'s co-activity block + ``_token_matrix``
:func:`_lockstep_term`                 ``projection._lockstep``, ``_minhash``,
                                       ``_lsh_candidates``, ``_pairs_in_runs``
:func:`_edges`                         ``project``: ``other + ring_evidence + arrival +
                                       co + co_evidence + lock``, ``_tidy``
:func:`_components`                    ``connected_components`` in ``detect_rings``
:func:`_leiden_memberships`            ``communities._leiden`` (complete components) and
                                       ``_igraph_all`` / ``_leidenalg`` per component
:func:`_finish`                        ``detect_rings`` after ``_leiden``: merge pass,
                                       evidence components, inactive accounts, numbering,
                                       ring table, campaigns (graphinv's own functions)
=====================================  ==================================================

Exact equality needs the same floating-point sums. A pair's weight is a sum over the
tokens (identifiers, co-activity windows) it shares, and scipy adds them in descending
token-code order; token codes follow the order in which tokens first appear in the links
table as the store returns it (ordered by ``account_id, kind, value``): the first row of
a token is that of its smallest account id. Each pair's terms are therefore ranked by
``(first account, kind, value)`` and added from the last to the first, and the five
matrices are added in ``project``'s order. Logarithms come from numpy on the driver
(a small table per kind and degree), never from the JVM, whose ``log`` may differ in the
last bit.

Leiden runs per connected component inside ``applyInPandas``, with graphinv's own call
and seed, on the component's nodes in row order and its edges in CSR order, as on one
machine. Components with more than ``giant_component_edges`` edges would need one
executor to hold them whole; they run on the driver instead, and are listed in
:attr:`SparkDetection.giant_components`.

Not distributed (yet): the merge pass, the evidence-component pass, ring numbering,
the ring table and campaigns run on the driver over the collected edge lists (scipy CSR,
as on one machine). Features and baselines are Spark aggregations
(:meth:`SparkDetector.features`, :mod:`graphinv.engines.spark_features`); the score
itself, lineage and writing run in the sweep, on the store's platform.
``docs/scale.md`` has the measured sizes and the plan beyond them.

Examples
--------
>>> SparkOptions().master
'local[2]'
>>> SparkOptions(master="spark://head:7077").shuffle_partitions
8
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphinv.config import Settings
from graphinv.detect import communities
from graphinv.detect.communities import Detection, DetectionOptions
from graphinv.detect.projection import Projection, ProjectionOptions, ProjectionStats
from graphinv.errors import GraphinvError, InputError, MissingExtra
from graphinv.schema import Platform
from graphinv.score.registry import FeatureOptions, RingFeatures

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "INSTALL_HINT",
    "SparkDetection",
    "SparkDetector",
    "SparkOptions",
    "detect_on_spark",
    "spark_session",
]

INSTALL_HINT = "pip install 'graphinv[spark]'  (pyspark; needs Java 17 or 21)"

_LOG = logging.getLogger(__name__)
_NS_PER_HOUR = 3_600_000_000_000
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)
_TABLES = ("accounts", "links", "usage")


@dataclass(frozen=True)
class SparkOptions:
    """Where and how Spark runs.

    Parameters
    ----------
    master : str
        Spark master URL: ``local[N]`` (one machine, N cores), ``spark://host:7077``,
        ``yarn``, ``k8s://…``. Default ``local[2]``; the CLI takes ``--master`` or
        ``SPARK_MASTER``.
    shuffle_partitions : int
        ``spark.sql.shuffle.partitions``. Default ``8`` (one machine); on a cluster about
        two to three per core (``docs/scale.md``).
    driver_memory : str
        ``spark.driver.memory`` when this process starts the JVM (local mode). The driver
        collects the projection's edges for the passes after Leiden. Default ``"4g"``.
    giant_component_edges : int
        Components with more edges run Leiden on the driver, not in one executor task,
        and are reported. Default ``2_000_000``.
    single_task_edges : int
        Connected components: once the edges (reduced to stars per partition) are this few,
        one task labels them. Default ``20_000_000`` (about 1 GB in that task).
    conf : dict
        Any other Spark settings, passed through.
    """

    master: str = "local[2]"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    giant_component_edges: int = 2_000_000
    single_task_edges: int = 20_000_000
    conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.master:
            raise GraphinvError("SparkOptions.master must name a Spark master, e.g. local[2]")
        if self.shuffle_partitions < 1:
            raise GraphinvError(
                f"SparkOptions.shuffle_partitions must be ≥ 1, got {self.shuffle_partitions}"
            )
        if self.giant_component_edges < 1:
            raise GraphinvError(
                f"SparkOptions.giant_component_edges must be ≥ 1, "
                f"got {self.giant_component_edges}"
            )


@dataclass(frozen=True)
class SparkDetection:
    """What :func:`detect_on_spark` found.

    Attributes
    ----------
    projection : Projection
        The projection, collected on the driver (the same matrices as
        :func:`graphinv.detect.projection.project`).
    detection : Detection
        Rings and campaigns, as :func:`graphinv.detect.communities.detect_rings` gives them.
    giant_components : list of dict
        ``{"component", "accounts", "edges"}`` of every component whose Leiden ran on the
        driver because it had more than ``giant_component_edges`` edges.
    seconds : dict
        Wall time per step.
    """

    projection: Projection
    detection: Detection
    giant_components: list[dict[str, int]]
    seconds: dict[str, float]


def _pyspark():
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise MissingExtra(
            f"the Spark engine needs pyspark, which is not installed: {INSTALL_HINT}"
        ) from error
    return SparkSession


def spark_session(options: SparkOptions | None = None) -> SparkSession:
    """A Spark session for graphinv (started, or the running one).

    Python workers run this interpreter (so they import the same graphinv, igraph and
    leidenalg); on a cluster, install ``graphinv[spark]`` on the executors too.

    Raises
    ------
    MissingExtra
        pyspark is not installed (the message has the install command).
    """
    options = options or SparkOptions()
    session_class = _pyspark()
    # Local mode: workers are forked from this environment; on a cluster the executors'
    # own interpreter must be named by the cluster's configuration instead.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    builder = (
        session_class.builder.master(options.master)
        .appName("graphinv-sweep")
        .config("spark.sql.shuffle.partitions", str(options.shuffle_partitions))
        .config("spark.driver.memory", options.driver_memory)
        # A JVM thread that runs out of heap dies alone and leaves Python waiting on its
        # socket for ever; exiting turns that into an error at once.
        .config("spark.driver.extraJavaOptions", "-XX:+ExitOnOutOfMemoryError")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
    )
    for key, value in options.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def detect_on_spark(
    source: str | Path,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    options: SparkOptions | None = None,
) -> SparkDetection:
    """Rings of the platform in ``source`` (a folder of Parquet tables), found on Spark.

    Reads ``accounts``, ``links``, ``usage`` and, for campaigns, ``ips``; never ``labels``.

    Parameters
    ----------
    source
        Folder (local path or any URI Spark reads) with ``accounts.parquet``,
        ``links.parquet`` and ``usage.parquet`` (files or Parquet directories).
    spark
        From :func:`spark_session`.
    settings
        ``settings.projection`` and ``settings.detection`` are used, as in a sweep.
    options
        Only ``giant_component_edges`` is read here.

    Raises
    ------
    InputError
        A required table is missing or is not Parquet.
    """
    settings = settings or Settings()
    options = options or SparkOptions()
    popt, dopt = settings.projection, settings.detection
    clock = _Clock()
    tables = _read(spark, source)
    with clock("account index"):
        # Checkpointed, not cached: a cached frame prints its whole plan inside every plan
        # that reads it, and these three are read by all the later ones. Cached, the plan
        # of the Leiden step reached 26 MB on 1,500 accounts and the driver ran out of heap.
        index = _account_index(tables).localCheckpoint()
        n = index.count()
    links, kinds = _kept_links(tables["links"], index, popt)
    links = links.localCheckpoint()
    with clock("identifier terms"):
        terms, ring_identifiers, ident_stats = _identifier_terms(links, kinds, popt)
    common = _common_hubs(links, n, popt)
    if popt.hub_arrival_window:
        with clock("hub arrivals"):
            arrival_terms, arrival_identifiers = _hub_arrival_terms(
                links, tables["accounts"], common, popt
            )
        terms += arrival_terms
        ring_identifiers = _after(ring_identifiers, arrival_identifiers)
    co_tokens = 0
    if popt.co_activity_window and popt.co_activity_weight > 0:
        with clock("co-activity terms"):
            co_terms, co_tokens = _co_activity_terms(links, common, popt)
        terms += co_terms
    lock_stats = (0, 0, 0)
    if popt.lockstep_weight > 0:
        with clock("lockstep"):
            lock, lock_stats = _lockstep_term(tables["usage"], index, popt)
        if lock is not None:
            terms.append(lock)
    with clock("edges"):
        edges = _edges(spark, terms).localCheckpoint()
        n_edges = edges.count()
    with clock("components"):
        strong = edges.where(edges.weight >= dopt.min_edge_weight) if dopt.min_edge_weight > 0 \
            else edges
        strong = strong.select("i", "j", "weight").cache()
        component = _components(
            strong, single_task_edges=options.single_task_edges
        ).cache()
    with clock("leiden"):
        memberships, giants = _leiden_memberships(strong, component, dopt, options)
    with clock("collect"):
        account_ids = _collect_ids(index, n)
        weights, evidence = _collect_matrices(edges, n)
        incidence = _collect_incidence(ring_identifiers, n)
        comp = _component_numbers(component, n)
        platform = _platform_for_campaigns(tables, spark, source, dopt)
    stats = ProjectionStats(
        accounts=n,
        identifiers=ident_stats[0],
        hubs=ident_stats[1],
        hub_links=ident_stats[2],
        co_activity_tokens=co_tokens,
        lockstep_accounts=lock_stats[0],
        lockstep_candidates=lock_stats[1],
        lockstep_pairs=lock_stats[2],
        edges=n_edges,
    )
    projection = Projection(account_ids, weights, stats, evidence, incidence)
    with clock("rings and campaigns"):
        detection = _finish(projection, comp, memberships, platform, dopt)
    for frame in (index, links, edges, strong):
        frame.unpersist()
    return SparkDetection(projection, detection, giants, clock.seconds)


class SparkDetector:
    """Detection for :func:`graphinv.sweep.run_sweep` (its ``detector``), on Spark.

    The store still holds the platform (scoring, lineage and review read it there); Spark
    reads the same platform from ``source``. Account and link counts must match the
    store's, so a sweep never records rings of another export.
    """

    name = "spark"

    def __init__(self, source: str | Path, *, options: SparkOptions | None = None) -> None:
        self.source = source
        self.options = options or SparkOptions()
        self.last: SparkDetection | None = None

    def __call__(self, platform: Platform, settings: Settings) -> tuple[dict[str, Any], Detection]:
        spark = spark_session(self.options)
        tables = _read(spark, self.source)
        found = {name: tables[name].count() for name in ("accounts", "links")}
        held = {"accounts": len(platform.accounts), "links": len(platform.links)}
        if found != held:
            raise InputError(
                f"{self.source} holds {found['accounts']:,} accounts and {found['links']:,} "
                f"links, the store {held['accounts']:,} and {held['links']:,}: load this "
                "folder into the store first (graphinv load), then sweep with --engine spark"
            )
        self.last = detect_on_spark(self.source, spark=spark, settings=settings,
                                    options=self.options)
        stats = self.last.projection.stats.to_dict()
        stats["engine"] = {
            "name": "spark",
            "master": spark.sparkContext.master,
            "spark_version": spark.version,
            "giant_components": self.last.giant_components,
            "seconds": self.last.seconds,
        }
        return stats, self.last.detection

    def features(
        self, members: pd.DataFrame, platform: Platform, *, options: FeatureOptions
    ) -> RingFeatures:
        """The rings' features and platform baselines as Spark aggregations over
        ``source`` (:func:`graphinv.engines.spark_features.spark_ring_features`): the
        sweep's ``measure``. ``platform`` (the store's) is not read: detection checked
        that ``source`` holds the same accounts and links."""
        from graphinv.engines.spark_features import spark_ring_features

        del platform  # the same platform, read from ``source`` on Spark
        return spark_ring_features(members, self.source, spark=spark_session(self.options),
                                   options=options)


# -- reading -------------------------------------------------------------------------------


def _read(spark: SparkSession, source: str | Path) -> dict[str, DataFrame]:
    root = str(source).rstrip("/")
    local = "://" not in root
    tables = {}
    for name in (*_TABLES, "ips"):
        path = f"{root}/{name}.parquet"
        if local and not Path(path).exists():
            if name == "ips":
                continue
            others = sorted(p.name for p in Path(root).glob(f"{name}.*")) if Path(root).is_dir() \
                else []
            raise InputError(
                f"{path}: missing; the Spark engine reads Parquet tables"
                + (f" (found {', '.join(others)}: convert to Parquet)" if others else "")
            )
        tables[name] = spark.read.parquet(path)
    return tables


# -- projection ----------------------------------------------------------------------------


def _ordered_index(frame: DataFrame, order: list[str], name: str) -> DataFrame:
    """``frame`` with a column ``name``: the row's position in ``order`` (0, 1, …).

    A global sort, then each partition's offset from the row counts of the partitions
    before it: no single-partition window.
    """
    from pyspark.sql import functions as F

    ranked = frame.orderBy(*order).withColumn("_part", F.spark_partition_id()).withColumn(
        "_mono", F.monotonically_increasing_id()
    ).cache()
    starts = ranked.groupBy("_part").agg(F.count("*").alias("_n"), F.min("_mono").alias("_m0"))
    rows = sorted(starts.collect(), key=lambda r: r["_part"])
    offsets, total = [], 0
    for row in rows:
        offsets.append((row["_part"], total, row["_m0"]))
        total += row["_n"]
    spark = frame.sparkSession
    table = spark.createDataFrame(offsets, "_part int, _offset long, _m0 long")
    out = ranked.join(F.broadcast(table), "_part").withColumn(
        name, F.col("_offset") + F.col("_mono") - F.col("_m0")
    )
    return out.drop("_part", "_mono", "_offset", "_m0")


def _account_index(tables: dict[str, DataFrame]) -> DataFrame:
    """``account_id, idx``: every account of accounts, links and usage, ``idx`` in id order
    (mirrors ``projection._account_index``)."""
    ids = (
        tables["accounts"].select("account_id")
        .union(tables["links"].select("account_id"))
        .union(tables["usage"].select("account_id"))
        .distinct()
    )
    return _ordered_index(ids, ["account_id"], "idx")


def _kept_links(links: DataFrame, index: DataFrame, options: ProjectionOptions):
    """Links of kinds with a positive weight, with ``idx``, kind weight ``kw`` and the
    ring-evidence flag ``ev``; and every kind present (sorted), for the stats."""
    from pyspark.sql import functions as F

    kinds = sorted(str(r["kind"]) for r in links.select("kind").distinct().collect())
    spark = links.sparkSession
    table = spark.createDataFrame(
        [(k, options.kind_weight(k), k in options.ring_evidence_kinds) for k in kinds]
        or [("", 0.0, False)],
        "kind string, kw double, ev boolean",
    )
    kept = (
        links.select("account_id", "kind", "value", "first_seen")
        .join(F.broadcast(table), "kind")
        .where(F.col("kw") > 0)
        .join(index, "account_id")
    )
    return kept, kinds


def _rarity_weights(hist: pd.DataFrame, options: ProjectionOptions) -> pd.DataFrame:
    """Token weight per ``(kind, degree)``: kind weight × rarity factor.

    Mirrors ``projection._surprisal_rarity`` (``rarity="surprisal"``) and Adamic–Adar
    (``1 / log(1 + d)``) with the same numpy operations on a histogram of degrees: the tail
    of uses at degree ``d`` is the sum of ``degree × count`` over degrees ``≥ d``.
    """
    out = []
    ceiling = np.log(1.0 / options.rarity_reference)
    for kind, rows in hist.groupby("kind", sort=True):
        rows = rows.sort_values("degree")
        degree = rows["degree"].to_numpy(np.int64)
        count = rows["n"].to_numpy(np.int64)
        factor = 1.0 / np.log1p(np.maximum(degree, 1))
        if options.rarity == "surprisal" and kind in options.ring_evidence_kinds:
            uses = degree * count
            tail = np.cumsum(uses[::-1])[::-1]
            share = tail / max(int(uses.sum()), 1)
            surprise = np.minimum(1.0, np.log(1.0 / share) / ceiling)
            factor = np.maximum(factor, surprise)
        w = np.float64(options.kind_weight(str(kind))) * factor
        out.append(pd.DataFrame({"kind": kind, "degree": degree, "w": w}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        {"kind": pd.Series(dtype=str), "degree": pd.Series(dtype=np.int64),
         "w": pd.Series(dtype=float)}
    )


def _token_pairs(incidence: DataFrame, term_of: dict[bool, str]) -> list[DataFrame]:
    """Per pair ``i < j``, the sum of the weights of the tokens both hold, split by the
    evidence flag: ``B · diag(w) · Bᵀ`` of ``_token_matrix``, added in scipy's order.

    scipy's product ``B · diag(w)`` leaves each row's columns in descending order, and the
    next product adds them in that order: a pair's tokens are summed from the last token
    to the first, starting from ``0.0``.

    ``incidence`` has ``tok`` (the token's rank in first-appearance order), ``idx``, ``w``
    and ``ev``.
    """
    from pyspark.sql import functions as F

    a = incidence.select("tok", F.col("idx").alias("i"), "w", "ev")
    b = incidence.select("tok", F.col("idx").alias("j"))
    pairs = a.join(b, "tok").where(F.col("i") < F.col("j"))
    summed = pairs.groupBy("i", "j", "ev").agg(
        F.sort_array(F.collect_list(F.struct("tok", "w")), asc=False).alias("terms")
    ).select(
        "i", "j", "ev",
        F.aggregate("terms", F.lit(0.0).cast("double"), lambda acc, t: acc + t["w"]).alias("v"),
    )
    return [
        summed.where(F.col("ev") == flag).select("i", "j", F.lit(term).alias("term"), "v")
        for flag, term in term_of.items()
    ]


def _identifier_terms(links: DataFrame, kinds: list[str], options: ProjectionOptions):
    """Terms ``other`` and ``ring_evidence`` of ``projection._identifier_matrix``, the
    ring-identifier incidence, and the per-kind identifier / hub / hub-link counts."""
    from pyspark.sql import functions as F

    spark = links.sparkSession
    tokens = links.groupBy("kind", "value").agg(
        F.count("*").alias("degree"),
        F.min("account_id").alias("first_account"),
        F.first("ev").alias("ev"),
    ).cache()
    per_kind = {
        r["kind"]: r
        for r in tokens.groupBy("kind").agg(
            F.sum((F.col("degree") >= 2).cast("long")).alias("identifiers"),
            F.sum((F.col("degree") > options.hub_cap).cast("long")).alias("hubs"),
            F.sum(F.when(F.col("degree") > options.hub_cap, F.col("degree")).otherwise(0))
            .alias("hub_links"),
        ).collect()
    }
    stats = tuple(
        {k: int(per_kind[k][col]) if k in per_kind else 0 for k in kinds}
        for col in ("identifiers", "hubs", "hub_links")
    )
    hist = tokens.groupBy("kind", "degree").agg(F.count("*").alias("n")).toPandas()
    weights = spark.createDataFrame(_rarity_weights(hist, options))
    chosen = tokens.where((F.col("degree") >= 2) & (F.col("degree") <= options.hub_cap))
    ranked = _ordered_index(
        chosen.select("kind", "value", "degree", "first_account", "ev"),
        ["first_account", "kind", "value"], "tok",
    ).join(F.broadcast(weights), ["kind", "degree"])
    incidence = links.select("kind", "value", "idx").join(ranked, ["kind", "value"]).cache()
    terms = _token_pairs(incidence, {False: "other", True: "evidence"})
    ring_identifiers = incidence.where("ev").select("idx", "tok")
    tokens.unpersist()
    return terms, ring_identifiers, stats


def _common_hubs(links: DataFrame, n: int, options: ProjectionOptions) -> DataFrame:
    """``kind, value`` of the identifiers above ``hub_cap`` held by at least
    ``hub_max_share`` of the ``n`` accounts: defaults, which give no co-activity or arrival
    tokens (mirrors ``common`` in ``projection.project``)."""
    from pyspark.sql import functions as F

    # The same float as numpy's ``hub_max_share * n``.
    floor = options.hub_max_share * n
    return (
        links.groupBy("kind", "value")
        .agg(F.count("*").alias("degree"))
        .where((F.col("degree") > options.hub_cap) & (F.col("degree") >= F.lit(floor)))
        .select("kind", "value")
    )


def _hub_arrival_terms(
    links: DataFrame, accounts: DataFrame, common: DataFrame, options: ProjectionOptions
):
    """Term ``arrival`` of ``project`` (mirrors ``projection._hub_arrival``) and its
    accounts × tokens incidence ``idx, tok`` (all per-ring evidence).

    Links of ``hub_arrival_kinds`` to identifiers above ``hub_cap`` and not in ``common``
    (:func:`_common_hubs`), of accounts with a ``created_at`` at or after the epoch, give
    tokens ``(hub, grid, window of created_at)`` on two grids half a window apart. A token
    is kept when it is a burst (at least ``hub_arrival_burst`` × the hub's mean sign-ups
    per window, and 2), its hub is public (fewer than ``hub_campaign_share`` of its
    accounts in bursts, on the grid with more)
    and it has at most ``hub_cap`` accounts; it weighs ``0.5 × kind weight / log(1 +
    degree)``. Tokens are ranked as ``_hub_arrival`` codes them: grid, then hub in
    identifier order, then smallest row.
    """
    from pyspark.sql import functions as F

    spark = links.sparkSession
    empty = spark.createDataFrame([], "idx long, tok long")
    if "created_at" not in accounts.columns:
        return [], empty
    window = int(pd.Timedelta(options.hub_arrival_window).value)
    hubs = (
        links.where(F.col("kind").isin(list(options.hub_arrival_kinds)))
        .groupBy("kind", "value")
        .agg(F.count("*").alias("degree"), F.min("account_id").alias("first_account"),
             F.first("kw").alias("kw"))
        .where(F.col("degree") > options.hub_cap)
        .drop("degree")
        .join(common, ["kind", "value"], "left_anti")
    )
    born = accounts.select(
        "account_id", F.expr("unix_micros(created_at) * 1000").alias("born")
    ).where(F.col("born") >= 0)
    uses = (
        links.select("account_id", "kind", "value", "idx")
        .join(hubs, ["kind", "value"])
        .join(born, "account_id")
        .select("kind", "value", "first_account", "kw", "idx", "born")
        .distinct()
        .cache()
    )
    hub = ["kind", "value"]
    # Mean sign-ups per window as numpy computes it: the same IEEE operations in order.
    expected = uses.groupBy(*hub).agg(
        F.count("*").alias("on"), F.min("born").alias("first"), F.max("born").alias("last")
    ).select(
        *hub, "on",
        F.greatest(
            F.lit(options.hub_arrival_burst) * F.col("on") / F.greatest(
                (F.col("last") - F.col("first")) / F.lit(window), F.lit(1.0)
            ),
            F.lit(2.0),
        ).alias("expected"),
    )
    grids = uses.crossJoin(
        spark.createDataFrame([(0, 0), (1, window // 2)], "grid int, shift long")
    ).withColumn("win", F.expr(f"(born + shift) div {window}"))
    token = [*hub, "grid", "win"]
    sizes = grids.groupBy(*token).agg(
        F.count("*").alias("degree"), F.min("idx").alias("first_row")
    ).join(expected, hub).withColumn("burst", F.col("degree") >= F.col("expected"))
    # Campaign infrastructure: a large share of the hub's accounts arrived in bursts
    # (on the grid that finds more of them).
    public = sizes.where(F.col("burst")).groupBy(*hub, "grid").agg(
        F.sum("degree").alias("in_bursts")
    ).groupBy(*hub).agg(F.max("in_bursts").alias("in_bursts")).join(
        expected, hub, "right"
    ).where(
        F.coalesce(F.col("in_bursts"), F.lit(0))
        < F.lit(options.hub_campaign_share) * F.greatest(F.col("on"), F.lit(1))
    ).select(*hub)
    kept = (
        sizes.where(F.col("burst") & (F.col("degree") <= options.hub_cap))
        .join(public, hub)
        .join(uses.select(*hub, "first_account", "kw").distinct(), hub)
        .select(*token, "first_account", "kw", "degree", "first_row")
        .cache()
    )
    table = kept.select("kw", "degree").distinct().toPandas()
    table["w"] = (0.5 * table["kw"].to_numpy(np.float64)) * (
        1.0 / np.log1p(table["degree"].to_numpy(np.int64))
    )
    weights = spark.createDataFrame(table, "kw double, degree long, w double")
    ranked = _ordered_index(
        kept, ["grid", "first_account", "kind", "value", "first_row"], "tok"
    ).join(F.broadcast(weights), ["kw", "degree"])
    # Checkpointed, not cached: the plans after it (edges, components, Leiden) would
    # otherwise print this term's nested cached plans, which ran the driver out of heap.
    incidence = grids.select(*token, "idx").join(
        ranked.select(*token, "tok", "w"), token
    ).withColumn("ev", F.lit(True)).localCheckpoint()
    uses.unpersist()
    kept.unpersist()
    return _token_pairs(incidence, {True: "arrival"}), incidence.select("idx", "tok")


def _after(first: DataFrame, second: DataFrame) -> DataFrame:
    """``idx, tok`` incidences side by side: ``second``'s tokens ranked after ``first``'s
    (``sp.hstack`` of the two)."""
    from pyspark.sql import functions as F

    offset = first.agg(F.max("tok")).collect()[0][0]
    start = 0 if offset is None else int(offset) + 1
    return first.select("idx", "tok").unionByName(
        second.select("idx", (F.col("tok") + F.lit(start)).alias("tok"))
    )


def _co_activity_terms(links: DataFrame, common: DataFrame, options: ProjectionOptions):
    """Terms ``co`` and ``co_evidence`` of ``project``: tokens ``(identifier, window of
    first_seen)`` shared by 2 to ``hub_cap`` accounts, weighted
    ``kind weight × co_activity_weight / log(1 + degree)``; none of the ``common`` hubs."""
    from pyspark.sql import functions as F

    spark = links.sparkSession
    window = int(pd.Timedelta(options.co_activity_window).value)
    timed = links.join(common, ["kind", "value"], "left_anti").withColumn(
        "win", F.expr(f"(unix_micros(first_seen) * 1000) div {window}")
    )
    tokens = timed.groupBy("kind", "value", "win").agg(
        F.count("*").alias("degree"),
        F.min("account_id").alias("first_account"),
        F.first("ev").alias("ev"),
    ).where((F.col("degree") >= 2) & (F.col("degree") <= options.hub_cap)).cache()
    n_tokens = tokens.count()
    pairs = tokens.select("kind", "degree").distinct().toPandas()
    kind_w = np.array([options.kind_weight(str(k)) for k in pairs["kind"]], dtype=np.float64)
    pairs["w"] = (kind_w * options.co_activity_weight) * (
        1.0 / np.log1p(pairs["degree"].to_numpy(np.int64))
    )
    weights = spark.createDataFrame(pairs, "kind string, degree long, w double")
    ranked = _ordered_index(tokens, ["first_account", "kind", "value"], "tok").join(
        F.broadcast(weights), ["kind", "degree"]
    )
    incidence = timed.select("kind", "value", "win", "idx").join(
        ranked, ["kind", "value", "win"]
    )
    terms = _token_pairs(incidence, {False: "co", True: "co_evidence"})
    return terms, n_tokens


def _lockstep_term(usage: DataFrame, index: DataFrame, options: ProjectionOptions):
    """Term ``lock`` of ``project`` (mirrors ``projection._lockstep``): MinHash of each
    eligible account's active hours, LSH buckets, exact share of equal signature entries.

    Returns the term (or None) and ``(accounts compared, candidates, pairs kept)``.
    """
    from pyspark.sql import functions as F

    hours = usage.select(
        "account_id", F.expr(f"(unix_micros(hour) * 1000) div {_NS_PER_HOUR}").alias("h")
    )
    bounds = hours.agg(F.min("h").alias("lo"), F.max("h").alias("hi")).collect()[0]
    if bounds["lo"] is None:
        return None, (0, 0, 0)
    lo = int(bounds["lo"])
    n_hours = int(bounds["hi"]) - lo + 1
    active = (
        hours.join(index, "account_id")
        .select("idx", (F.col("h") - lo).alias("h"))
        .distinct()
        .groupBy("idx")
        .agg(F.collect_list("h").alias("hours"))
        .withColumn("n", F.size("hours"))
    )
    eligible = active.where(
        (F.col("n") >= options.lockstep_min_hours)
        & (F.col("n") <= F.lit(options.lockstep_max_share * n_hours))
    ).select("idx", "hours").cache()
    n_eligible = eligible.count()
    if n_eligible < 2:
        eligible.unpersist()
        return None, (n_eligible, 0, 0)
    k = options.lockstep_bands * options.lockstep_rows
    rng = np.random.default_rng(options.seed)
    perms = np.stack([rng.permutation(n_hours).astype(np.int32) for _ in range(k)])
    bands, rows = options.lockstep_bands, options.lockstep_rows

    def signatures(batches):
        for batch in batches:
            sig = np.stack(
                [perms[:, np.asarray(h, dtype=np.int64)].min(axis=1) for h in batch["hours"]]
            ) if len(batch) else np.zeros((0, k), dtype=np.int32)
            keys = np.zeros((len(sig), bands), dtype=np.uint64)
            for band in range(bands):
                key = np.zeros(len(sig), dtype=np.uint64)
                for col in sig[:, band * rows : (band + 1) * rows].T.astype(np.uint64):
                    key = key * _BAND_MIX + col
                keys[:, band] = key
            yield pd.DataFrame({
                "idx": batch["idx"].to_numpy(),
                "sig": list(sig.astype(np.int32)),
                "keys": list(keys.view(np.int64)),
            })

    with np.errstate(over="ignore"):
        signed = eligible.mapInPandas(
            signatures, "idx long, sig array<int>, keys array<long>"
        ).cache()
        signed.count()
    bucketed = signed.select("idx", F.posexplode("keys").alias("band", "key"))
    sizes = bucketed.groupBy("band", "key").agg(F.count("*").alias("size")).where(
        (F.col("size") >= 2) & (F.col("size") <= options.lockstep_bucket_cap)
    ).drop("size")
    members = bucketed.join(sizes, ["band", "key"])
    candidates = (
        members.select("band", "key", F.col("idx").alias("i"))
        .join(members.select("band", "key", F.col("idx").alias("j")), ["band", "key"])
        .where(F.col("i") < F.col("j"))
        .select("i", "j")
        .distinct()
        .cache()
    )
    n_candidates = candidates.count()
    sig_i = signed.select(F.col("idx").alias("i"), F.col("sig").alias("si"))
    sig_j = signed.select(F.col("idx").alias("j"), F.col("sig").alias("sj"))
    equal = F.aggregate(
        F.zip_with("si", "sj", lambda x, y: F.when(x == y, 1).otherwise(0)), F.lit(0),
        lambda acc, x: acc + x,
    )
    scored = (
        candidates.join(sig_i, "i").join(sig_j, "j")
        .select("i", "j", (equal.cast("double") / F.lit(float(k))).alias("similarity"))
        .where(F.col("similarity") >= options.lockstep_threshold)
        .select("i", "j", F.lit("lock").alias("term"),
                (F.lit(options.lockstep_weight) * F.col("similarity")).alias("v"))
        .cache()
    )
    n_pairs = scored.count()
    eligible.unpersist()
    return scored, (n_eligible, n_candidates, n_pairs)


def _edges(spark: SparkSession, terms: list[DataFrame]) -> DataFrame:
    """``i, j, weight, evidence`` per pair ``i < j`` with a nonzero weight.

    ``weight = ((((other + evidence) + arrival) + co) + co_evidence) + lock`` and
    ``evidence = (evidence + arrival) + co_evidence``, in ``project``'s order (an absent
    term adds ``0.0``, which changes no sum, as scipy's sparse addition skips it).
    """
    from pyspark.sql import functions as F

    names = ("other", "evidence", "arrival", "co", "co_evidence", "lock")
    if not terms:
        return spark.createDataFrame([], "i long, j long, weight double, evidence double")
    union = terms[0]
    for term in terms[1:]:
        union = union.unionByName(term)
    wide = union.groupBy("i", "j").agg(
        *[F.coalesce(F.max(F.when(F.col("term") == t, F.col("v"))), F.lit(0.0)).alias(t)
          for t in names]
    )
    weight = F.col("other")
    for t in names[1:]:
        weight = weight + F.col(t)
    return wide.select(
        "i", "j", weight.alias("weight"),
        (F.col("evidence") + F.col("arrival") + F.col("co_evidence")).alias("evidence")
    ).where(F.col("weight") != 0)


# -- components and Leiden ------------------------------------------------------------------


def _components(edges: DataFrame, *, single_task_edges: int) -> DataFrame:
    """``v, c``: the smallest row of ``v``'s connected component, for every account with an
    edge (the others are components of one). The smallest row numbers components as
    scipy's ``connected_components`` does.

    Each round replaces every partition's edges by stars (each node → the smallest node of
    its component within the partition): the same connectivity on fewer edges. Rounds
    alternate the partitioning key and stop when the stars fit ``single_task_edges`` or
    stop shrinking (a giant component); one task then labels what is left.
    """
    from pyspark.sql import functions as F

    stars = edges.select(F.col("i").alias("a"), F.col("j").alias("b"))
    count, key = stars.count(), "a"
    while count > single_task_edges:
        shrunk = stars.repartition(key).mapInPandas(_local_stars, "a long, b long")
        shrunk = shrunk.localCheckpoint()
        before, count = count, shrunk.count()
        stars, key = shrunk, ("b" if key == "a" else "a")
        if count > 0.9 * before:
            break
    return stars.coalesce(1).mapInPandas(_all_labels, "v long, c long")


def _stars(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each node of the edges ``a — b`` and the smallest node of its component."""
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(np.r_[a, b])
    graph = sp.csr_matrix(
        (np.ones(len(a)), (np.searchsorted(nodes, a), np.searchsorted(nodes, b))),
        shape=(len(nodes), len(nodes)),
    )
    _, comp = connected_components(graph, directed=False)
    # nodes are sorted, so a component's first node is its smallest.
    smallest = nodes[np.unique(comp, return_index=True)[1]]
    return nodes, smallest[comp]


def _concat(batches) -> pd.DataFrame:
    frames = list(batches)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"a": pd.Series(dtype=np.int64), "b": pd.Series(dtype=np.int64)}
    )


def _local_stars(batches):
    edges = _concat(batches)
    if len(edges):
        nodes, root = _stars(edges["a"].to_numpy(np.int64), edges["b"].to_numpy(np.int64))
        other = nodes != root
        yield pd.DataFrame({"a": nodes[other], "b": root[other]})


def _all_labels(batches):
    edges = _concat(batches)
    if len(edges):
        nodes, root = _stars(edges["a"].to_numpy(np.int64), edges["b"].to_numpy(np.int64))
        yield pd.DataFrame({"v": nodes, "c": root})


def _component_partition(
    pdf: pd.DataFrame, options: DetectionOptions, *, in_child: bool = False
) -> pd.DataFrame:
    """Leiden membership of one component's accounts (rows sorted), as ``_leiden`` gives it.

    The component's nodes are numbered in row order and its edges listed in CSR order
    (by row, then column, upper triangle), exactly the job ``_leiden`` builds; a complete
    component at weight ≥ γ is one community without Leiden. Returns ``idx, membership,
    leiden`` (whether Leiden ran). ``in_child``: igraph runs in a child process, as in
    ``_partitions``, leaving this process's random generator alone (the driver).
    """
    nodes = np.unique(np.r_[pdf["i"].to_numpy(), pdf["j"].to_numpy()])
    row = np.searchsorted(nodes, pdf["i"].to_numpy())
    col = np.searchsorted(nodes, pdf["j"].to_numpy())
    order = np.lexsort((col, row))
    row, col, w = row[order], col[order], pdf["weight"].to_numpy(np.float64)[order]
    size = len(nodes)
    complete = len(w) == size * (size - 1) // 2 and float(w.min()) >= options.resolution
    if complete:
        membership = np.zeros(size, dtype=np.int64)
    else:
        job = (int(size), np.column_stack([row, col]), w)
        if options.implementation == "leidenalg":
            membership = communities._leidenalg(*job, options)
        elif in_child:
            # A fresh interpreter, not a fork: a forked driver shares the JVM gateway's
            # sockets with its child, which broke the connection once in the 1M run.
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                membership = pool.apply(communities._igraph_all, ([job], options))[0]
        else:
            # A Spark Python worker is a process of its own, as a forked Leiden child is,
            # so igraph's process-wide generator may be seeded here.
            membership = communities._igraph_all([job], options)[0]
    return pd.DataFrame({"idx": nodes, "membership": membership, "leiden": not complete})


def _leiden_memberships(
    edges: DataFrame, component: DataFrame, options: DetectionOptions, spark_options: SparkOptions
):
    """Leiden per component of at least ``min_ring_size`` accounts, in parallel.

    Returns ``idx, membership, leiden`` (pandas) and the giant components (run on the
    driver).
    """
    from pyspark.sql import functions as F

    sizes = component.groupBy("c").agg(F.count("*").alias("size")).where(
        F.col("size") >= options.min_ring_size
    )
    # Read twice (edge counts per component, then Leiden): joined once, not per read.
    with_comp = edges.join(component.select(F.col("v").alias("i"), "c"), "i").join(
        sizes, "c").cache()
    per_comp = with_comp.groupBy("c").agg(F.count("*").alias("edges"), F.first("size")
                                          .alias("size"))
    giant_rows = per_comp.where(F.col("edges") > spark_options.giant_component_edges).collect()
    giant_ids = [int(r["c"]) for r in giant_rows]
    schema = "idx long, membership long, leiden boolean"

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        return _component_partition(pdf, options)

    small = with_comp.where(~F.col("c").isin(giant_ids)) if giant_ids else with_comp
    parts = [small.groupBy("c").applyInPandas(run, schema).toPandas()]
    giants = []
    if giant_rows:
        # One executor task would have to hold each whole; the driver does, and says so.
        edges_of = with_comp.where(F.col("c").isin(giant_ids)).select("c", "i", "j", "weight")
        for _, pdf in edges_of.toPandas().groupby("c", sort=True):
            parts.append(_component_partition(pdf, options, in_child=True))
        giants = [{"component": int(r["c"]), "accounts": int(r["size"]),
                   "edges": int(r["edges"])} for r in sorted(giant_rows, key=lambda r: r["c"])]
    with_comp.unpersist()
    return pd.concat(parts, ignore_index=True), giants


# -- driver: collect and finish --------------------------------------------------------------


def _collect_ids(index: DataFrame, n: int) -> np.ndarray:
    frame = index.toPandas()
    ids = np.empty(n, dtype=object)
    ids[frame["idx"].to_numpy()] = frame["account_id"].astype(str).to_numpy(dtype=object)
    return ids


def _symmetric(i: np.ndarray, j: np.ndarray, v: np.ndarray, n: int) -> sp.csr_matrix:
    keep = v != 0
    i, j, v = i[keep], j[keep], v[keep]
    matrix = sp.csr_matrix((np.r_[v, v], (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    matrix.sort_indices()
    return matrix


def _collect_matrices(edges: DataFrame, n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    frame = edges.toPandas()
    i, j = frame["i"].to_numpy(np.int64), frame["j"].to_numpy(np.int64)
    return (
        _symmetric(i, j, frame["weight"].to_numpy(np.float64), n),
        _symmetric(i, j, frame["evidence"].to_numpy(np.float64), n),
    )


def _collect_incidence(ring_identifiers: DataFrame, n: int) -> sp.csr_matrix:
    frame = ring_identifiers.toPandas()
    tok = pd.factorize(frame["tok"], sort=True)[0] if len(frame) else np.zeros(0, np.int64)
    return sp.csr_matrix(
        (np.ones(len(frame)), (frame["idx"].to_numpy(np.int64), tok)),
        shape=(n, int(tok.max(initial=-1)) + 1),
    )


def _component_numbers(component: DataFrame, n: int) -> np.ndarray:
    """scipy's component number per row: components ranked by their smallest row."""
    frame = component.toPandas()
    smallest = np.arange(n)
    smallest[frame["v"].to_numpy(np.int64)] = frame["c"].to_numpy(np.int64)
    return np.unique(smallest, return_inverse=True)[1].astype(np.int64)


def _platform_for_campaigns(tables, spark, source, options: DetectionOptions) -> Platform:
    """The columns ``_inactive`` and ``_campaigns`` read: account status, the links of
    campaign kinds and IPs, and the IP table."""
    from pyspark.sql import functions as F

    accounts = tables["accounts"]
    columns = [c for c in ("account_id", "status") if c in accounts.columns]
    kinds = [*options.campaign_kinds, "ip"]
    links = (
        tables["links"].where(F.col("kind").isin(kinds)).select("account_id", "kind", "value")
        .toPandas()
    )
    ips = None
    if "ips" in tables:
        wanted = [c for c in ("ip", "asn", "is_proxy", "is_datacenter") if c in
                  tables["ips"].columns]
        ips = tables["ips"].select(*wanted).toPandas()
    return Platform(accounts=accounts.select(*columns).toPandas(), links=links,
                    usage=pd.DataFrame(), ips=ips)


def _finish(
    projection: Projection,
    comp: np.ndarray,
    memberships: pd.DataFrame,
    platform: Platform,
    options: DetectionOptions,
) -> Detection:
    """``detect_rings`` after ``_leiden``, with graphinv's own functions.

    Leiden labels are numbered as ``_leiden`` numbers them: components in order of their
    smallest row, each one's communities offset by the labels used before it.
    """
    start = time.perf_counter()
    n = len(projection.account_ids)
    label = np.full(n, -1, dtype=np.int64)
    idx = memberships["idx"].to_numpy(np.int64)
    member = memberships["membership"].to_numpy(np.int64)
    comp_of = comp[idx]
    order = np.lexsort((idx, comp_of))
    idx, member, comp_of = idx[order], member[order], comp_of[order]
    starts = np.flatnonzero(np.r_[True, comp_of[1:] != comp_of[:-1]]) if len(idx) else \
        np.zeros(0, dtype=np.int64)
    used = np.maximum.reduceat(member, starts) + 1 if len(idx) else np.zeros(0, np.int64)
    offset = np.r_[0, np.cumsum(used)[:-1]].astype(np.int64)
    label[idx] = member + np.repeat(offset, np.diff(np.r_[starts, len(idx)]))
    runs = int(memberships.groupby(comp[memberships["idx"].to_numpy(np.int64)])["leiden"]
               .first().sum()) if len(memberships) else 0
    return communities.rings_from_communities(
        label,
        weights=communities.strong_weights(projection, options),
        comp=comp,
        components=len(starts),
        leiden_runs=runs,
        projection=projection,
        platform=platform,
        options=options,
        started=start,
    )


class _Clock:
    """Wall time per step: ``with clock("step"): …``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[step] = round(time.perf_counter() - start, 3)
        # Long runs on a cluster: the log shows which step a sweep is in.
        _LOG.info("spark %s: %.1f s", step, self.seconds[step])
