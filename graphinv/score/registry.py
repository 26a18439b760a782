"""The machinery features are declared and measured with (the features are in
:mod:`graphinv.score.features`).

:class:`FeatureRegistry` holds :class:`Feature` declarations; a feature's measuring
function takes the :class:`RingContext` (accounts, rings, links and usage indexed once per
call) and returns a :class:`PerAccount` or :class:`PerRing` measurement; its sentence
takes a :class:`Reading`. :class:`FeatureOptions` holds the measurement settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal, cast, get_args

import numpy as np
import pandas as pd
import pydantic

from graphinv.errors import stage_options
from graphinv.schema import Platform
from graphinv.stores.codes import factorize, positions

__all__ = [
    "AGGREGATION",
    "Feature",
    "FeatureOptions",
    "FeatureRegistry",
    "Group",
    "KindLinks",
    "Measured",
    "PerAccount",
    "PerRing",
    "Reading",
    "RingContext",
    "RingFeatures",
    "Unit",
    "Usage",
    "epoch_hours",
]

Group = Literal["infrastructure", "traffic", "content"]
Unit = Literal["share", "ratio", "inverse_ratio"]

# A feature name is a column, a TOML key and a stored JSON key.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

_Fraction = Annotated[float, pydantic.Field(gt=0, le=1)]
_Positive = Annotated[float, pydantic.Field(gt=0)]


@stage_options("scoring.features")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class FeatureOptions:
    """How features are measured. Every field has a documented default.

    Parameters
    ----------
    rate_limit : float > 0 or None
        Per-account requests per hour the platform allows. The input has no such column,
        so by default (``None``) it is inferred per ``verification_tier`` (platforms set
        limits per tier) as the ``rate_limit_quantile`` of that tier's account-hour
        requests: a hard limit is the top of that distribution. Tiers with fewer than
        ``min_tier_hours`` account-hours use the quantile over all tiers.
    rate_limit_quantile : float in (0, 1]
        Quantile used to infer the rate limit. Default ``0.999``.
    min_tier_hours : int ≥ 1
        Account-hours a tier needs for its own inferred limit. Default ``1000``.
    near_limit_fraction : float in (0, 1]
        An account-hour counts as "just below the limit" at ``>= near_limit_fraction ×
        rate_limit`` requests. Default ``0.8``.
    burst_window_hours : float > 0
        Sign-ups this close together form one burst. Default ``24``.
    farmable_signup_paths : tuple of str
        Sign-up paths that give free credit on weak verification. Default education,
        startup_program, research_access.
    main_template_share : float in (0, 1]
        A template is one of the ring's *main* templates (for ``capability_sweep``) when it
        carries at least this share of the ring's prompt traffic. Default ``0.05``.
    target_categories : tuple of str, at least one
        Capability categories that distillation sweeps: what frontier models are best at
        and a student model most wants. Default coding, math, agentic_tool_use, science,
        reasoning_puzzles.
    release_window_days : float > 0
        A model is *newly released* during its first days on the platform; traffic to it in
        this window measures ``model_pivot``. Default ``7``.

    Examples
    --------
    >>> FeatureOptions(near_limit_fraction=1.5)
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: scoring.features.near_limit_fraction = 1.5: must be ≤ 1
    """

    rate_limit: _Positive | None = None
    rate_limit_quantile: _Fraction = 0.999
    min_tier_hours: Annotated[int, pydantic.Field(ge=1)] = 1000
    near_limit_fraction: _Fraction = 0.8
    burst_window_hours: _Positive = 24.0
    farmable_signup_paths: tuple[str, ...] = ("education", "startup_program", "research_access")
    main_template_share: _Fraction = 0.05
    target_categories: Annotated[tuple[str, ...], pydantic.Field(min_length=1)] = (
        "coding", "math", "agentic_tool_use", "science", "reasoning_puzzles")
    release_window_days: _Positive = 7.0


# --- declaring features ----------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What a feature's sentence quotes.

    Attributes
    ----------
    value, baseline : float
        The ring's value and the platform's, in the feature's unit.
    ring : Mapping
        The ring's row of :attr:`RingFeatures.values`: ``size``, every feature value and
        every detail (``cards``, ``ips``, ``rate_limit``, …).
    """

    value: float
    baseline: float
    ring: Mapping[str, Any]


@dataclass(frozen=True)
class PerAccount:
    """A feature measured on every account of the platform (NaN: nothing to measure).

    The registry turns it into ring values (members' mean for a ``share``, median
    otherwise, so a few camouflaged members cannot drag a ring to the platform's typical
    level), the baseline (the same over all accounts: over accounts, not traffic, because
    pooled traffic is dominated by the heaviest senders, often the rings being scored)
    and, for ratios, the reference percentile.
    """

    values: np.ndarray
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PerRing:
    """A feature measured on each ring directly, with its own platform baseline."""

    values: np.ndarray
    baseline: float
    reference: float = np.nan
    details: Mapping[str, Any] = field(default_factory=dict)


Measure = Callable[["RingContext"], PerAccount | PerRing]


@dataclass(frozen=True)
class Feature:
    """One registered feature.

    Attributes
    ----------
    name : str
        Column, config key (``[scoring.weights]``) and stored key.
    group : {"infrastructure", "traffic", "content"}
        What it looks at; contributions and case files carry it.
    unit : {"share", "ratio", "inverse_ratio"}
        How the score compares value with baseline: ``share`` is a fraction in [0, 1],
        suspicious above the baseline; ``ratio`` a positive amount, suspicious when many
        times the baseline; ``inverse_ratio`` suspicious when many times smaller.
    weight : float
        Default weight in the score.
    label : str
        What it measures, in a few words ("accounts per payment method").
    sentence : callable
        :class:`Reading` → the sentence explaining the ring's value against the platform.
    measure : callable
        :class:`RingContext` → :class:`PerAccount` or :class:`PerRing`.
    """

    name: str
    group: Group
    unit: Unit
    weight: float
    label: str
    sentence: Callable[[Reading], str]
    measure: Measure

    def explain(self, value: float, baseline: float, ring: Mapping[str, Any]) -> str:
        """The sentence for one ring, or "not measurable" when the value is NaN."""
        if not np.isfinite(value):
            return f"{self.label}: not measurable for this ring"
        return self.sentence(Reading(value=value, baseline=baseline, ring=ring))


class FeatureRegistry:
    """The features graphinv measures and scores, in registration order.

    Iterating gives :class:`Feature` objects; ``registry[name]`` one of them.
    """

    def __init__(self) -> None:
        self._features: dict[str, Feature] = {}

    def register(
        self,
        name: str,
        *,
        group: Group,
        unit: Unit,
        weight: float,
        label: str,
        sentence: Callable[[Reading], str],
    ) -> Callable[[Measure], Measure]:
        """Decorator registering the function it wraps as feature ``name``.

        Raises
        ------
        ValueError
            ``name`` is taken or not a lower-case identifier, ``group`` or ``unit`` is
            not one of the known ones, or ``weight`` is negative.
        """
        refused = {
            f"name {name!r} is not a lower-case identifier": not _NAME.fullmatch(name),
            f"feature {name!r} is already registered": name in self._features,
            f"group {group!r} is not one of {get_args(Group)}": group not in get_args(Group),
            f"unit {unit!r} is not one of {get_args(Unit)}": unit not in get_args(Unit),
            f"weight {weight!r} is not a finite number ≥ 0": not 0 <= weight < np.inf,
        }
        problems = [message for message, failed in refused.items() if failed]
        if problems:
            raise ValueError("; ".join(problems))

        def add(measure: Measure) -> Measure:
            self._features[name] = Feature(name=name, group=group, unit=unit,
                                           weight=float(weight), label=label,
                                           sentence=sentence, measure=measure)
            return measure

        return add

    def measure(self, members: pd.DataFrame, platform: Platform, *, options: FeatureOptions
                ) -> RingFeatures:
        """Measure every registered feature for each ring, and the platform baseline.

        Raises
        ------
        ValueError
            A feature returned the wrong number of values, or a detail that clashes with
            a column.
        """
        ring = RingContext.build(members, platform, options)

        def read(spec: Feature) -> Measured:
            measured = spec.measure(ring)
            expected = ring.n_accounts if isinstance(measured, PerAccount) else ring.n_rings
            if len(measured.values) != expected:
                raise ValueError(f"feature {spec.name} returned {len(measured.values)} values, "
                                 f"not {expected}")
            if isinstance(measured, PerAccount):
                return Measured(*_aggregate(measured, spec.unit, ring), measured.details)
            return Measured(measured.values, float(measured.baseline),
                            float(measured.reference), measured.details)

        return self.assemble(ring.ring_ids, ring.size, read, rate_limits=ring.usage.rate_limits)

    def assemble(
        self,
        ring_ids: np.ndarray,
        size: np.ndarray,
        read: Callable[[Feature], Measured],
        *,
        rate_limits: pd.Series,
    ) -> RingFeatures:
        """:class:`RingFeatures` from each feature's :class:`Measured` (``read(feature)``,
        called in registration order): one table layout for every engine that measures.

        Raises
        ------
        ValueError
            A detail clashes with a column.
        """
        values = pd.DataFrame(index=pd.Index(ring_ids, name="ring_id"))
        values["size"] = size
        baseline: dict[str, float] = {}
        reference: dict[str, float] = {}
        details: dict[str, Any] = {}
        for spec in self:
            measured = read(spec)
            values[spec.name], baseline[spec.name] = measured.values, measured.baseline
            if spec.unit != "share":
                reference[spec.name] = measured.reference
            clash = sorted(set(measured.details) & ({"size", *self.names()} | set(details)))
            if clash:
                raise ValueError(f"feature {spec.name} reports detail(s) {clash} that another "
                                 "column already holds")
            details.update(measured.details)
        for name, column in details.items():
            values[name] = column
        return RingFeatures(
            values=values,
            baseline=pd.Series(baseline, dtype=float),
            reference=pd.Series(reference, dtype=float),
            rate_limits=rate_limits,
        )

    def unregister(self, name: str) -> None:
        """Remove feature ``name`` (a feature tried out in a notebook or a test)."""
        del self._features[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._features)

    def default_weights(self) -> dict[str, float]:
        """Feature name → default weight, ready for a ``[scoring.weights]`` table."""
        return {f.name: f.weight for f in self}

    def __getitem__(self, name: str) -> Feature:
        return self._features[name]

    def __contains__(self, name: object) -> bool:
        return name in self._features

    def __iter__(self) -> Iterator[Feature]:
        return iter(tuple(self._features.values()))

    def __len__(self) -> int:
        return len(self._features)


@dataclass(frozen=True)
class RingFeatures:
    """Feature values of rings and the platform's baseline for each.

    Attributes
    ----------
    values : DataFrame
        Indexed by ``ring_id``: ``size``, one column per feature of the registry,
        then the details the explanations quote (``card_members``, ``cards``,
        ``prepaid_cards``, ``ips``, ``burst_members``, ``rate_limit``, ``new_models``,
        ``senders``, ``templates``, ``reasoning_templates``, ``categories``). NaN where
        the input has nothing to measure (no IP attributes, no prompt links, too few
        active hours).
    baseline : Series
        Per feature, the platform-wide value.
    reference : Series
        Per ``ratio`` / ``inverse_ratio`` feature, the platform's extreme: the 99th (for
        age the 1st) percentile of the per-account values.
    rate_limits : Series
        Per verification tier (``"*"`` for all tiers), the rate limit used, given or
        inferred.
    """

    values: pd.DataFrame
    baseline: pd.Series
    reference: pd.Series
    rate_limits: pd.Series


#: How a per-account feature becomes ring values, baseline and reference, by unit: the
#: statistic over members (and over all accounts for the baseline) and the reference
#: percentile (None: no reference). Every engine reads it from here.
AGGREGATION: dict[Unit, tuple[Literal["mean", "median"], float | None]] = {
    "share": ("mean", None),
    "ratio": ("median", 0.99),
    "inverse_ratio": ("median", 0.01),
}


@dataclass(frozen=True)
class Measured:
    """One feature, measured: per ring values (ring-code order), baseline, reference
    (NaN for shares) and details."""

    values: np.ndarray
    baseline: float
    reference: float
    details: Mapping[str, Any]


def _aggregate(measured: PerAccount, unit: Unit, ring: RingContext
               ) -> tuple[np.ndarray, float, float]:
    """Ring values, baseline and reference of a per-account feature (:data:`AGGREGATION`)."""
    column = pd.Series(np.asarray(measured.values, dtype=float))
    statistic, q = AGGREGATION[unit]
    if statistic == "mean":
        values, base = ring.mean_by_ring(column.to_numpy()), float(column.mean())
    else:
        values, base = ring.median_by_ring(column.to_numpy()), float(column.median())
    return values, base, np.nan if q is None else float(column.quantile(q))


# --- what features measure from --------------------------------------------------------


@dataclass(frozen=True)
class KindLinks:
    """Links of one kind with integer codes: ``_a`` (account), ``_v`` (value), ``count``;
    and per value code the attribute that kind's features need."""

    rows: pd.DataFrame
    values: pd.Index  # value of each ``_v`` code
    flag: np.ndarray | None = None  # prepaid card / datacenter-or-proxy IP / reasoning
    category: np.ndarray | None = None  # template category


@dataclass(frozen=True)
class Usage:
    """Usage summed over models per account-hour, the unit rate limits apply to."""

    account: np.ndarray
    hour: np.ndarray
    requests: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    raw: pd.DataFrame  # per account-hour-model rows with integer codes, for model_pivot
    limit: np.ndarray  # rate limit of each account, by its tier
    rate_limits: pd.Series
    n_accounts: int

    @classmethod
    def build(
        cls, usage: pd.DataFrame, accounts: pd.DataFrame, index: pd.Index,
        options: FeatureOptions,
    ) -> Usage:
        code = positions(usage["account_id"], index)
        keep = code >= 0
        model, models = _sorted_codes(usage["model"].astype(str), keep)
        raw = pd.DataFrame({
            "a": code[keep],
            "h": epoch_hours(usage["hour"])[keep] if len(usage) else np.zeros(0, np.int64),
            "model": pd.Categorical.from_codes(model, categories=models),
            "r": usage["requests"].to_numpy(dtype=float)[keep],
            "i": usage["input_tokens"].to_numpy(dtype=float)[keep],
            "o": usage["output_tokens"].to_numpy(dtype=float)[keep],
        })
        # One int64 key per account-hour, numbered in order of first appearance (as a
        # groupby without sorting would): hashing one column beats grouping on two.
        first_hour = int(raw["h"].min()) if len(raw) else 0
        span = int(raw["h"].max()) - first_hour + 1 if len(raw) else 1
        slot, keys = _first_seen_codes(
            raw["a"].to_numpy() * np.int64(span) + (raw["h"].to_numpy() - first_hour))
        n_slots = len(keys)
        account = keys // span
        hourly = pd.DataFrame({
            "h": keys % span + first_hour,
            **{c: np.bincount(slot, weights=raw[c].to_numpy(), minlength=n_slots)
               for c in ("r", "i", "o")},
        })
        tier_codes, limits = _rate_limits(accounts, account, hourly["r"].to_numpy(), options)
        return cls(
            account=account,
            hour=hourly["h"].to_numpy(),
            requests=hourly["r"].to_numpy(),
            input_tokens=hourly["i"].to_numpy(),
            output_tokens=hourly["o"].to_numpy(),
            raw=raw,
            limit=limits.to_numpy()[tier_codes],
            rate_limits=limits,
            n_accounts=len(index),
        )

    def per_account(self, weights: np.ndarray) -> np.ndarray:
        """Sum of ``weights`` (one per account-hour) per account."""
        return np.bincount(self.account, weights=weights, minlength=self.n_accounts)

    @cached_property
    def active_days(self) -> np.ndarray:
        """Days with any traffic, per account."""
        if not len(self.account):
            return np.zeros(self.n_accounts)
        # Sorting beats numpy's hash-based unique on millions of int64 keys.
        days = np.sort(self.account * np.int64(1 << 32) + self.hour // 24)
        days = days[np.r_[True, days[1:] != days[:-1]]]
        return np.bincount((days >> 32).astype(np.int64),
                           minlength=self.n_accounts).astype(float)


@dataclass(frozen=True)
class RingContext:
    """Everything a feature measures from, indexed once per :func:`ring_features` call.

    Accounts are numbered by their row in ``platform.accounts`` (the *account code*),
    rings by their sorted ``ring_id`` (the *ring code*).

    Attributes
    ----------
    platform : Platform
        The platform's tables; ``labels`` is never read.
    options : FeatureOptions
    ring_ids : ndarray
        ``ring_id`` of each ring code.
    ring_of, member_code : ndarray
        Per membership (members of unknown accounts left out): ring code, account code.
    links : Mapping
        Per core link kind, its :class:`KindLinks`.
    usage : Usage
    """

    platform: Platform
    options: FeatureOptions
    ring_ids: np.ndarray
    ring_of: np.ndarray
    member_code: np.ndarray
    links: Mapping[str, KindLinks]
    usage: Usage

    @classmethod
    def build(cls, members: pd.DataFrame, platform: Platform, options: FeatureOptions
              ) -> RingContext:
        accounts = platform.accounts
        index = pd.Index(accounts["account_id"].astype(str))
        codes, uniques = pd.factorize(members["ring_id"], sort=True)
        member_code = positions(members["account_id"], index)
        known = member_code >= 0
        return cls(
            platform=platform,
            options=options,
            ring_ids=np.asarray(uniques),
            ring_of=codes[known],
            member_code=member_code[known],
            links=_links_by_kind(platform, index),
            usage=Usage.build(platform.usage, accounts, index, options),
        )

    @property
    def n_accounts(self) -> int:
        return len(self.platform.accounts)

    @property
    def n_rings(self) -> int:
        return len(self.ring_ids)

    @cached_property
    def size(self) -> np.ndarray:
        """Known members per ring."""
        return np.bincount(self.ring_of, minlength=self.n_rings)

    def sum_by_ring(self, per_account: np.ndarray) -> np.ndarray:
        """Per ring, the sum of a per-account array over the members (NaN: no members)."""
        return self._by_ring(self._members_of(per_account).sum())

    def mean_by_ring(self, per_account: np.ndarray) -> np.ndarray:
        """Per ring, the members' mean of a per-account array, NaN values left out."""
        return self._by_ring(self._members_of(per_account).mean())

    def median_by_ring(self, per_account: np.ndarray) -> np.ndarray:
        """Per ring, the members' median of a per-account array, NaN values left out."""
        return self._by_ring(self._members_of(per_account).median())

    @cached_property
    def ring_links(self) -> Mapping[str, pd.DataFrame]:
        """Per link kind, the distinct (``_ring``, ``_v``) pairs of the rings' members with
        their summed ``count``."""
        member = pd.DataFrame({"_ring": self.ring_of, "_a": self.member_code})
        return {
            kind: cast(pd.DataFrame, member.merge(links.rows, on="_a")
                       .groupby(["_ring", "_v"], as_index=False, sort=False)["count"].sum())
            for kind, links in self.links.items()
        }

    @cached_property
    def member_hours(self) -> pd.DataFrame:
        """``_ring, a, h, r``: the members' account-hours (requests ``r``), per ring."""
        usage = self.usage
        hourly = pd.DataFrame({"a": usage.account, "h": usage.hour, "r": usage.requests})
        return pd.DataFrame({"_ring": self.ring_of, "a": self.member_code}).merge(
            hourly, on="a")

    @cached_property
    def ips_per_account(self) -> np.ndarray:
        """Distinct IPs per account."""
        return np.bincount(self.links["ip"].rows["_a"], minlength=self.n_accounts).astype(float)

    @cached_property
    def traffic(self) -> pd.DataFrame:
        """Per account: total ``requests``, ``input_tokens``, ``output_tokens``."""
        usage = self.usage
        return pd.DataFrame({
            "requests": usage.per_account(usage.requests),
            "input_tokens": usage.per_account(usage.input_tokens),
            "output_tokens": usage.per_account(usage.output_tokens),
        })

    def _members_of(self, per_account: np.ndarray) -> Any:
        return pd.Series(np.asarray(per_account)[self.member_code]).groupby(self.ring_of)

    def _by_ring(self, series: pd.Series) -> np.ndarray:
        return series.reindex(np.arange(self.n_rings)).to_numpy(dtype=float)


# --- indexing helpers ------------------------------------------------------------------


def epoch_hours(stamps: pd.Series) -> np.ndarray:
    """Whole hours since 1970-01-01 UTC."""
    naive = pd.to_datetime(stamps, utc=True).dt.tz_localize(None)
    return naive.to_numpy().astype("datetime64[h]").astype(np.int64)


def _positions(values: pd.Index, table: pd.DataFrame, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The attribute table and, per value, its row there (−1 if none; the first row of a
    repeated key, without a uniqueness check that costs seconds on millions of keys)."""
    return table, positions(values, table[key].astype(str))


def _flag(table: pd.DataFrame, position: np.ndarray, columns: tuple[str, ...]
          ) -> np.ndarray | None:
    """Per value, whether any of ``columns`` is true; None when all columns are missing."""
    if not any(c in table for c in columns):
        return None
    flagged = np.zeros(len(table), dtype=bool)
    for column in columns:
        if column in table:
            flagged |= table[column].fillna(False).astype(bool).to_numpy()
    return np.where(position >= 0, flagged[np.maximum(position, 0)], False)


def _category(table: pd.DataFrame, position: np.ndarray) -> np.ndarray | None:
    if "category" not in table:
        return None
    out = np.full(len(position), None, dtype=object)
    known = position >= 0
    out[known] = table["category"].astype(object).to_numpy()[position[known]]
    return out


def _links_by_kind(platform: Platform, index: pd.Index) -> dict[str, KindLinks]:
    links = platform.links
    # Strings are hashed once for all kinds; each kind's values are then numbered in order
    # of first appearance among its own rows, as factorising its strings alone would.
    kind_code, kind_names = pd.factorize(links["kind"].astype(str))
    every_account = positions(links["account_id"], index)
    every_value, every_unique = factorize(links["value"].astype(str))
    counts = links["count"].fillna(1).to_numpy(dtype=float)
    out = {}
    for kind, table, key, columns in (
        ("payment_method", platform.payment_methods, "fingerprint", ("prepaid",)),
        ("ip", platform.ips, "ip", ("is_datacenter", "is_proxy")),
        ("prompt_fingerprint", platform.prompt_fingerprints, "fingerprint",
         ("elicits_reasoning",)),
    ):
        of_kind = kind_code == (kind_names.get_loc(kind) if kind in kind_names else -2)
        account = every_account[of_kind]
        keep = account >= 0
        value, first = pd.factorize(every_value[of_kind][keep])
        values = every_unique.take(first)
        flag = category = None
        if table is not None:
            table, position = _positions(values, table, key)
            flag = _flag(table, position, columns)
            if kind == "prompt_fingerprint":
                category = _category(table, position)
        out[kind] = KindLinks(
            rows=pd.DataFrame({
                "_a": account[keep], "_v": value,
                "count": counts[of_kind][keep],
            }),
            values=values,
            flag=flag,
            category=category,
        )
    return out


def _sorted_codes(values: pd.Series, keep: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(values[keep], sort=True)``, from the whole column's codes instead of
    filtering millions of strings and hashing them again (few distinct values: models).

    Examples
    --------
    >>> column = pd.Series(["m2", "m1", "m3", "m2"], dtype="str")
    >>> codes, names = _sorted_codes(column, np.array([True, True, False, True]))
    >>> codes.tolist(), names.tolist()
    ([1, 0, 1], ['m1', 'm2'])
    """
    every, names = pd.factorize(values)
    # Usually every row is kept: no copy of ten million codes then.
    kept = every if keep.all() else every[keep]
    del every
    present = np.flatnonzero(np.bincount(kept[kept >= 0], minlength=len(names)))
    order = np.argsort(np.asarray(names[present], dtype=object), kind="stable")
    renumber = np.full(len(names) + 1, -1, dtype=np.intp)  # the last slot keeps -1 (missing)
    renumber[present[order]] = np.arange(len(present))
    return renumber[kept], names[present[order]]


def _first_seen_codes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(key)`` for int64 keys: codes in order of first appearance, and the
    keys. Keys already sorted (usage read ordered by account and hour) are numbered in
    one pass instead of hashed; their first appearance is their sorted order.

    Examples
    --------
    >>> [c.tolist() for c in _first_seen_codes(np.array([3, 3, 5, 9, 9]))]
    [[0, 0, 1, 2, 2], [3, 5, 9]]
    >>> [c.tolist() for c in _first_seen_codes(np.array([9, 3, 9]))]
    [[0, 1, 0], [9, 3]]
    """
    if len(key) and bool(np.all(key[1:] >= key[:-1])):
        new = np.r_[True, key[1:] != key[:-1]]
        codes = np.cumsum(new)
        codes -= 1
        return codes, key[new]
    codes, uniques = pd.factorize(key)
    return codes, np.asarray(uniques, dtype=np.int64)


def _rate_limits(
    accounts: pd.DataFrame, account: np.ndarray, requests: np.ndarray, options: FeatureOptions
) -> tuple[np.ndarray, pd.Series]:
    """Each account's tier code and the limit of every tier; the last entry, ``"*"``, is
    the limit over all tiers, used by accounts whose tier is unknown or too rare."""
    if options.rate_limit is not None:
        return np.zeros(len(accounts), dtype=np.int64), pd.Series({"*": options.rate_limit})
    if "verification_tier" in accounts:
        codes, names = pd.factorize(accounts["verification_tier"].astype("string"))
    else:
        codes, names = np.full(len(accounts), -1), pd.Index([])
    n_tiers = len(names)
    codes = np.where(codes < 0, n_tiers, codes)
    overall = np.quantile(requests, options.rate_limit_quantile) if len(requests) else np.nan
    limits = np.full(n_tiers + 1, float(overall))
    hour_tier = codes[account]
    for t in range(n_tiers):
        tier_requests = requests[hour_tier == t]
        if len(tier_requests) >= options.min_tier_hours:
            limits[t] = np.quantile(tier_requests, options.rate_limit_quantile)
    return codes, pd.Series(limits, index=[*map(str, names), "*"])
