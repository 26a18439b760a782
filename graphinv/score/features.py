"""Extraction features of rings, each next to the platform's own baseline.

A ring is a set of accounts (a ``members`` frame of ``ring_id, account_id``). Every feature
is one number per ring in a unit a person can check (accounts per card, share of traffic,
days), together with the same number for the platform as a whole (the *baseline*) and,
for unbounded ratios, the platform's extreme (the *reference*, its 99th percentile). The
score turns value, baseline and reference into a suspicion in [0, 1]; this module only
measures.

Per-account aggregates are computed once for the whole platform with vectorised
group-bys (they are also what the baselines are made of); ring values are then
group-bys of the members' rows. Labels are never read.

Examples
--------
>>> import pandas as pd
>>> from graphinv.schema import Platform
>>> t = pd.Timestamp("2025-03-01", tz="UTC")
>>> accounts = pd.DataFrame({"account_id": ["a", "b", "c", "d"], "created_at": t})
>>> links = pd.DataFrame({
...     "account_id": ["a", "b", "c", "d"], "kind": "payment_method",
...     "value": ["card1", "card1", "card1", "card2"],
...     "first_seen": t, "last_seen": t, "count": 1,
... })
>>> usage = pd.DataFrame({
...     "account_id": ["a", "b", "c", "d"], "hour": t, "model": "m1",
...     "requests": 10, "input_tokens": 100, "output_tokens": [400, 400, 400, 100],
... })
>>> platform = Platform(accounts=accounts, links=links, usage=usage)
>>> members = pd.DataFrame({"ring_id": "r1", "account_id": ["a", "b", "c"]})
>>> found = ring_features(members, platform)
>>> float(found.values.loc["r1", "accounts_per_card"])
3.0
>>> float(found.values.loc["r1", "output_input_ratio"]), float(found.baseline["output_input_ratio"])
(4.0, 4.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphinv.schema import Platform

__all__ = ["FEATURES", "FeatureOptions", "FeatureSpec", "RingFeatures", "ring_features"]

# Rhythm statistics need at least a day's worth of active hours to mean anything.
_MIN_RHYTHM_HOURS = 24
_NIGHT_HOURS = 8
# Ring-level ratios have no per-account distribution to take a 99th percentile from: ten
# times the platform's value counts as fully suspicious.
_FULL_CONCENTRATION_FOLD = 10.0


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature measures and which direction is suspicious.

    ``kind`` tells the score how to compare value with baseline: ``share`` (a fraction in
    [0, 1], suspicious above the baseline), ``ratio`` (a positive quantity, suspicious when
    many times the baseline) or ``inverse_ratio`` (suspicious when many times smaller).
    """

    name: str
    group: str
    kind: str
    label: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("accounts_per_card", "infrastructure", "ratio", "accounts per payment method"),
    FeatureSpec("prepaid_share", "infrastructure", "share", "members paying by prepaid card"),
    FeatureSpec("datacenter_proxy_share", "infrastructure", "share",
                "IPs that are datacenter or proxy"),
    FeatureSpec("ip_rotation", "infrastructure", "ratio", "distinct IPs per active day"),
    FeatureSpec("signup_burst", "infrastructure", "share", "members created in one burst"),
    FeatureSpec("account_age_days", "infrastructure", "inverse_ratio", "account age (days)"),
    FeatureSpec("farmable_signup_share", "infrastructure", "share",
                "members signed up through programs easy to farm"),
    FeatureSpec("requests_per_account", "traffic", "ratio", "requests per account"),
    FeatureSpec("tokens_per_account", "traffic", "ratio", "tokens per account"),
    FeatureSpec("output_input_ratio", "traffic", "ratio", "output/input token ratio"),
    FeatureSpec("near_rate_limit_share", "traffic", "share",
                "traffic in hours just below the rate limit"),
    FeatureSpec("around_the_clock", "traffic", "share",
                "traffic in the quietest 8 hours of the day, against an even spread"),
    FeatureSpec("load_balancing", "traffic", "share", "regularity of members taking turns"),
    FeatureSpec("model_pivot", "traffic", "share", "traffic moved to newly released models"),
    FeatureSpec("template_concentration", "content", "ratio", "accounts per prompt template"),
    FeatureSpec("reasoning_share", "content", "share",
                "prompt traffic on reasoning-eliciting templates"),
    FeatureSpec("capability_sweep", "content", "share",
                "target capabilities covered by the ring's main templates"),
)


@dataclass(frozen=True)
class FeatureOptions:
    """How features are measured. Every field has a documented default.

    Parameters
    ----------
    rate_limit : float or None
        Per-account requests per hour the platform allows. The input has no such column,
        so by default (``None``) it is inferred per ``verification_tier`` (platforms set
        limits per tier) as the ``rate_limit_quantile`` of that tier's account-hour
        requests: a hard limit is the top of that distribution. Tiers with fewer than
        ``min_tier_hours`` account-hours use the quantile over all tiers.
    rate_limit_quantile : float
        Quantile used to infer the rate limit. Default ``0.999``.
    min_tier_hours : int
        Account-hours a tier needs for its own inferred limit. Default ``1000``.
    near_limit_fraction : float
        An account-hour counts as "just below the limit" at ``>= near_limit_fraction ×
        rate_limit`` requests. Default ``0.8``.
    burst_window_hours : float
        Sign-ups this close together form one burst. Default ``24``.
    farmable_signup_paths : tuple of str
        Sign-up paths that give free credit on weak verification. Default education,
        startup_program, research_access.
    main_template_share : float
        A template is one of the ring's *main* templates (for ``capability_sweep``) when it
        carries at least this share of the ring's prompt traffic. Default ``0.05``.
    target_categories : tuple of str
        Capability categories that distillation sweeps: what frontier models are best at
        and a student model most wants. Default coding, math, agentic_tool_use, science,
        reasoning_puzzles.
    release_window_days : float
        A model is *newly released* during its first days on the platform; traffic to it in
        this window measures ``model_pivot``. Default ``7``.
    """

    rate_limit: float | None = None
    rate_limit_quantile: float = 0.999
    min_tier_hours: int = 1000
    near_limit_fraction: float = 0.8
    burst_window_hours: float = 24.0
    farmable_signup_paths: tuple[str, ...] = ("education", "startup_program", "research_access")
    main_template_share: float = 0.05
    target_categories: tuple[str, ...] = (
        "coding", "math", "agentic_tool_use", "science", "reasoning_puzzles")
    release_window_days: float = 7.0


@dataclass(frozen=True)
class RingFeatures:
    """Feature values of rings and the platform's baseline for each.

    Attributes
    ----------
    values : DataFrame
        Indexed by ``ring_id``: ``size`` and one column per feature of ``FEATURES``, plus
        the counts the explanations quote (``card_members``, ``cards``, ``rate_limit``,
        ``prepaid_cards``, ``ips``, ``burst_members``, ``senders``, ``templates``,
        ``reasoning_templates``, ``categories``, ``new_models``). NaN where the input
        has nothing to measure (no IP attributes, no prompt links, too few active hours).
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


def ring_features(
    members: pd.DataFrame, platform: Platform, *, options: FeatureOptions = FeatureOptions()
) -> RingFeatures:
    """Measure every feature of ``FEATURES`` for each ring, and the platform baseline.

    Parameters
    ----------
    members : DataFrame
        ``ring_id, account_id``; an account may sit in several rings.
    platform : Platform
        The platform's tables; ``labels`` is never read.
    options : FeatureOptions
        Measurement settings.

    Returns
    -------
    RingFeatures

    Examples
    --------
    >>> import pandas as pd
    >>> from graphinv.schema import Platform
    >>> t = pd.Timestamp("2025-03-01", tz="UTC")
    >>> accounts = pd.DataFrame({"account_id": ["a", "b"], "created_at": t,
    ...                          "signup_path": ["education", "self_serve"]})
    >>> links = pd.DataFrame(columns=["account_id", "kind", "value", "first_seen",
    ...                               "last_seen", "count"])
    >>> usage = pd.DataFrame(columns=["account_id", "hour", "model", "requests",
    ...                               "input_tokens", "output_tokens"])
    >>> found = ring_features(pd.DataFrame({"ring_id": "r", "account_id": ["a", "b"]}),
    ...                       Platform(accounts=accounts, links=links, usage=usage))
    >>> float(found.values.loc["r", "farmable_signup_share"])
    0.5
    """
    accounts = platform.accounts
    index = pd.Index(accounts["account_id"].astype(str))
    ring_ids, ring_of = _ring_codes(members)
    member_code = index.get_indexer(members["account_id"].astype(str))
    known = member_code >= 0
    ring_of, member_code = ring_of[known], member_code[known]
    n_rings = len(ring_ids)

    usage = _Usage.build(platform.usage, accounts, index, options)
    per_account = pd.DataFrame(index=np.arange(len(index)))
    baseline: dict[str, float] = {}
    reference: dict[str, float] = {}
    values = pd.DataFrame(index=pd.Index(ring_ids, name="ring_id"))
    values["size"] = np.bincount(ring_of, minlength=n_rings)

    links = _links_by_kind(platform, index)
    _infrastructure(platform, links, usage, per_account, options)
    new_models = _traffic(usage, per_account, options)
    _reasoning(platform, links, per_account)

    # Per-account features: ring value = the members' mean (shares) or median (amounts, so
    # a few camouflaged members cannot drag the ring to the platform's typical level).
    # Baselines are over accounts, not over traffic: pooled traffic would be dominated by
    # the heaviest senders, who are often the very rings being scored.
    member_rows = per_account.iloc[member_code].assign(_ring=ring_of)
    grouped = member_rows.groupby("_ring")
    for spec in FEATURES:
        if spec.name not in per_account:
            continue
        column = per_account[spec.name]
        if spec.kind == "share":
            values[spec.name] = _by_ring(grouped[spec.name].mean(), n_rings)
            baseline[spec.name] = float(column.mean())
        else:
            values[spec.name] = _by_ring(grouped[spec.name].median(), n_rings)
            baseline[spec.name] = float(column.median())
            q = 0.01 if spec.kind == "inverse_ratio" else 0.99
            reference[spec.name] = float(column.quantile(q))
    values["card_members"] = _by_ring(grouped["_has_card"].sum(), n_rings)
    values["rate_limit"] = _by_ring(
        pd.Series(usage.limit[member_code]).groupby(ring_of).median(), n_rings)
    values["new_models"] = new_models

    _ring_cards(platform, links, ring_of, member_code, values)
    _ring_ips(links, ring_of, member_code, values)
    _ring_burst(accounts, ring_of, member_code, values, baseline, options)
    _ring_timing(usage, ring_of, member_code, values, baseline)
    _ring_content(platform, links, ring_of, member_code, values, baseline, reference, options)
    # A table the platform does not export (ips, signup_path, …) leaves its feature
    # unmeasured: NaN, which the score treats as no evidence.
    for spec in FEATURES:
        if spec.name not in values:
            values[spec.name] = np.nan
    return RingFeatures(
        values=values,
        baseline=pd.Series(baseline).reindex([f.name for f in FEATURES]),
        reference=pd.Series(reference, dtype=float),
        rate_limits=usage.rate_limits,
    )


def _ring_codes(members: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(members["ring_id"], sort=True)
    return np.asarray(uniques), codes


def _by_ring(series: pd.Series, n_rings: int) -> np.ndarray:
    return series.reindex(np.arange(n_rings)).to_numpy(dtype=float)


def _hours(stamps: pd.Series) -> np.ndarray:
    naive = pd.to_datetime(stamps, utc=True).dt.tz_localize(None)
    return naive.to_numpy().astype("datetime64[h]").astype(np.int64)


@dataclass(frozen=True)
class _KindLinks:
    """Links of one kind with integer codes: ``_a`` (account), ``_v`` (value), ``count``;
    and per value code the attribute that kind's features need."""

    rows: pd.DataFrame
    values: pd.Index  # value of each ``_v`` code
    flag: np.ndarray | None = None  # prepaid card / datacenter-or-proxy IP / reasoning
    category: np.ndarray | None = None  # template category


def _positions(values: pd.Index, table: pd.DataFrame, key: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The attribute table (first row per key) and, per value, its row there (−1 if none)."""
    keys = pd.Index(table[key].astype(str))
    if not keys.is_unique:
        table = table.loc[~keys.duplicated()]
        keys = keys[~keys.duplicated()]
    return table, keys.get_indexer(values)


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


def _links_by_kind(platform: Platform, index: pd.Index) -> dict[str, _KindLinks]:
    links = platform.links
    out = {}
    for kind, table, key, columns in (
        ("payment_method", platform.payment_methods, "fingerprint", ("prepaid",)),
        ("ip", platform.ips, "ip", ("is_datacenter", "is_proxy")),
        ("prompt_fingerprint", platform.prompt_fingerprints, "fingerprint",
         ("elicits_reasoning",)),
    ):
        rows = links.loc[links["kind"] == kind, ["account_id", "value", "count"]]
        account = index.get_indexer(rows["account_id"])
        keep = account >= 0
        value, uniques = pd.factorize(rows["value"].astype(str).to_numpy()[keep])
        values = pd.Index(uniques)
        flag = category = None
        if table is not None:
            table, position = _positions(values, table, key)
            flag = _flag(table, position, columns)
            if kind == "prompt_fingerprint":
                category = _category(table, position)
        out[kind] = _KindLinks(
            rows=pd.DataFrame({
                "_a": account[keep], "_v": value,
                "count": rows["count"].fillna(1).to_numpy(dtype=float)[keep],
            }),
            values=values,
            flag=flag,
            category=category,
        )
    return out


@dataclass(frozen=True)
class _Usage:
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
    ) -> _Usage:
        code = index.get_indexer(usage["account_id"].astype(str))
        keep = code >= 0
        raw = pd.DataFrame({
            "a": code[keep],
            "h": _hours(usage["hour"])[keep] if len(usage) else np.zeros(0, np.int64),
            "model": pd.Categorical(usage["model"].astype(str).to_numpy()[keep]),
            "r": usage["requests"].to_numpy(dtype=float)[keep],
            "i": usage["input_tokens"].to_numpy(dtype=float)[keep],
            "o": usage["output_tokens"].to_numpy(dtype=float)[keep],
        })
        hourly = raw.groupby(["a", "h"], sort=False)[["r", "i", "o"]].sum().reset_index()
        account = hourly["a"].to_numpy()
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
        return np.bincount(self.account, weights=weights, minlength=self.n_accounts)


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


def _infrastructure(
    platform: Platform,
    links: dict[str, _KindLinks],
    usage: _Usage,
    per_account: pd.DataFrame,
    options: FeatureOptions,
) -> None:
    n = usage.n_accounts
    accounts = platform.accounts

    card_links = links["payment_method"]
    cards = card_links.rows
    # The input contract keys links by (account, kind, value): one row per account and card.
    card_degree = np.bincount(cards["_v"], minlength=len(card_links.values))[cards["_v"]]
    # An account without a card shares nothing: it counts as 1 account per card, so
    # adding any card link can only raise the value (never lower it).
    most_shared = np.ones(n)
    np.maximum.at(most_shared, cards["_a"].to_numpy(), card_degree.astype(float))
    per_account["accounts_per_card"] = most_shared
    has_card = np.zeros(n, dtype=bool)
    has_card[cards["_a"].to_numpy()] = True
    per_account["_has_card"] = has_card

    prepaid = np.zeros(n)
    is_prepaid = card_links.flag
    if is_prepaid is not None:
        prepaid[cards["_a"].to_numpy()[is_prepaid[cards["_v"]]]] = 1.0
    per_account["prepaid_share"] = prepaid

    ips = links["ip"].rows
    n_ips = np.bincount(ips["_a"], minlength=n).astype(float)
    flagged = links["ip"].flag
    if flagged is not None:
        n_flagged = np.bincount(ips["_a"], weights=flagged[ips["_v"]], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_account["datacenter_proxy_share"] = np.where(n_ips > 0, n_flagged / n_ips, 0.0)

    active_days = _active_days(usage)
    with np.errstate(invalid="ignore", divide="ignore"):
        rotation = np.where(active_days > 0, n_ips / np.maximum(active_days, 1), np.nan)
    per_account["ip_rotation"] = rotation

    created = _hours(accounts["created_at"]).astype(float)
    end = max(usage.hour.max(initial=np.iinfo(np.int64).min), int(created.max(initial=0)))
    # +1 day so that an account created in the last hour has a finite ratio to the median.
    per_account["account_age_days"] = np.maximum(end - created, 0) / 24.0 + 1.0

    if "signup_path" in accounts:
        paths = accounts["signup_path"].astype("string").isin(options.farmable_signup_paths)
        per_account["farmable_signup_share"] = paths.fillna(False).to_numpy(dtype=float)


def _active_days(usage: _Usage) -> np.ndarray:
    if not len(usage.account):
        return np.zeros(usage.n_accounts)
    days = np.unique(usage.account * np.int64(1 << 32) + usage.hour // 24)
    return np.bincount((days >> 32).astype(np.int64), minlength=usage.n_accounts).astype(float)


def _traffic(usage: _Usage, per_account: pd.DataFrame, options: FeatureOptions) -> str:
    """Volume, output ratio, near-limit and model-pivot shares per account; returns the
    names of the models released during the data."""
    requests = usage.per_account(usage.requests)
    inputs = usage.per_account(usage.input_tokens)
    outputs = usage.per_account(usage.output_tokens)
    near = usage.requests >= options.near_limit_fraction * usage.limit[usage.account]
    active = requests > 0
    # Inactive accounts would pull every traffic median to zero; they are not the peer
    # group a ring's traffic is compared with.
    with np.errstate(invalid="ignore", divide="ignore"):
        per_account["requests_per_account"] = np.where(active, requests, np.nan)
        per_account["tokens_per_account"] = np.where(active, inputs + outputs, np.nan)
        per_account["output_input_ratio"] = np.where(
            active & (inputs > 0), outputs / np.maximum(inputs, 1), np.nan)
        per_account["near_rate_limit_share"] = np.where(
            active, usage.per_account(np.where(near, usage.requests, 0.0)) / requests, np.nan)
    return _model_pivot(usage, per_account, options)


def _model_pivot(usage: _Usage, per_account: pd.DataFrame, options: FeatureOptions) -> str:
    raw = usage.raw
    if not len(raw):
        return ""
    released = raw.groupby("model", observed=True)["h"].min()
    # A model already there on the first day of data was not released during it.
    new = released[released > raw["h"].min() + 24]
    if new.empty:
        return ""
    window = options.release_window_days * 24
    hour, requests = raw["h"].to_numpy(), raw["r"].to_numpy()
    model = raw["model"].cat.codes.to_numpy()
    in_window = np.zeros(len(raw), dtype=bool)
    on_new = np.zeros(len(raw), dtype=bool)
    for name, start in new.items():
        inside = (hour >= start) & (hour < start + window)
        in_window |= inside
        on_new |= inside & (model == raw["model"].cat.categories.get_loc(name))
    account = raw["a"].to_numpy()
    total = np.bincount(account, weights=np.where(in_window, requests, 0.0),
                        minlength=usage.n_accounts)
    moved = np.bincount(account, weights=np.where(on_new, requests, 0.0),
                        minlength=usage.n_accounts)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_account["model_pivot"] = np.where(total > 0, moved / total, np.nan)
    return ", ".join(sorted(new.index.astype(str)))


def _reasoning(
    platform: Platform, links: dict[str, _KindLinks], per_account: pd.DataFrame
) -> None:
    prompts = links["prompt_fingerprint"]
    rows = prompts.rows
    reasoning = prompts.flag
    if reasoning is None:
        return
    n = len(per_account)
    total = np.bincount(rows["_a"], weights=rows["count"], minlength=n)
    on = np.bincount(rows["_a"], weights=rows["count"] * reasoning[rows["_v"]], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_account["reasoning_share"] = np.where(total > 0, on / total, np.nan)


def _ring_cards(
    platform: Platform,
    links: dict[str, _KindLinks],
    ring_of: np.ndarray,
    member_code: np.ndarray,
    values: pd.DataFrame,
) -> None:
    used = _ring_values(links["payment_method"], ring_of, member_code)
    n_rings = len(values)
    values["cards"] = np.bincount(used["_ring"], minlength=n_rings)
    prepaid = links["payment_method"].flag
    weight = prepaid[used["_v"]] if prepaid is not None else np.zeros(len(used))
    values["prepaid_cards"] = np.bincount(used["_ring"], weights=weight, minlength=n_rings)


def _ring_ips(
    links: dict[str, _KindLinks],
    ring_of: np.ndarray,
    member_code: np.ndarray,
    values: pd.DataFrame,
) -> None:
    used = _ring_values(links["ip"], ring_of, member_code)
    values["ips"] = np.bincount(used["_ring"], minlength=len(values))


def _ring_values(kind: _KindLinks, ring_of: np.ndarray, member_code: np.ndarray
                 ) -> pd.DataFrame:
    """Distinct (ring, value code) pairs with the summed ``count`` of the ring's members."""
    member = pd.DataFrame({"_ring": ring_of, "_a": member_code})
    rows = member.merge(kind.rows, on="_a")
    return rows.groupby(["_ring", "_v"], as_index=False, sort=False)["count"].sum()


def _ring_burst(
    accounts: pd.DataFrame,
    ring_of: np.ndarray,
    member_code: np.ndarray,
    values: pd.DataFrame,
    baseline: dict[str, float],
    options: FeatureOptions,
) -> None:
    window = options.burst_window_hours * 3600.0
    created = pd.to_datetime(accounts["created_at"], utc=True)
    seconds = (created - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    densest = _densest_window(np.zeros(len(seconds), dtype=np.int64), seconds, window)
    # A ring drawn at random from the platform would see about the platform's own busiest
    # window's share of sign-ups: that is the baseline.
    baseline["signup_burst"] = float(densest[0] / max(len(seconds), 1))
    n_rings = len(values)
    count = _densest_window(ring_of, seconds[member_code], window, n_groups=n_rings)
    size = values["size"].to_numpy(dtype=float)
    values["burst_members"] = count
    # Counting the *other* members in the window keeps small rings from scoring a burst
    # just by being small (a lone pair always sits inside its own window).
    with np.errstate(invalid="ignore", divide="ignore"):
        values["signup_burst"] = np.where(size > 1, (count - 1) / (size - 1), np.nan)


def _densest_window(
    group: np.ndarray, seconds: np.ndarray, window: float, n_groups: int = 1
) -> np.ndarray:
    """Per group, the largest number of its timestamps inside any ``window`` seconds."""
    if not len(seconds):
        return np.zeros(n_groups)
    # Offsetting each group far apart lets one sorted array and one searchsorted serve
    # every group at once without windows spilling over into the next group.
    span = np.nanmax(seconds) - np.nanmin(seconds) + 2 * window + 1
    key = group * span + (seconds - np.nanmin(seconds))
    order = np.argsort(key, kind="stable")
    key, group = key[order], group[order]
    inside = np.searchsorted(key, key + window, side="right") - np.arange(len(key))
    best = np.zeros(n_groups)
    np.maximum.at(best, group, inside)
    return best


def _ring_timing(
    usage: _Usage,
    ring_of: np.ndarray,
    member_code: np.ndarray,
    values: pd.DataFrame,
    baseline: dict[str, float],
) -> None:
    n_rings = len(values)
    # Accounts with a day's worth of active hours: fewer hours say little about a rhythm.
    hours = np.bincount(usage.account, minlength=usage.n_accounts)
    busy = np.flatnonzero(hours >= _MIN_RHYTHM_HOURS)
    keep = np.isin(usage.account, busy)
    per_busy = np.searchsorted(busy, usage.account[keep])
    baseline["around_the_clock"] = float(np.nanmedian(_night_share(
        per_busy, usage.hour[keep], usage.requests[keep], len(busy)))) if len(busy) else 0.0
    # Independent members give a dispersion index of 1 (value 0); shared daily rhythms
    # push it above 1. A platform-wide baseline is therefore 0 by construction.
    baseline["load_balancing"] = 0.0

    hourly = pd.DataFrame({"a": usage.account, "h": usage.hour, "r": usage.requests})
    rows = pd.DataFrame({"_ring": ring_of, "a": member_code}).merge(hourly, on="a")
    ring, hour = rows["_ring"].to_numpy(), rows["h"].to_numpy()
    night = _night_share(ring, hour, rows["r"].to_numpy(), n_rings)
    ring_hours = pd.DataFrame({"r": ring, "h": hour}).drop_duplicates()["r"].to_numpy()
    enough = np.bincount(ring_hours, minlength=n_rings) >= _MIN_RHYTHM_HOURS
    values["around_the_clock"] = np.where(enough, night, np.nan)
    values["load_balancing"] = _load_balancing(ring, rows["a"].to_numpy(), hour, n_rings)


def _night_share(group: np.ndarray, hour: np.ndarray, requests: np.ndarray, n: int
                 ) -> np.ndarray:
    """Per group, the traffic share of its quietest 8 consecutive hours of the day (UTC),
    divided by the 8/24 an even spread gives: 1 for round-the-clock traffic, near 0 for a
    person or a team that sleeps."""
    daily = np.bincount(group * 24 + hour % 24, weights=requests, minlength=n * 24)
    daily = daily.reshape(n, 24)
    wrapped = np.concatenate([daily, daily[:, : _NIGHT_HOURS - 1]], axis=1)
    cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(wrapped, axis=1)], axis=1)
    windows = cumulative[:, _NIGHT_HOURS:] - cumulative[:, :-_NIGHT_HOURS]
    total = daily.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = windows.min(axis=1) / total / (_NIGHT_HOURS / 24)
    return np.where(total > 0, np.clip(share, 0.0, 1.0), np.nan)


def _load_balancing(ring: np.ndarray, account: np.ndarray, hour: np.ndarray, n: int
                    ) -> np.ndarray:
    """``1 − D``, D = variance of the number of active members per hour over its variance
    if members were active independently (a Poisson-binomial), clipped to [0, 1].

    Members taking turns (round-robin load balancing) keep the count of active members
    nearly constant: D ≈ 0. Independent people give D ≈ 1, a shared daily rhythm D > 1.
    """
    if not len(hour):
        return np.full(n, np.nan)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, ring, hour)
    np.maximum.at(last, ring, hour)
    span = (last - first + 1).astype(float)
    active_members = pd.DataFrame({"r": ring, "h": hour}).groupby(["r", "h"]).size()
    ring_of_count = active_members.index.get_level_values("r").to_numpy()
    count = active_members.to_numpy(dtype=float)
    s1 = np.bincount(ring_of_count, weights=count, minlength=n)
    s2 = np.bincount(ring_of_count, weights=count**2, minlength=n)
    member_hours = pd.DataFrame({"r": ring, "a": account}).groupby(["r", "a"]).size()
    member_ring = member_hours.index.get_level_values("r").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        p = member_hours.to_numpy(dtype=float) / span[member_ring]
        expected = np.bincount(member_ring, weights=p * (1 - p), minlength=n)
        n_active = np.bincount(member_ring, minlength=n)
        observed = s2 / span - (s1 / span) ** 2
        dispersion = np.where(expected > 1e-9, observed / expected, 0.0)
        value = np.clip(1.0 - dispersion, 0.0, 1.0)
    return np.where((n_active >= 2) & (span >= 24), value, np.nan)


def _ring_content(
    platform: Platform,
    links: dict[str, _KindLinks],
    ring_of: np.ndarray,
    member_code: np.ndarray,
    values: pd.DataFrame,
    baseline: dict[str, float],
    reference: dict[str, float],
    options: FeatureOptions,
) -> None:
    n_rings = len(values)
    prompts = links["prompt_fingerprint"]
    rows = prompts.rows
    reasoning = np.zeros(len(prompts.values), bool) if prompts.flag is None else prompts.flag
    category = (np.full(len(prompts.values), None, dtype=object) if prompts.category is None
                else prompts.category)
    targets = set(options.target_categories)
    is_target = pd.Series(category).isin(targets).to_numpy()

    # The platform as one big group: its accounts per template is what a group of
    # accounts that merely share popular public templates reaches.
    senders, templates = rows["_a"].nunique(), len(prompts.values)
    baseline["template_concentration"] = senders / templates if templates else np.nan
    reference["template_concentration"] = (
        baseline["template_concentration"] * _FULL_CONCENTRATION_FOLD)
    per_template = np.bincount(rows["_v"], weights=rows["count"], minlength=templates)
    total = per_template.sum()
    main = per_template >= options.main_template_share * total if total else per_template > 0
    baseline["capability_sweep"] = len(set(category[main & is_target])) / max(len(targets), 1)

    member = pd.DataFrame({"_ring": ring_of, "_a": member_code})
    ring_senders = member.merge(rows[["_a"]].drop_duplicates(), on="_a")["_ring"].to_numpy()
    used = _ring_values(prompts, ring_of, member_code)
    ring, code = used["_ring"].to_numpy(), used["_v"].to_numpy()
    n_senders = np.bincount(ring_senders, minlength=n_rings)
    n_templates = np.bincount(ring, minlength=n_rings)
    values["senders"] = n_senders
    values["templates"] = n_templates
    with np.errstate(invalid="ignore", divide="ignore"):
        values["template_concentration"] = np.where(
            n_templates > 0, n_senders / n_templates, np.nan)
    totals = np.bincount(ring, weights=used["count"], minlength=n_rings)
    share = used["count"].to_numpy() / totals[ring]
    sweep = pd.DataFrame({"_ring": ring, "category": category[code]}).loc[
        (share >= options.main_template_share) & is_target[code]].drop_duplicates()
    sweep = sweep.sort_values(["_ring", "category"])
    names = sweep.groupby("_ring", sort=False)["category"].agg(", ".join) if len(sweep) else (
        pd.Series(dtype=object))
    values["categories"] = names.reindex(np.arange(n_rings)).fillna("").to_numpy()
    coverage = np.bincount(sweep["_ring"], minlength=n_rings) / max(len(targets), 1)
    values["capability_sweep"] = np.where(totals > 0, coverage, np.nan)
    values["reasoning_templates"] = np.bincount(
        ring, weights=reasoning[code].astype(float), minlength=n_rings)
