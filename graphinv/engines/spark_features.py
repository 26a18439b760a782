"""Ring features and platform baselines as Spark aggregations.

:func:`spark_ring_features` gives what :func:`graphinv.score.features.ring_features` gives
(the same :class:`~graphinv.score.registry.RingFeatures`: values, details, baselines,
references and rate limits, equal to within float rounding) from the Parquet folder the
sweep's detection read, so the platform-sized work runs on Spark: account-hours summed
over models, per-account sums and counts of links and traffic, distinct days, per-card
degrees, per-tier rate-limit quantiles, and every baseline (means, exact medians and
percentiles over all accounts). Only per-ring results (one row per ring) reach the driver.

What is shared with the single-machine measurement, so the two cannot drift apart:

* the features, their order, units and details (:data:`graphinv.score.features.FEATURES`);
* how a per-account value becomes ring value, baseline and reference
  (:data:`graphinv.score.registry.AGGREGATION`: members' mean for shares, median and the
  99th / 1st percentile for ratios);
* the table layout (:meth:`FeatureRegistry.assemble`).

Each feature's per-account or per-ring formula is written again here as Spark
expressions, next to its name in :data:`SPARK_MEASURES`; a feature registered without
one is refused (:class:`~graphinv.errors.GraphinvError`), and ``tests/test_spark.py``
compares every feature, detail and baseline with the single-machine values.

Per-account values use null where ``ring_features`` has NaN (Spark's aggregates skip
null, as pandas skips NaN); divisions are ``try_divide`` (null on zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from graphinv.errors import GraphinvError
from graphinv.score.features import FEATURES
from graphinv.score.registry import AGGREGATION, FeatureOptions, Measured, PerRing, RingFeatures

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SPARK_MEASURES", "spark_ring_features"]

_MICROS_PER_HOUR = 3_600_000_000
_MIN_RHYTHM_HOURS = 24  # as graphinv.score.features
_NIGHT_HOURS = 8
_FULL_CONCENTRATION_FOLD = 10.0
_ATTRIBUTES = {
    "payment_method": ("payment_methods", "fingerprint", ("prepaid",)),
    "ip": ("ips", "ip", ("is_datacenter", "is_proxy")),
    "prompt_fingerprint": ("prompt_fingerprints", "fingerprint", ("elicits_reasoning",)),
}


@dataclass(frozen=True)
class SparkPerAccount:
    """A per-account feature on Spark: ``account_id, v`` for every account (null: NaN)."""

    frame: DataFrame
    details: dict[str, Any] = field(default_factory=dict)


SparkMeasure = Callable[["SparkRings"], SparkPerAccount | PerRing]
#: Feature name → its Spark measurement (the formula of ``graphinv.score.features``).
SPARK_MEASURES: dict[str, SparkMeasure] = {}


def _measures(name: str) -> Callable[[SparkMeasure], SparkMeasure]:
    if name not in FEATURES:
        raise GraphinvError(f"Spark measurement for {name!r}, which is not a feature")

    def add(measure: SparkMeasure) -> SparkMeasure:
        SPARK_MEASURES[name] = measure
        return measure

    return add


def spark_ring_features(
    members: pd.DataFrame,
    source: str | Path,
    *,
    spark: SparkSession,
    options: FeatureOptions | None = None,
) -> RingFeatures:
    """Every feature of every ring, and the platform baselines, measured on Spark.

    Parameters
    ----------
    members
        ``ring_id, account_id`` (collected on the driver: a ring's accounts).
    source
        The Parquet folder of the platform (as for
        :func:`graphinv.engines.spark.detect_on_spark`); ``labels`` is never read.
    spark
        A session (:func:`graphinv.engines.spark.spark_session`).
    options
        Measurement settings, as for ``ring_features``.

    Raises
    ------
    GraphinvError
        A registered feature has no Spark measurement.
    """
    missing = [spec.name for spec in FEATURES if spec.name not in SPARK_MEASURES]
    if missing:
        raise GraphinvError(
            f"feature(s) {', '.join(missing)} have no Spark measurement: add one to "
            "graphinv/engines/spark_features.py (SPARK_MEASURES) or score with the "
            "default engine"
        )
    rings = SparkRings(spark, _tables(spark, source), members, options or FeatureOptions())
    try:
        measured = rings.measure_all()
        return FEATURES.assemble(rings.ring_ids, rings.size, lambda spec: measured[spec.name],
                                 rate_limits=rings.rate_limits)
    finally:
        rings.release()


def _tables(spark: SparkSession, source: str | Path) -> dict[str, DataFrame]:
    from graphinv.engines.spark import _read

    tables = _read(spark, source)
    root = str(source).rstrip("/")
    for name in ("payment_methods", "prompt_fingerprints"):
        path = f"{root}/{name}.parquet"
        if "://" in root or Path(path).exists():
            tables[name] = spark.read.parquet(path)
    return tables


def _divide(a: Column | str, b: Column | str) -> Column:
    from pyspark.sql import functions as F

    return F.try_divide(F.col(a) if isinstance(a, str) else a,
                        F.col(b) if isinstance(b, str) else b)


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


class SparkRings:
    """The indexed tables features measure from (the Spark side of ``RingContext``).

    Accounts are keyed by ``account_id``; rings by ``ring_id`` (``ring_ids``, sorted, is
    the ring-code order of the results).
    """

    def __init__(self, spark: SparkSession, tables: dict[str, DataFrame],
                 members: pd.DataFrame, options: FeatureOptions) -> None:
        from pyspark.sql import functions as F

        self.spark, self.tables, self.options = spark, tables, options
        self._cached: list[DataFrame] = []
        accounts = tables["accounts"]
        self.accounts = self._cache(accounts.withColumn(
            "account_id", F.col("account_id").cast("string")))
        self.n_accounts = self.accounts.count()
        ring_codes, ring_ids = pd.factorize(members["ring_id"], sort=True)
        self.ring_ids = np.asarray(ring_ids)
        frame = pd.DataFrame({"ring": ring_codes.astype(np.int64),
                              "account_id": members["account_id"].astype(str).to_numpy()})
        given = spark.createDataFrame(frame) if len(frame) else spark.createDataFrame(
            [], "ring long, account_id string")
        # Members of accounts the platform does not hold are left out, as on one machine.
        self.members = self._cache(given.join(self.accounts.select("account_id"),
                                              "account_id"))
        self.size = self._per_ring(self.members.groupBy("ring").count(), "count", fill=0
                                   ).astype(np.int64)

    @property
    def n_rings(self) -> int:
        return len(self.ring_ids)

    def _cache(self, frame: DataFrame) -> DataFrame:
        frame = frame.cache()
        self._cached.append(frame)
        return frame

    def release(self) -> None:
        for frame in self._cached:
            frame.unpersist()

    # -- results on the driver -----------------------------------------------------------

    def _per_ring(self, frame: DataFrame, column: str, *, fill: float | None = None
                  ) -> np.ndarray:
        """``column`` of a frame keyed by ``ring``, in ring-code order (``fill`` where a
        ring has no row; None: NaN)."""
        rows = frame.select("ring", column).toPandas()
        out = pd.Series(rows[column].to_numpy(), index=rows["ring"].to_numpy())
        out = out.reindex(np.arange(self.n_rings)).astype(float)
        return out.to_numpy() if fill is None else out.fillna(fill).to_numpy()

    def measure_all(self) -> dict[str, Measured]:
        """Every feature's :class:`Measured`. Per-account features are aggregated
        together: one pass for all baselines and references, one ``groupBy`` for all
        ring values (two jobs, not two per feature)."""
        from pyspark.sql import functions as F

        done: dict[str, Measured] = {}
        per_account: dict[str, SparkPerAccount] = {}
        for spec in FEATURES:
            measured = SPARK_MEASURES[spec.name](self)
            if isinstance(measured, PerRing):
                done[spec.name] = Measured(measured.values, float(measured.baseline),
                                           float(measured.reference), measured.details)
            else:
                per_account[spec.name] = measured
        if not per_account:
            return done
        wide = self.accounts.select("account_id")
        for name, measured in per_account.items():
            wide = wide.join(measured.frame.select(
                "account_id", F.col("v").cast("double").alias(name)), "account_id", "left")
        wide = self._cache(wide)
        platform, rings = [], []
        for name in per_account:
            statistic, q = AGGREGATION[FEATURES[name].unit]
            stat = F.avg if statistic == "mean" else F.median
            platform.append(stat(name).alias(f"base_{name}"))
            if q is not None:
                platform.append(F.percentile(name, q).alias(f"ref_{name}"))
            rings.append(stat(name).alias(name))
        row = wide.agg(*platform).first()
        assert row is not None
        per_ring = self.members.join(wide, "account_id").groupBy("ring").agg(*rings).toPandas()
        per_ring = per_ring.set_index("ring").reindex(np.arange(self.n_rings))
        for name, measured in per_account.items():
            has_reference = AGGREGATION[FEATURES[name].unit][1] is not None
            done[name] = Measured(
                per_ring[name].to_numpy(dtype=float), _nan(row[f"base_{name}"]),
                _nan(row[f"ref_{name}"]) if has_reference else np.nan, measured.details)
        return done

    def ring_sum(self, frame: DataFrame, column: str) -> np.ndarray:
        """Per ring, the members' sum of a per-account column (NaN: no known members)."""
        from pyspark.sql import functions as F

        summed = self.members.join(frame, "account_id").groupBy("ring").agg(
            F.sum(column).cast("double").alias("s"))
        return self._per_ring(summed, "s")

    # -- tables --------------------------------------------------------------------------

    def with_accounts(self, frame: DataFrame, columns: dict[str, Any]) -> DataFrame:
        """Every account with ``columns`` of ``frame`` (keyed by ``account_id``), missing
        ones filled with the given defaults (None: null)."""
        from pyspark.sql import functions as F

        out = self.accounts.select("account_id").join(frame, "account_id", "left")
        return out.select("account_id", *[
            (F.coalesce(F.col(c), F.lit(d)) if d is not None else F.col(c)).alias(c)
            for c, d in columns.items()])

    @cached_property
    def links(self) -> dict[str, DataFrame]:
        """Per kind: ``account_id, value, count, flag`` of known accounts (``flag``: the
        kind's attribute, or null when the platform has no attribute table or column)."""
        from pyspark.sql import functions as F

        links = self.tables["links"].select(
            F.col("account_id").cast("string").alias("account_id"), "kind",
            F.col("value").cast("string").alias("value"),
            F.coalesce(F.col("count").cast("double"), F.lit(1.0)).alias("count"),
        ).join(self.accounts.select("account_id"), "account_id")
        out = {}
        for kind, (table, key, columns) in _ATTRIBUTES.items():
            rows = links.where(F.col("kind") == kind).drop("kind")
            attributes = self.tables.get(table)
            held = attributes.columns if attributes is not None else []
            present = [c for c in columns if c in held]
            with_category = kind == "prompt_fingerprint" and "category" in held
            if attributes is not None and (present or with_category):
                flagged = F.lit(False) if present else F.lit(None).cast("boolean")
                for c in present:
                    flagged = flagged | F.coalesce(F.col(c).cast("boolean"), F.lit(False))
                category = [F.col("category").cast("string").alias("category")] \
                    if with_category else []
                # One row per key, as on one machine (the contract keys these tables).
                attr = attributes.select(F.col(key).cast("string").alias("value"),
                                         flagged.alias("flag"), *category).groupBy("value").agg(
                    F.max("flag").alias("flag"),
                    *([F.first("category").alias("category")] if with_category else []))
                rows = rows.join(attr, "value", "left")
                if present:
                    # Values missing from the attribute table count as not flagged.
                    rows = rows.withColumn("flag", F.coalesce(F.col("flag"), F.lit(False)))
            else:
                rows = rows.withColumn("flag", F.lit(None).cast("boolean"))
            if kind == "prompt_fingerprint" and not with_category:
                rows = rows.withColumn("category", F.lit(None).cast("string"))
            out[kind] = self._cache(rows)
        return out

    def has_flag(self, kind: str) -> bool:
        table, _, columns = _ATTRIBUTES[kind]
        attributes = self.tables.get(table)
        return attributes is not None and any(c in attributes.columns for c in columns)

    def ring_links(self, kind: str) -> DataFrame:
        """Distinct ``ring, value`` of the members' links of ``kind``, ``count`` summed."""
        return self._ring_links[kind]

    @cached_property
    def _ring_links(self) -> dict[str, DataFrame]:
        from pyspark.sql import functions as F

        out = {}
        for kind, rows in self.links.items():
            extra = [F.first("category").alias("category")] if "category" in rows.columns \
                else []
            out[kind] = self._cache(self.members.join(rows, "account_id").groupBy(
                "ring", "value").agg(F.sum("count").alias("count"),
                                     F.first("flag").alias("flag"), *extra))
        return out

    def distinct_per_ring(self, kind: str, where: Column | None = None) -> DataFrame:
        from pyspark.sql import functions as F

        used = self.ring_links(kind)
        if where is not None:
            used = used.where(where)
        return used.groupBy("ring").agg(F.count("*").alias("n"))

    @cached_property
    def usage(self) -> DataFrame:
        """Usage rows of known accounts: ``account_id, h`` (epoch hour), ``model, r, i, o``."""
        from pyspark.sql import functions as F

        usage = self.tables["usage"]
        return self._cache(usage.select(
            F.col("account_id").cast("string").alias("account_id"),
            F.expr(f"unix_micros(hour) div {_MICROS_PER_HOUR}").alias("h"),
            F.col("model").cast("string").alias("model"),
            F.col("requests").cast("double").alias("r"),
            F.col("input_tokens").cast("double").alias("i"),
            F.col("output_tokens").cast("double").alias("o"),
        ).join(self.accounts.select("account_id"), "account_id"))

    @cached_property
    def hourly(self) -> DataFrame:
        """Usage summed over models per account-hour (the unit rate limits apply to)."""
        from pyspark.sql import functions as F

        return self._cache(self.usage.groupBy("account_id", "h").agg(
            F.sum("r").alias("r"), F.sum("i").alias("i"), F.sum("o").alias("o")))

    @cached_property
    def traffic(self) -> DataFrame:
        """Every account: total ``requests, input_tokens, output_tokens`` (0 without usage)."""
        from pyspark.sql import functions as F

        sums = self.hourly.groupBy("account_id").agg(
            F.sum("r").alias("requests"), F.sum("i").alias("input_tokens"),
            F.sum("o").alias("output_tokens"), F.count("*").alias("hours"),
            F.countDistinct(F.expr("h div 24")).alias("active_days"))
        return self._cache(self.with_accounts(sums, {
            "requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0, "hours": 0,
            "active_days": 0}))

    @cached_property
    def ips_per_account(self) -> DataFrame:
        from pyspark.sql import functions as F

        return self._cache(self.with_accounts(self.links["ip"].groupBy("account_id").agg(
            F.count("*").alias("n_ips"),
            F.sum(F.col("flag").cast("double")).alias("flagged")),
            {"n_ips": 0, "flagged": 0.0}))

    @cached_property
    def _limits(self) -> tuple[DataFrame, pd.Series]:
        """Per account its rate limit ``limit``; per tier the limits (``"*"`` last)."""
        from pyspark.sql import functions as F

        options = self.options
        if options.rate_limit is not None:
            limits = pd.Series({"*": options.rate_limit})
            return self.accounts.select("account_id", F.lit(float(options.rate_limit))
                                        .alias("limit")), limits
        q = options.rate_limit_quantile
        has_tier = "verification_tier" in self.accounts.columns
        tier = F.col("verification_tier").cast("string") if has_tier else \
            F.lit(None).cast("string")
        tiers = self.accounts.select("account_id", tier.alias("tier"))
        overall_row = self.hourly.agg(F.percentile("r", q).alias("q")).first()
        overall = _nan(overall_row["q"] if overall_row is not None else None)
        per_tier = self.hourly.join(tiers, "account_id").where(F.col("tier").isNotNull()) \
            .groupBy("tier").agg(F.count("*").alias("n"), F.percentile("r", q).alias("q")) \
            .toPandas().set_index("tier")
        names = sorted(tiers.where(F.col("tier").isNotNull()).select("tier").distinct()
                       .toPandas()["tier"]) if has_tier else []
        limits = pd.Series(
            [float(per_tier.loc[t, "q"]) if t in per_tier.index
             and per_tier.loc[t, "n"] >= options.min_tier_hours else overall for t in names]
            + [overall], index=[*names, "*"], dtype=float)
        table = self.spark.createDataFrame(
            pd.DataFrame({"tier": names, "limit": limits.to_numpy()[:-1]})
        ) if names else self.spark.createDataFrame([], "tier string, limit double")
        per_account = tiers.join(F.broadcast(table), "tier", "left").select(
            "account_id", F.coalesce(F.col("limit"), F.lit(overall)).alias("limit"))
        return self._cache(per_account), limits

    @property
    def rate_limits(self) -> pd.Series:
        return self._limits[1]

    @cached_property
    def member_hours(self) -> DataFrame:
        """``ring, account_id, h, r``: the members' account-hours, per ring."""
        return self._cache(self.members.join(self.hourly.select("account_id", "h", "r"),
                                             "account_id"))


# --- the measurements, one per feature of graphinv.score.features ------------------------


@_measures("accounts_per_card")
def _accounts_per_card(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    cards = rings.links["payment_method"]
    degree = cards.groupBy("value").agg(F.count("*").alias("degree"))
    per_account = cards.join(degree, "value").groupBy("account_id").agg(
        F.greatest(F.lit(1.0), F.max("degree").cast("double")).alias("v"),
        F.lit(1.0).alias("has_card"))
    frame = rings.with_accounts(per_account, {"v": 1.0, "has_card": 0.0})
    return SparkPerAccount(frame, details={
        "card_members": rings.ring_sum(frame, "has_card"),
        "cards": rings._per_ring(rings.distinct_per_ring("payment_method"), "n", fill=0)
        .astype(np.int64),
    })


@_measures("prepaid_share")
def _prepaid_share(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    cards = rings.links["payment_method"]
    prepaid = cards.groupBy("account_id").agg(
        F.max(F.coalesce(F.col("flag"), F.lit(False)).cast("double")).alias("v"))
    count = rings.distinct_per_ring("payment_method", F.col("flag")) if rings.has_flag(
        "payment_method") else None
    n = rings._per_ring(count, "n", fill=0).astype(float) if count is not None else \
        np.zeros(rings.n_rings)
    return SparkPerAccount(rings.with_accounts(prepaid, {"v": 0.0}),
                           details={"prepaid_cards": n})


@_measures("datacenter_proxy_share")
def _datacenter_proxy_share(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    ips = rings.ips_per_account
    value = F.when(F.col("n_ips") > 0, _divide("flagged", F.col("n_ips").cast("double"))
                   ).otherwise(F.lit(0.0)) if rings.has_flag("ip") else F.lit(None)
    frame = ips.select("account_id", value.cast("double").alias("v"))
    return SparkPerAccount(frame, details={
        "ips": rings._per_ring(rings.distinct_per_ring("ip"), "n", fill=0).astype(np.int64)})


@_measures("ip_rotation")
def _ip_rotation(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    frame = rings.ips_per_account.join(rings.traffic.select("account_id", "active_days"),
                                       "account_id")
    value = F.when(F.col("active_days") > 0,
                   _divide(F.col("n_ips").cast("double"), F.col("active_days").cast("double")))
    return SparkPerAccount(frame.select("account_id", value.alias("v")))


def _densest(frame: DataFrame, window_micros: int, by: str | None) -> DataFrame:
    """Per ``by`` group (or overall), the most timestamps ``t`` inside any window
    ``[t, t + window]``, as ``_densest_window`` counts them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spec = (Window.partitionBy(by) if by else Window).orderBy("t").rangeBetween(
        0, window_micros)
    inside = frame.withColumn("inside", F.count("*").over(spec))
    return inside.groupBy(*([by] if by else [])).agg(F.max("inside").alias("count"))


@_measures("signup_burst")
def _signup_burst(rings: SparkRings) -> PerRing:
    from pyspark.sql import functions as F

    window = round(rings.options.burst_window_hours * _MICROS_PER_HOUR)
    stamps = rings.accounts.select("account_id", F.unix_micros("created_at").alias("t"))
    # The platform's busiest window: one ordered pass over every account's sign-up time.
    row = _densest(stamps, window, None).first()
    densest = float(row["count"]) if row is not None and row["count"] is not None else 0.0
    count = rings._per_ring(_densest(rings.members.join(stamps, "account_id"), window, "ring"),
                            "count", fill=0).astype(float)
    size = rings.size.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(size > 1, (count - 1) / (size - 1), np.nan)
    return PerRing(value, baseline=densest / max(rings.n_accounts, 1),
                        details={"burst_members": count})


@_measures("account_age_days")
def _account_age_days(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    created = rings.accounts.select(
        "account_id", F.expr(f"unix_micros(created_at) div {_MICROS_PER_HOUR}").alias("c"))
    last_hour = rings.hourly.agg(F.max("h")).first()[0]  # type: ignore[index]
    last_created = created.agg(F.max("c")).first()[0]  # type: ignore[index]
    end = max(int(last_hour) if last_hour is not None else np.iinfo(np.int64).min,
              max(int(last_created), 0) if last_created is not None else 0)
    value = F.greatest(F.lit(end) - F.col("c"), F.lit(0)).cast("double") / 24.0 + 1.0
    return SparkPerAccount(created.select("account_id", value.alias("v")))


@_measures("farmable_signup_share")
def _farmable_signup_share(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    if "signup_path" not in rings.accounts.columns:
        return SparkPerAccount(rings.accounts.select("account_id", F.lit(None).alias("v")))
    paths = list(rings.options.farmable_signup_paths)
    value = F.coalesce(F.col("signup_path").cast("string").isin(paths), F.lit(False))
    return SparkPerAccount(rings.accounts.select("account_id",
                                                 value.cast("double").alias("v")))


def _when_active(value: Column, extra: Column | None = None) -> Column:
    from pyspark.sql import functions as F

    active = F.col("requests") > 0
    return F.when(active & extra if extra is not None else active, value)


@_measures("requests_per_account")
def _requests_per_account(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    return SparkPerAccount(rings.traffic.select(
        "account_id", _when_active(F.col("requests")).alias("v")))


@_measures("tokens_per_account")
def _tokens_per_account(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    return SparkPerAccount(rings.traffic.select(
        "account_id", _when_active(F.col("input_tokens") + F.col("output_tokens")).alias("v")))


@_measures("output_input_ratio")
def _output_input_ratio(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    value = _divide("output_tokens", F.greatest(F.col("input_tokens"), F.lit(1.0)))
    return SparkPerAccount(rings.traffic.select(
        "account_id", _when_active(value, F.col("input_tokens") > 0).alias("v")))


@_measures("near_rate_limit_share")
def _near_rate_limit_share(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    limits, _ = rings._limits
    fraction = rings.options.near_limit_fraction
    near = rings.hourly.join(limits, "account_id").groupBy("account_id").agg(F.sum(
        F.when(F.col("r") >= F.lit(fraction) * F.col("limit"), F.col("r")).otherwise(0.0)
    ).alias("near"))
    frame = rings.traffic.join(near, "account_id", "left").select(
        "account_id", _when_active(_divide(F.coalesce("near", F.lit(0.0)), "requests"))
        .alias("v"))
    per_ring = rings.members.join(limits, "account_id").groupBy("ring").agg(
        F.median("limit").alias("limit"))
    return SparkPerAccount(frame, details={"rate_limit": rings._per_ring(per_ring, "limit")})


def _night_share(hours: DataFrame, by: str) -> DataFrame:
    """``by, share``: ``_night_share`` of each group's ``h, r`` rows (null: no traffic)."""
    from pyspark.sql import functions as F

    daily = hours.withColumn("hod", F.col("h") % 24).groupBy(by).pivot(
        "hod", list(range(24))).agg(F.sum("r")).fillna(0.0)
    day = [F.col(str(k)) for k in range(24)]
    windows = []
    for start in range(24):
        total = day[start % 24]
        for t in range(1, _NIGHT_HOURS):
            total = total + day[(start + t) % 24]
        windows.append(total)
    whole = day[0]
    for column in day[1:]:
        whole = whole + column
    share = _divide(_divide(F.least(*windows), whole), F.lit(_NIGHT_HOURS / 24))
    clipped = F.least(F.greatest(share, F.lit(0.0)), F.lit(1.0))
    return daily.select(by, F.when(whole > 0, clipped).alias("share"))


@_measures("around_the_clock")
def _around_the_clock(rings: SparkRings) -> PerRing:
    from pyspark.sql import functions as F

    busy = rings.traffic.where(F.col("hours") >= _MIN_RHYTHM_HOURS).select("account_id")
    shares = _night_share(rings.hourly.join(busy, "account_id"), "account_id")
    row = shares.agg(F.count("*").alias("n"), F.median("share").alias("m")).first()
    assert row is not None
    baseline = _nan(row["m"]) if row["n"] else 0.0
    hours = rings.member_hours
    night = rings._per_ring(_night_share(hours, "ring"), "share")
    enough = rings._per_ring(hours.groupBy("ring").agg(F.countDistinct("h").alias("n")), "n",
                             fill=0) >= _MIN_RHYTHM_HOURS
    return PerRing(np.where(enough, night, np.nan), baseline=baseline)


@_measures("load_balancing")
def _load_balancing(rings: SparkRings) -> PerRing:
    from pyspark.sql import functions as F

    hours = rings.member_hours
    spans = hours.groupBy("ring").agg(
        (F.max("h") - F.min("h") + 1).cast("double").alias("span"))
    active = hours.groupBy("ring", "h").agg(F.count("*").cast("double").alias("c")).groupBy(
        "ring").agg(F.sum("c").alias("s1"), F.sum(F.col("c") * F.col("c")).alias("s2"))
    p = F.col("hours") / F.col("span")
    expected = hours.groupBy("ring", "account_id").agg(F.count("*").alias("hours")).join(
        spans, "ring").groupBy("ring").agg(
        F.sum(p * (1 - p)).alias("expected"), F.count("*").alias("n_active"))
    rows = spans.join(active, "ring").join(expected, "ring").toPandas()
    observed = rows["s2"] / rows["span"] - (rows["s1"] / rows["span"]) ** 2
    expected_v = rows["expected"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(expected_v > 1e-9, observed / expected_v, 0.0)
    value = np.clip(1.0 - dispersion, 0.0, 1.0)
    value = np.where((rows["n_active"] >= 2) & (rows["span"] >= 24), value, np.nan)
    out = pd.Series(value, index=rows["ring"].to_numpy()).reindex(np.arange(rings.n_rings))
    return PerRing(out.to_numpy(dtype=float), baseline=0.0)


@_measures("model_pivot")
def _model_pivot(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    raw = rings.usage
    unmeasured = SparkPerAccount(rings.accounts.select("account_id", F.lit(None).alias("v")),
                                 details={"new_models": ""})
    released = raw.groupBy("model").agg(F.min("h").alias("start")).toPandas()
    if released.empty:
        return unmeasured
    first = int(released["start"].min())
    new = released[released["start"] > first + 24].sort_values("model")
    if new.empty:
        return unmeasured
    window = rings.options.release_window_days * 24
    in_window, on_new = F.lit(False), F.lit(False)
    for model, start in zip(new["model"], new["start"], strict=True):
        inside = (F.col("h") >= int(start)) & (F.col("h") < F.lit(float(start) + window))
        in_window = in_window | inside
        on_new = on_new | (inside & (F.col("model") == model))
    sums = raw.groupBy("account_id").agg(
        F.sum(F.when(in_window, F.col("r")).otherwise(0.0)).alias("total"),
        F.sum(F.when(on_new, F.col("r")).otherwise(0.0)).alias("moved"))
    frame = rings.with_accounts(sums, {"total": 0.0, "moved": 0.0}).select(
        "account_id", F.when(F.col("total") > 0, _divide("moved", "total")).alias("v"))
    return SparkPerAccount(frame, details={"new_models": ", ".join(sorted(new["model"]))})


@_measures("template_concentration")
def _template_concentration(rings: SparkRings) -> PerRing:
    from pyspark.sql import functions as F

    prompts = rings.links["prompt_fingerprint"]
    row = prompts.agg(F.countDistinct("account_id").alias("senders"),
                      F.countDistinct("value").alias("templates")).first()
    assert row is not None
    senders, templates = int(row["senders"]), int(row["templates"])
    baseline = senders / templates if templates else np.nan
    who = prompts.select("account_id").distinct()
    n_senders = rings._per_ring(rings.members.join(who, "account_id").groupBy("ring").count(),
                                "count", fill=0).astype(np.int64)
    n_templates = rings._per_ring(rings.distinct_per_ring("prompt_fingerprint"), "n", fill=0
                                  ).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(n_templates > 0, n_senders / n_templates, np.nan)
    return PerRing(value, baseline=baseline, reference=baseline * _FULL_CONCENTRATION_FOLD,
                        details={"senders": n_senders, "templates": n_templates})


@_measures("reasoning_share")
def _reasoning_share(rings: SparkRings) -> SparkPerAccount:
    from pyspark.sql import functions as F

    flagged = rings.has_flag("prompt_fingerprint")
    n = rings._per_ring(rings.distinct_per_ring("prompt_fingerprint", F.col("flag")), "n",
                        fill=0).astype(float) if flagged else np.zeros(rings.n_rings)
    details = {"reasoning_templates": n}
    if not flagged:
        return SparkPerAccount(rings.accounts.select("account_id", F.lit(None).alias("v")),
                               details=details)
    sums = rings.links["prompt_fingerprint"].groupBy("account_id").agg(
        F.sum("count").alias("total"),
        F.sum(F.col("count") * F.col("flag").cast("double")).alias("on"))
    frame = rings.with_accounts(sums, {"total": 0.0, "on": 0.0}).select(
        "account_id", F.when(F.col("total") > 0, _divide("on", "total")).alias("v"))
    return SparkPerAccount(frame, details=details)


@_measures("capability_sweep")
def _capability_sweep(rings: SparkRings) -> PerRing:
    from pyspark.sql import functions as F

    targets = list(dict.fromkeys(rings.options.target_categories))
    n_targets = max(len(set(targets)), 1)
    main_share = rings.options.main_template_share
    prompts = rings.links["prompt_fingerprint"]
    per_template = prompts.groupBy("value").agg(F.sum("count").alias("c"),
                                                F.first("category").alias("category"))
    total = per_template.agg(F.sum("c")).first()[0] or 0.0  # type: ignore[index]
    main = F.col("c") >= F.lit(main_share * total) if total else F.col("c") > 0
    baseline = per_template.where(main & F.col("category").isin(targets)).select(
        "category").distinct().count() / n_targets
    used = rings.ring_links("prompt_fingerprint")
    totals = used.groupBy("ring").agg(F.sum("count").alias("total"))
    sweep = used.join(totals, "ring").where(
        (_divide("count", "total") >= main_share) & F.col("category").isin(targets)
    ).select("ring", "category").distinct().groupBy("ring").agg(
        F.count("*").alias("n"), F.array_join(F.array_sort(F.collect_list("category")), ", ")
        .alias("names"))
    rows = totals.join(sweep, "ring", "left").toPandas()
    coverage = pd.Series(rows["n"].fillna(0).to_numpy() / n_targets, index=rows["ring"])
    names = pd.Series(rows["names"].fillna("").to_numpy(dtype=object), index=rows["ring"])
    codes = np.arange(rings.n_rings)
    return PerRing(coverage.reindex(codes).to_numpy(dtype=float), baseline=baseline,
                        details={"categories": names.reindex(codes).fillna("")
                                 .to_numpy(dtype=object)})
