"""Extraction features of rings, each next to the platform's own baseline: one registry.

A ring is a set of accounts (a ``members`` frame of ``ring_id, account_id``). Every feature
is one number per ring in a unit a person can check (accounts per card, share of traffic,
days), together with the same number for the platform as a whole (the *baseline*) and,
for unbounded ratios, the platform's extreme (the *reference*, its 99th percentile). The
score turns value, baseline and reference into a suspicion in [0, 1]; this module only
measures. Labels are never read.

Every feature lives in :data:`FEATURES`, registered by the :func:`feature` decorator on the
function that measures it. The decorator declares, next to the computation, everything
else graphinv needs: the ``group`` it belongs to (infrastructure, traffic, content), its
``unit`` (how value and baseline compare, see :class:`~graphinv.score.registry.Feature`),
its default ``weight`` in the score, a short ``label`` and the ``sentence`` that explains
its contribution (a function of a :class:`~graphinv.score.registry.Reading`: ``value``,
``baseline`` and the ring's row). The measuring function takes the
:class:`~graphinv.score.registry.RingContext` (accounts, rings, links and usage indexed
once per call) and returns either

* ``PerAccount(values)``: one value per platform account; the ring value is the members'
  mean (``share``) or median (``ratio``, ``inverse_ratio``), the baseline the platform's
  mean or median, the reference its 99th (1st for ``inverse_ratio``) percentile; or
* ``PerRing(values, baseline, reference)``: one value per ring, with the baseline (and
  reference) it computed.

Either may carry ``details``: per-ring counts the sentence quotes (cards, IPs, …), which
become columns of :attr:`RingFeatures.values`. The machinery is in
:mod:`graphinv.score.registry`; this module holds the features.

**Adding a feature is one edit, here**: write one decorated function, for example::

    @feature("weekend_share", group="traffic", unit="share", weight=1.0,
             label="traffic on weekends",
             sentence=lambda r: f"{_pct(r.value)} of members' traffic on weekends "
                                f"(platform {_pct(r.baseline)})")
    def weekend_share(ring: RingContext) -> PerAccount:
        usage = ring.usage
        weekend = (usage.hour // 24 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        on = usage.per_account(np.where(weekend, usage.requests, 0.0))
        total = usage.per_account(usage.requests)
        with np.errstate(invalid="ignore", divide="ignore"):
            return PerAccount(np.where(total > 0, on / total, np.nan))

The score, its explanation, ``[scoring.weights]`` in the config (with the new default),
weight fitting and the stored feature values pick it up from the registry; document it
in ``docs/scoring.md``. Return NaN where the input has nothing to measure (a table the
platform does not export): the score counts it as no evidence and the sentence says
"not measurable".

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
>>> FEATURES["output_input_ratio"].group, FEATURES["output_input_ratio"].weight
('traffic', 2.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graphinv.schema import Platform
from graphinv.score.registry import (
    FeatureOptions,
    FeatureRegistry,
    PerAccount,
    PerRing,
    RingContext,
    RingFeatures,
    epoch_hours,
)

__all__ = [
    "FEATURES",
    "FeatureOptions",
    "RingFeatures",
    "feature",
    "ring_features",
]

# Rhythm statistics need at least a day's worth of active hours to mean anything.
_MIN_RHYTHM_HOURS = 24
_NIGHT_HOURS = 8
# Ring-level ratios have no per-account distribution to take a 99th percentile from: ten
# times the platform's value counts as fully suspicious.
_FULL_CONCENTRATION_FOLD = 10.0

#: Every feature graphinv measures and scores.
FEATURES = FeatureRegistry()
#: Registers a feature in :data:`FEATURES`; see the module docstring.
feature = FEATURES.register


def ring_features(
    members: pd.DataFrame, platform: Platform, *, options: FeatureOptions | None = None
) -> RingFeatures:
    """Measure every feature of :data:`FEATURES` for each ring, and the platform baseline.

    Parameters
    ----------
    members : DataFrame
        ``ring_id, account_id``; an account may sit in several rings.
    platform : Platform
        The platform's tables; ``labels`` is never read.
    options : FeatureOptions, optional
        Measurement settings; default: the class's documented defaults.

    Returns
    -------
    RingFeatures

    Raises
    ------
    ValueError
        A feature returned the wrong number of values, or a detail that clashes with a
        column.

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
    return FEATURES.measure(members, platform, options=options or FeatureOptions())


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _plural(n: float, noun: str) -> str:
    return f"{int(n)} {noun}{'s' if int(n) != 1 else ''}"


# --- infrastructure --------------------------------------------------------------------


@feature(
    "accounts_per_card", group="infrastructure", unit="ratio", weight=1.0,
    label="accounts per payment method",
    sentence=lambda r: (
        f"{int(r.ring['card_members'])} accounts share {_plural(r.ring['cards'], 'payment method')}"
        f" ({r.value:.1f} accounts per payment method, platform {r.baseline:.1f})"),
)
def accounts_per_card(ring: RingContext) -> PerAccount:
    """Per account, the number of accounts on its most shared payment method (1 if none).

    An account without a card shares nothing: it counts as 1 account per card, so adding
    any card link can only raise the value (never lower it).
    """
    cards = ring.links["payment_method"]
    rows = cards.rows
    # The input contract keys links by (account, kind, value): one row per account and card.
    card_degree = np.bincount(rows["_v"], minlength=len(cards.values))[rows["_v"]]
    most_shared = np.ones(ring.n_accounts)
    np.maximum.at(most_shared, rows["_a"].to_numpy(), card_degree.astype(float))
    has_card = np.zeros(ring.n_accounts, dtype=bool)
    has_card[rows["_a"].to_numpy()] = True
    used = ring.ring_links["payment_method"]
    return PerAccount(most_shared, details={
        "card_members": ring.sum_by_ring(has_card),
        "cards": np.bincount(used["_ring"], minlength=ring.n_rings),
    })


@feature(
    "prepaid_share", group="infrastructure", unit="share", weight=1.0,
    label="members paying by prepaid card",
    sentence=lambda r: (
        f"{_pct(r.value)} of members pay by prepaid card, {int(r.ring['prepaid_cards'])} "
        f"prepaid card(s) (platform {_pct(r.baseline)})"),
)
def prepaid_share(ring: RingContext) -> PerAccount:
    """1 for accounts paying with a prepaid card (``payment_methods.prepaid``), else 0."""
    cards = ring.links["payment_method"]
    rows, is_prepaid = cards.rows, cards.flag
    prepaid = np.zeros(ring.n_accounts)
    if is_prepaid is not None:
        prepaid[rows["_a"].to_numpy()[is_prepaid[rows["_v"]]]] = 1.0
    used = ring.ring_links["payment_method"]
    weight = is_prepaid[used["_v"]] if is_prepaid is not None else np.zeros(len(used))
    return PerAccount(prepaid, details={
        "prepaid_cards": np.bincount(used["_ring"], weights=weight, minlength=ring.n_rings),
    })


@feature(
    "datacenter_proxy_share", group="infrastructure", unit="share", weight=1.0,
    label="IPs that are datacenter or proxy",
    sentence=lambda r: (
        f"{_pct(r.value)} of members' IPs are datacenter or proxy, {int(r.ring['ips'])} "
        f"IPs in all (platform {_pct(r.baseline)})"),
)
def datacenter_proxy_share(ring: RingContext) -> PerAccount:
    """Per account, the share of its IPs flagged datacenter or proxy (``ips`` table)."""
    ips = ring.links["ip"]
    n_ips = ring.ips_per_account
    share = np.full(ring.n_accounts, np.nan)
    if ips.flag is not None:
        flagged = np.bincount(ips.rows["_a"], weights=ips.flag[ips.rows["_v"]],
                              minlength=ring.n_accounts)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n_ips > 0, flagged / n_ips, 0.0)
    used = ring.ring_links["ip"]
    return PerAccount(share, details={"ips": np.bincount(used["_ring"], minlength=ring.n_rings)})


@feature(
    "ip_rotation", group="infrastructure", unit="ratio", weight=1.0,
    label="distinct IPs per active day",
    sentence=lambda r: (f"{r.value:.1f} distinct IPs per active day per account "
                        f"(platform {r.baseline:.1f})"),
)
def ip_rotation(ring: RingContext) -> PerAccount:
    """Per account with traffic, distinct IPs per active day."""
    active_days = ring.usage.active_days
    with np.errstate(invalid="ignore", divide="ignore"):
        return PerAccount(np.where(active_days > 0,
                                   ring.ips_per_account / np.maximum(active_days, 1), np.nan))


@feature(
    "signup_burst", group="infrastructure", unit="share", weight=1.0,
    label="members created in one burst",
    sentence=lambda r: (
        f"{int(r.ring['burst_members'])} of {int(r.ring['size'])} accounts created within one "
        f"burst window (platform {_pct(r.baseline)} of sign-ups in its busiest window)"),
)
def signup_burst(ring: RingContext) -> PerRing:
    """(Members created in the densest window − 1) / (size − 1).

    Counting the *other* members in the window keeps small rings from scoring a burst
    just by being small (a lone pair always sits inside its own window).
    """
    window = ring.options.burst_window_hours * 3600.0
    created = pd.to_datetime(ring.platform.accounts["created_at"], utc=True)
    seconds = (created - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    densest = _densest_window(np.zeros(len(seconds), dtype=np.int64), seconds, window)
    count = _densest_window(ring.ring_of, seconds[ring.member_code], window,
                            n_groups=ring.n_rings)
    size = ring.size.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(size > 1, (count - 1) / (size - 1), np.nan)
    # A ring drawn at random from the platform would see about the platform's own busiest
    # window's share of sign-ups: that is the baseline.
    return PerRing(value, baseline=float(densest[0] / max(len(seconds), 1)),
                   details={"burst_members": count})


@feature(
    "account_age_days", group="infrastructure", unit="inverse_ratio", weight=1.0,
    label="account age (days)",
    sentence=lambda r: f"median account age {r.value:.0f} days (platform {r.baseline:.0f})",
)
def account_age_days(ring: RingContext) -> PerAccount:
    """Per account, days from creation to the end of the data, + 1."""
    created = epoch_hours(ring.platform.accounts["created_at"]).astype(float)
    end = max(ring.usage.hour.max(initial=np.iinfo(np.int64).min), int(created.max(initial=0)))
    # +1 day so that an account created in the last hour has a finite ratio to the median.
    return PerAccount(np.maximum(end - created, 0) / 24.0 + 1.0)


@feature(
    "farmable_signup_share", group="infrastructure", unit="share", weight=0.5,
    label="members signed up through programs easy to farm",
    sentence=lambda r: (f"{_pct(r.value)} signed up through education/startup/research "
                        f"programs (platform {_pct(r.baseline)})"),
)
def farmable_signup_share(ring: RingContext) -> PerAccount:
    """1 for accounts whose ``signup_path`` is one of ``farmable_signup_paths``."""
    accounts = ring.platform.accounts
    if "signup_path" not in accounts:
        return PerAccount(np.full(ring.n_accounts, np.nan))
    paths = accounts["signup_path"].astype("string").isin(ring.options.farmable_signup_paths)
    return PerAccount(paths.fillna(False).to_numpy(dtype=float))


# --- traffic ---------------------------------------------------------------------------
# Inactive accounts would pull every traffic median to zero; they are not the peer group
# a ring's traffic is compared with, so they are NaN.


@feature(
    "requests_per_account", group="traffic", unit="ratio", weight=0.25,
    label="requests per account",
    sentence=lambda r: f"{r.value:,.0f} requests per account (platform {r.baseline:,.0f})",
)
def requests_per_account(ring: RingContext) -> PerAccount:
    requests = ring.traffic["requests"].to_numpy()
    return PerAccount(np.where(requests > 0, requests, np.nan))


@feature(
    "tokens_per_account", group="traffic", unit="ratio", weight=0.25,
    label="tokens per account",
    sentence=lambda r: f"{r.value:,.0f} tokens per account (platform {r.baseline:,.0f})",
)
def tokens_per_account(ring: RingContext) -> PerAccount:
    traffic = ring.traffic
    tokens = (traffic["input_tokens"] + traffic["output_tokens"]).to_numpy()
    return PerAccount(np.where(traffic["requests"].to_numpy() > 0, tokens, np.nan))


@feature(
    "output_input_ratio", group="traffic", unit="ratio", weight=2.0,
    label="output/input token ratio",
    sentence=lambda r: f"output/input token ratio {r.value:.2f} (platform {r.baseline:.2f})",
)
def output_input_ratio(ring: RingContext) -> PerAccount:
    traffic = ring.traffic
    inputs, outputs = traffic["input_tokens"].to_numpy(), traffic["output_tokens"].to_numpy()
    active = traffic["requests"].to_numpy() > 0
    return PerAccount(np.where(active & (inputs > 0), outputs / np.maximum(inputs, 1), np.nan))


@feature(
    "near_rate_limit_share", group="traffic", unit="share", weight=2.0,
    label="traffic in hours just below the rate limit",
    sentence=lambda r: (
        f"{_pct(r.value)} of members' traffic in hours just below the rate limit of "
        f"{r.ring['rate_limit']:,.0f} requests/hour (platform {_pct(r.baseline)})"),
)
def near_rate_limit_share(ring: RingContext) -> PerAccount:
    """Per account, the share of its requests sent in hours at ≥ ``near_limit_fraction``
    of its tier's rate limit."""
    usage = ring.usage
    requests = ring.traffic["requests"].to_numpy()
    near = usage.requests >= ring.options.near_limit_fraction * usage.limit[usage.account]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(requests > 0,
                         usage.per_account(np.where(near, usage.requests, 0.0)) / requests,
                         np.nan)
    return PerAccount(share, details={"rate_limit": ring.median_by_ring(usage.limit)})


@feature(
    "around_the_clock", group="traffic", unit="share", weight=2.0,
    label="traffic in the quietest 8 hours of the day, against an even spread",
    sentence=lambda r: (
        f"{'active 24/7' if r.value >= 0.7 else 'sleeps like a person or a team'}: its "
        f"quietest 8 hours of the day carry {_pct(r.value)} of an even spread's traffic "
        f"(platform {_pct(r.baseline)})"),
)
def around_the_clock(ring: RingContext) -> PerRing:
    """The ring's traffic share in its quietest 8 hours of the day over an even spread's;
    the baseline is the median over accounts with a day's worth of active hours."""
    usage = ring.usage
    # Accounts with a day's worth of active hours: fewer hours say little about a rhythm.
    hours = np.bincount(usage.account, minlength=usage.n_accounts)
    busy = np.flatnonzero(hours >= _MIN_RHYTHM_HOURS)
    keep = np.isin(usage.account, busy)
    per_busy = np.searchsorted(busy, usage.account[keep])
    baseline = float(np.nanmedian(_night_share(
        per_busy, usage.hour[keep], usage.requests[keep], len(busy)))) if len(busy) else 0.0
    rows = ring.member_hours
    member_ring, hour = rows["_ring"].to_numpy(), rows["h"].to_numpy()
    night = _night_share(member_ring, hour, rows["r"].to_numpy(), ring.n_rings)
    ring_hours = pd.DataFrame({"r": member_ring, "h": hour}).drop_duplicates()["r"].to_numpy()
    enough = np.bincount(ring_hours, minlength=ring.n_rings) >= _MIN_RHYTHM_HOURS
    return PerRing(np.where(enough, night, np.nan), baseline=baseline)


@feature(
    "load_balancing", group="traffic", unit="share", weight=2.0,
    label="regularity of members taking turns",
    sentence=lambda r: (
        ("members take turns in round-robin order" if r.value >= 0.5
         else "members active independently or together")
        + f" (regularity {r.value:.2f}, independent accounts 0)"),
)
def load_balancing(ring: RingContext) -> PerRing:
    """``1 − D``, D = variance of the number of active members per hour over its variance
    if members were active independently (a Poisson-binomial), clipped to [0, 1].

    Members taking turns (round-robin load balancing) keep the count of active members
    nearly constant: D ≈ 0. Independent people give D ≈ 1, a shared daily rhythm D > 1, so
    the platform-wide baseline is 0 by construction.
    """
    rows = ring.member_hours
    member_ring, account, hour = (rows["_ring"].to_numpy(), rows["a"].to_numpy(),
                                  rows["h"].to_numpy())
    n = ring.n_rings
    if not len(hour):
        return PerRing(np.full(n, np.nan), baseline=0.0)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, member_ring, hour)
    np.maximum.at(last, member_ring, hour)
    span = (last - first + 1).astype(float)
    active_members = pd.DataFrame({"r": member_ring, "h": hour}).groupby(["r", "h"]).size()
    ring_of_count = active_members.index.get_level_values("r").to_numpy()
    count = active_members.to_numpy(dtype=float)
    s1 = np.bincount(ring_of_count, weights=count, minlength=n)
    s2 = np.bincount(ring_of_count, weights=count**2, minlength=n)
    member_hours = pd.DataFrame({"r": member_ring, "a": account}).groupby(["r", "a"]).size()
    hours_ring = member_hours.index.get_level_values("r").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        p = member_hours.to_numpy(dtype=float) / span[hours_ring]
        expected = np.bincount(hours_ring, weights=p * (1 - p), minlength=n)
        n_active = np.bincount(hours_ring, minlength=n)
        observed = s2 / span - (s1 / span) ** 2
        dispersion = np.where(expected > 1e-9, observed / expected, 0.0)
        value = np.clip(1.0 - dispersion, 0.0, 1.0)
    return PerRing(np.where((n_active >= 2) & (span >= 24), value, np.nan), baseline=0.0)


@feature(
    "model_pivot", group="traffic", unit="share", weight=1.5,
    label="traffic moved to newly released models",
    sentence=lambda r: (
        f"{_pct(r.value)} of members' traffic went to newly released model(s) "
        f"{r.ring['new_models']} in their first days (platform {_pct(r.baseline)})"),
)
def model_pivot(ring: RingContext) -> PerAccount:
    """Per account active in a release window, the share of its requests there that went
    to the new model(s); ``new_models`` names the models released during the data."""
    raw = ring.usage.raw
    unmeasured = PerAccount(np.full(ring.n_accounts, np.nan), details={"new_models": ""})
    if not len(raw):
        return unmeasured
    released = raw.groupby("model", observed=True)["h"].min()
    # A model already there on the first day of data was not released during it.
    new = released[released > raw["h"].min() + 24]
    if new.empty:
        return unmeasured
    window = ring.options.release_window_days * 24
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
                        minlength=ring.n_accounts)
    moved = np.bincount(account, weights=np.where(on_new, requests, 0.0),
                        minlength=ring.n_accounts)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, moved / total, np.nan)
    return PerAccount(share, details={"new_models": ", ".join(sorted(new.index.astype(str)))})


# --- content ---------------------------------------------------------------------------


@feature(
    "template_concentration", group="content", unit="ratio", weight=0.5,
    label="accounts per prompt template",
    sentence=lambda r: (
        f"{int(r.ring['senders'])} accounts send {_plural(r.ring['templates'], 'prompt template')}"
        f" ({r.value:.1f} accounts per template, platform {r.baseline:.1f})"),
)
def template_concentration(ring: RingContext) -> PerRing:
    """Members with prompt links / distinct templates they use: few templates, many
    accounts. The baseline is the platform as one big group, what a group of accounts
    that merely share popular public templates reaches."""
    prompts = ring.links["prompt_fingerprint"]
    rows = prompts.rows
    senders, templates = rows["_a"].nunique(), len(prompts.values)
    baseline = senders / templates if templates else np.nan
    member = pd.DataFrame({"_ring": ring.ring_of, "_a": ring.member_code})
    ring_senders = member.merge(rows[["_a"]].drop_duplicates(), on="_a")["_ring"].to_numpy()
    n_senders = np.bincount(ring_senders, minlength=ring.n_rings)
    n_templates = np.bincount(ring.ring_links["prompt_fingerprint"]["_ring"],
                              minlength=ring.n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(n_templates > 0, n_senders / n_templates, np.nan)
    return PerRing(value, baseline=baseline, reference=baseline * _FULL_CONCENTRATION_FOLD,
                   details={"senders": n_senders, "templates": n_templates})


@feature(
    "reasoning_share", group="content", unit="share", weight=3.0,
    label="prompt traffic on reasoning-eliciting templates",
    sentence=lambda r: (
        f"{_pct(r.value)} of members' prompts on reasoning-eliciting templates "
        f"({int(r.ring['reasoning_templates'])} such templates; platform {_pct(r.baseline)})"),
)
def reasoning_share(ring: RingContext) -> PerAccount:
    """Per account, the share of its prompts on templates with ``elicits_reasoning``."""
    prompts = ring.links["prompt_fingerprint"]
    rows, reasoning = prompts.rows, prompts.flag
    used = ring.ring_links["prompt_fingerprint"]
    is_reasoning = (np.zeros(len(prompts.values), bool) if reasoning is None
                    else reasoning)[used["_v"].to_numpy()]
    details = {"reasoning_templates": np.bincount(
        used["_ring"].to_numpy(), weights=is_reasoning.astype(float), minlength=ring.n_rings)}
    if reasoning is None:
        return PerAccount(np.full(ring.n_accounts, np.nan), details=details)
    total = np.bincount(rows["_a"], weights=rows["count"], minlength=ring.n_accounts)
    on = np.bincount(rows["_a"], weights=rows["count"] * reasoning[rows["_v"]],
                     minlength=ring.n_accounts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return PerAccount(np.where(total > 0, on / total, np.nan), details=details)


@feature(
    "capability_sweep", group="content", unit="share", weight=2.0,
    label="target capabilities covered by the ring's main templates",
    sentence=lambda r: (
        f"main templates sweep {_pct(r.value)} of target capabilities "
        f"({r.ring['categories'] or 'none'}; platform {_pct(r.baseline)})"),
)
def capability_sweep(ring: RingContext) -> PerRing:
    """Share of ``target_categories`` among the templates carrying at least
    ``main_template_share`` of the ring's prompts; the baseline is the same over the
    platform's prompts."""
    prompts = ring.links["prompt_fingerprint"]
    rows, n_rings = prompts.rows, ring.n_rings
    category = (np.full(len(prompts.values), None, dtype=object) if prompts.category is None
                else prompts.category)
    targets = set(ring.options.target_categories)
    is_target = pd.Series(category).isin(targets).to_numpy()
    main_share = ring.options.main_template_share

    per_template = np.bincount(rows["_v"], weights=rows["count"], minlength=len(prompts.values))
    total = per_template.sum()
    main = per_template >= main_share * total if total else per_template > 0
    baseline = len(set(category[main & is_target])) / max(len(targets), 1)

    used = ring.ring_links["prompt_fingerprint"]
    member_ring, code = used["_ring"].to_numpy(), used["_v"].to_numpy()
    totals = np.bincount(member_ring, weights=used["count"], minlength=n_rings)
    share = used["count"].to_numpy() / totals[member_ring]
    sweep = pd.DataFrame({"_ring": member_ring, "category": category[code]}).loc[
        (share >= main_share) & is_target[code]].drop_duplicates()
    sweep = sweep.sort_values(["_ring", "category"])
    names = sweep.groupby("_ring", sort=False)["category"].agg(", ".join) if len(sweep) else (
        pd.Series(dtype=object))
    coverage = np.bincount(sweep["_ring"], minlength=n_rings) / max(len(targets), 1)
    return PerRing(np.where(totals > 0, coverage, np.nan), baseline=baseline, details={
        "categories": names.reindex(np.arange(n_rings)).fillna("").to_numpy()})


# --- helpers of the features above -----------------------------------------------------


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
