"""Every knob of the synthetic platform, and the presets built from them.

Absolute counts (campaign accounts and requests, abuse-ring accounts) belong to the preset's
``n_accounts``; asking for another platform size scales them with it, so a scaled-down
``case-24k`` keeps its campaign proportions. Shares are fractions of the benign population.

Examples
--------
>>> from graphinv.synth.params import PRESETS, resolve_params
>>> p = resolve_params(preset="case-24k", n_accounts=100_000)
>>> sum(c.n_accounts for c in p.campaigns)
2400
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from graphinv.errors import ConfigError

CAPABILITY_SWEEP = ("coding", "math", "agentic_tool_use", "science", "reasoning_puzzles")


@dataclass(frozen=True)
class CampaignParams:
    """One distillation campaign: an operator running many rings, one per proxy network.

    Parameters
    ----------
    name
        Campaign id written to ``labels.campaign_id``.
    n_accounts
        Accounts over all its rings, respawned accounts included.
    n_requests
        Requests (exchanges) the campaign sends in the window.
    ring_size
        Inclusive range of accounts per ring (log-uniform).
    pivot_lag_hours
        Hours after the new model's release before the campaign switches to it.
    categories
        Capability categories the rings sweep through, in order, over the window.
    """

    name: str
    n_accounts: int
    n_requests: int
    ring_size: tuple[int, int] = (20, 400)
    pivot_lag_hours: int = 24
    categories: tuple[str, ...] = CAPABILITY_SWEEP


@dataclass(frozen=True)
class SynthParams:
    """All parameters of a synthetic platform; see docs/synth.md for the full table.

    Examples
    --------
    >>> SynthParams().rate_limit_per_hour
    60
    """

    n_accounts: int = 6_000
    # Window: fixed dates keep the output deterministic; Monday 2025-03-03 00:00 UTC.
    window_start: str = "2025-03-03T00:00:00+00:00"
    window_days: int = 14
    release_day: int = 9
    rate_limit_per_hour: int = 60
    enterprise_rate_limit_per_hour: int = 1_500
    # Benign activity.
    inactive_share: float = 0.25
    benign_hours_mean: float = 12.0
    benign_requests_per_hour: float = 4.0
    new_model_adoption: float = 0.25
    free_tier_share: float = 0.25
    benign_prepaid_share: float = 0.03
    # Benign structures (shares of the benign population).
    household_share: float = 0.04
    household_size: tuple[int, int] = (2, 5)
    household_prepaid_share: float = 0.05
    office_share: float = 0.05
    office_size: tuple[int, int] = (5, 200)
    office_shared_card_share: float = 0.5
    university_share: float = 0.03
    university_size: tuple[int, int] = (30, 2_000)
    university_nat_ips: tuple[int, int] = (2, 6)
    course_template_share: float = 0.5
    enterprise_share: float = 0.003
    enterprise_keys: tuple[int, int] = (20, 300)
    heavy_user_share: float = 0.01
    heavy_high_ratio_share: float = 0.2
    # Shared-IP hubs.
    home_ip_churn: float = 1.2
    cgnat_share: float = 0.2
    cgnat_accounts_per_ip: int = 2_500
    vpn_share: float = 0.06
    vpn_accounts_per_ip: int = 1_500
    # Content.
    popular_templates: int = 30
    popular_template_share: float = 0.6
    personal_templates: tuple[int, int] = (2, 6)
    api_clients: int = 40
    # Distillation campaigns.
    campaigns: tuple[CampaignParams, ...] = field(
        default_factory=lambda: (
            CampaignParams("lab_a", 120, 12_000, (20, 60), 36),
            CampaignParams("lab_b", 300, 150_000, (20, 80), 24),
            CampaignParams("lab_c", 480, 400_000, (20, 120), 12),
        )
    )
    camouflage_share: float = 0.12
    camouflage_volume: float = 0.5
    accounts_per_card: tuple[int, int] = (2, 5)
    prepaid_share: float = 0.85
    proxy_ips_per_member: float = 0.4
    proxy_ips_per_day: tuple[int, int] = (3, 12)
    proxy_flag_rate: float = 0.25
    proxy_ip_benign_share: float = 0.3
    burst_hours: float = 36.0
    program_signup_share: float = 0.8
    respawn_share: float = 0.1
    reasoning_share: float = 0.85
    campaign_template_share: float = 0.5
    rate_limit_utilisation: tuple[float, float] = (0.75, 0.98)
    # Coordinated abuse that does not extract.
    card_testing_accounts: int = 60
    card_testing_ring_size: tuple[int, int] = (10, 60)
    cards_per_tester: tuple[int, int] = (5, 30)
    free_tier_farming_accounts: int = 150
    farm_ring_size: tuple[int, int] = (30, 300)
    free_tier_quota: int = 300
    # Harder extraction rings: how many rings of each style, carved out of the campaigns'
    # accounts (docs/synth.md, "Harder rings and their benign twins").
    star_card_rings: int = 1
    star_proxy_rings: int = 1
    funding_tree_rings: int = 1
    sparse_rings: int = 1
    hub_ip_rings: int = 1
    hub_template_rings: int = 1
    aperiodic_rings: int = 1
    hard_ring_size: tuple[int, int] = (20, 60)
    hub_ring_size: tuple[int, int] = (20, 120)
    ring_hub_accounts: tuple[int, int] = (700, 3_300)
    aperiodic_jitter_hours: tuple[int, int] = (3, 8)
    # Benign twins of the harder rings.
    company_card_twins: int = 2
    company_card_size: tuple[int, int] = (25, 35)
    campus_class_twins: int = 2
    campus_class_size: tuple[int, int] = (35, 45)


_SHARES = tuple(f.name for f in dataclasses.fields(SynthParams) if f.name.endswith("_share"))
_RANGES = tuple(
    f.name
    for f in dataclasses.fields(SynthParams)
    if f.name.endswith(("_size", "_keys", "_ips", "_templates", "_tester", "_card"))
    and isinstance(getattr(SynthParams(), f.name), tuple)
)
_COUNT_FIELDS = ("card_testing_accounts", "free_tier_farming_accounts")
#: Ring counts per style and twin counts: absolute, set per preset (``scale`` scales them).
STYLE_COUNTS = (
    "star_card_rings",
    "star_proxy_rings",
    "funding_tree_rings",
    "sparse_rings",
    "hub_ip_rings",
    "hub_template_rings",
    "aperiodic_rings",
)
TWIN_COUNTS = ("company_card_twins", "campus_class_twins")


def _case_24k() -> SynthParams:
    # The public case: ~24,000 accounts, three labs of very different volumes.
    return SynthParams(
        n_accounts=1_000_000,
        campaigns=(
            CampaignParams("lab_a", 1_500, 150_000, (20, 150), 36),
            CampaignParams("lab_b", 6_500, 3_400_000, (50, 400), 24),
            CampaignParams("lab_c", 16_000, 13_000_000, (100, 400), 12),
        ),
        card_testing_accounts=1_000,
        free_tier_farming_accounts=3_000,
        star_card_rings=4,
        star_proxy_rings=4,
        funding_tree_rings=4,
        sparse_rings=4,
        hub_ip_rings=3,
        hub_template_rings=3,
        aperiodic_rings=4,
        company_card_twins=60,
        campus_class_twins=60,
    )


def _medium() -> SynthParams:
    # case-24k at 100k accounts, with every harder ring style and twin kept in it.
    counts: dict[str, Any] = dict.fromkeys(STYLE_COUNTS, 1) | {
        "star_card_rings": 2, "star_proxy_rings": 2}
    return dataclasses.replace(
        scale(_case_24k(), 100_000), **counts, company_card_twins=8, campus_class_twins=8
    )


def scale(params: SynthParams, n_accounts: int) -> SynthParams:
    """The same platform at another size: absolute counts scale with ``n_accounts``.

    Examples
    --------
    >>> scale(PRESETS["case-24k"], 10_000).campaigns[0].n_requests
    1500
    """
    if n_accounts < 100:
        raise ConfigError(f"n_accounts must be at least 100, got {n_accounts}")
    f = n_accounts / params.n_accounts
    campaigns = tuple(
        dataclasses.replace(
            c, n_accounts=max(1, round(c.n_accounts * f)), n_requests=round(c.n_requests * f)
        )
        for c in params.campaigns
    )
    counts = {k: round(getattr(params, k) * f) for k in (*_COUNT_FIELDS, *STYLE_COUNTS)}
    counts |= {k: round(getattr(params, k) * f) for k in TWIN_COUNTS}
    return dataclasses.replace(params, n_accounts=n_accounts, campaigns=campaigns, **counts)


PRESETS: dict[str, SynthParams] = {
    "small": SynthParams(),
    "medium": _medium(),
    "case-24k": _case_24k(),
}


def _coerce_campaigns(value: object) -> tuple[CampaignParams, ...]:
    try:
        return tuple(
            c if isinstance(c, CampaignParams) else CampaignParams(**c)
            for c in value  # type: ignore[attr-defined]
        )
    except TypeError as exc:
        raise ConfigError(f"campaigns: expected CampaignParams or dicts ({exc})") from exc


def validate(params: SynthParams) -> SynthParams:
    """Raise ConfigError when a parameter is out of range; return the params unchanged."""
    problems = [
        f"{name}={getattr(params, name)} is not in [0, 1]"
        for name in _SHARES
        if not 0.0 <= getattr(params, name) <= 1.0
    ]
    problems += [
        f"{name}={getattr(params, name)} is not a range (lo, hi) with 1 <= lo <= hi"
        for name in _RANGES
        if not 1 <= getattr(params, name)[0] <= getattr(params, name)[1]
    ]
    for name in ("ring_hub_accounts", "aperiodic_jitter_hours"):
        lo, hi = getattr(params, name)
        if not 1 <= lo <= hi:
            problems.append(f"{name}={(lo, hi)} is not a range (lo, hi) with 1 <= lo <= hi")
    problems += [
        f"{name}={getattr(params, name)} is negative"
        for name in (*STYLE_COUNTS, *TWIN_COUNTS)
        if getattr(params, name) < 0
    ]
    for c in params.campaigns:
        if not 1 <= c.ring_size[0] <= c.ring_size[1]:
            problems.append(f"campaign {c.name}: ring_size {c.ring_size} is not a range")
        if c.n_accounts < 1 or c.n_requests < 0 or not c.categories:
            problems.append(f"campaign {c.name}: needs accounts, requests >= 0 and categories")
    if len({c.name for c in params.campaigns}) != len(params.campaigns):
        problems.append("campaign names must be unique")
    adversaries = (
        sum(c.n_accounts for c in params.campaigns)
        + params.card_testing_accounts
        + params.free_tier_farming_accounts
    )
    if adversaries > params.n_accounts // 2:
        problems.append(f"{adversaries} adversarial accounts exceed half of {params.n_accounts}")
    if not 1 <= params.release_day < params.window_days or params.window_days > 60:
        problems.append("need 1 <= release_day < window_days <= 60")
    if params.rate_limit_per_hour < 5 or params.enterprise_rate_limit_per_hour < 5:
        problems.append("rate limits must be at least 5 requests per hour")
    if problems:
        raise ConfigError("invalid synth parameters: " + "; ".join(problems))
    return params


def resolve_params(
    *, preset: str = "small", n_accounts: int | None = None, **overrides: Any
) -> SynthParams:
    """The preset, scaled to ``n_accounts`` if given, then with ``overrides`` applied.

    Examples
    --------
    >>> resolve_params(preset="small", vpn_share=0.1).vpn_share
    0.1
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; choose one of {sorted(PRESETS)}")
    params = PRESETS[preset]
    if n_accounts is not None:
        params = scale(params, n_accounts)
    known = {f.name for f in dataclasses.fields(SynthParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown synth parameter(s) {unknown}; see docs/synth.md")
    if "campaigns" in overrides:
        overrides["campaigns"] = _coerce_campaigns(overrides["campaigns"])
    for name, value in overrides.items():
        if isinstance(getattr(params, name), tuple) and name != "campaigns":
            overrides[name] = tuple(value)
    return validate(dataclasses.replace(params, **overrides))
