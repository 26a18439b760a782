"""Score rings by extraction behaviour, with an explanation a person can check.

Each feature of :data:`graphinv.score.features.FEATURES` is turned into a *suspicion* in [0, 1]
by comparing the ring's value with the platform baseline:

* ``share`` features: the excess over the baseline as a part of what is left above it,
  ``(value − baseline) / (1 − baseline)``;
* ``ratio`` features: how many times the baseline the ring is, on a log scale where the
  platform's 99th percentile counts as fully suspicious,
  ``log(value / baseline) / log(p99 / baseline)``;
* ``inverse_ratio`` features (account age): the same with value and baseline swapped and
  the platform's 1st percentile as the extreme.

All are clipped to [0, 1]; a feature that cannot be measured (no IP attributes, no
prompt links) has suspicion 0. The score is the weighted mean of the suspicions, so each
feature's *contribution* ``weight × suspicion / Σ weights`` adds up exactly to the score.
Labels are never read here (only :func:`graphinv.score.fit_weights.fit_weights` reads them).

Examples
--------
>>> import pandas as pd
>>> from graphinv.schema import Platform
>>> t = pd.Timestamp("2025-03-01", tz="UTC")
>>> accounts = pd.DataFrame({"account_id": list("abcdefgh"), "created_at": t})
>>> links = pd.DataFrame({"account_id": list("abcdefgh"), "kind": "payment_method",
...                       "value": ["c1", "c1", "c1", "c2", "c3", "c4", "c5", "c6"],
...                       "first_seen": t, "last_seen": t, "count": 1})
>>> usage = pd.DataFrame(columns=["account_id", "hour", "model", "requests",
...                               "input_tokens", "output_tokens"])
>>> platform = Platform(accounts=accounts, links=links, usage=usage)
>>> scores = score_rings(pd.DataFrame({"ring_id": "r1", "account_id": list("abc")}),
...                      platform)
>>> scores.rings.loc[0, "ring_id"], int(scores.rings.loc[0, "rank"])
('r1', 1)
>>> print(scores.rings.loc[0, "explanation"])
3 accounts share 1 payment method (3.0 accounts per payment method, platform 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from graphinv.schema import Platform
from graphinv.score.features import FEATURES, FeatureOptions, FeatureSpec, ring_features

__all__ = ["RingScores", "ScoringOptions", "ScoringWeights", "score_rings", "suspicion"]


@dataclass(frozen=True)
class ScoringWeights:
    """Weight of each feature in the score (any non-negative scale; they are normalised).

    Defaults follow from how specific each signal is to distillation (docs/scoring.md):
    content and timing signals that only a model-extraction pipeline produces weigh 3,
    traffic shapes that heavy legitimate users share weigh 1–2, infrastructure signals
    common to every kind of coordinated abuse (cards, bursts, proxies) weigh 1, and raw
    volume and template concentration, which enterprise apps show too, weigh 0.5.
    """

    accounts_per_card: float = 1.0
    prepaid_share: float = 1.0
    datacenter_proxy_share: float = 1.0
    ip_rotation: float = 1.0
    signup_burst: float = 1.0
    account_age_days: float = 1.0
    farmable_signup_share: float = 0.5
    requests_per_account: float = 0.25
    tokens_per_account: float = 0.25
    output_input_ratio: float = 2.0
    near_rate_limit_share: float = 2.0
    around_the_clock: float = 2.0
    load_balancing: float = 2.0
    model_pivot: float = 1.5
    template_concentration: float = 0.5
    reasoning_share: float = 3.0
    capability_sweep: float = 2.0

    def as_dict(self) -> dict[str, float]:
        """Feature name → weight, ready for a ``[scoring.weights]`` TOML table."""
        return asdict(self)


@dataclass(frozen=True)
class ScoringOptions:
    """Settings of :func:`score_rings`.

    Parameters
    ----------
    weights : ScoringWeights
        Weight of each feature.
    threshold : float
        Rings scoring at or above it are flagged (``RingScores.rings.flagged``). Default
        ``0.4``: an extraction ring shows most extraction signals at once and scores
        0.5–0.9; card-testing and free-tier-farming rings share only the infrastructure
        signals (about a third of the weight) and benign structures one or two signals.
    features : FeatureOptions
        How features are measured (rate limit, burst window, target categories, …).
    explain_top : int
        Features quoted in a ring's one-line explanation. Default ``4``.
    """

    weights: ScoringWeights = field(default_factory=ScoringWeights)
    threshold: float = 0.4
    features: FeatureOptions = field(default_factory=FeatureOptions)
    explain_top: int = 4


@dataclass(frozen=True)
class RingScores:
    """Scores, ranks and explanations of rings.

    Attributes
    ----------
    rings : DataFrame
        One row per ring, best first: ``ring_id, score, rank, flagged, size``, every
        feature value, and ``explanation``.
    contributions : DataFrame
        One row per ring and feature: ``ring_id, feature, group, value, baseline,
        suspicion, weight, contribution, text``. ``contribution`` sums to the score.
    baseline : Series
        Per feature, the platform baseline the rings were compared with.
    rate_limits : Series
        Per verification tier (``"*"``: all tiers), the hourly rate limit used by
        ``near_rate_limit_share``.
    """

    rings: pd.DataFrame
    contributions: pd.DataFrame
    baseline: pd.Series
    rate_limits: pd.Series


def score_rings(
    members: pd.DataFrame, platform: Platform, *, options: ScoringOptions = ScoringOptions()
) -> RingScores:
    """Score every ring of ``members`` by extraction behaviour and explain the score.

    Parameters
    ----------
    members : DataFrame
        ``ring_id, account_id``; every member gets its ring's score.
    platform : Platform
        The platform's tables; ``labels`` is never read.
    options : ScoringOptions
        Weights, threshold and feature settings.

    Returns
    -------
    RingScores

    Examples
    --------
    >>> import pandas as pd
    >>> from graphinv.schema import Platform
    >>> t = pd.Timestamp("2025-03-01", tz="UTC")
    >>> accounts = pd.DataFrame({"account_id": ["a", "b"], "created_at": t,
    ...                          "signup_path": ["education", "self_serve"]})
    >>> empty_links = pd.DataFrame(columns=["account_id", "kind", "value", "first_seen",
    ...                                     "last_seen", "count"])
    >>> empty_usage = pd.DataFrame(columns=["account_id", "hour", "model", "requests",
    ...                                     "input_tokens", "output_tokens"])
    >>> platform = Platform(accounts=accounts, links=empty_links, usage=empty_usage)
    >>> members = pd.DataFrame({"ring_id": ["r1", "r1"], "account_id": ["a", "b"]})
    >>> scores = score_rings(members, platform)
    >>> row = scores.contributions.query("feature == 'farmable_signup_share'").iloc[0]
    >>> float(row.value), float(row.baseline), float(row.suspicion)
    (0.5, 0.5, 0.0)
    """
    measured = ring_features(members, platform, options=options.features)
    weights = options.weights.as_dict()
    total_weight = sum(weights.values()) or 1.0
    values = measured.values
    rows = []
    for spec in FEATURES:
        value = values[spec.name].to_numpy(dtype=float)
        base = float(measured.baseline.get(spec.name, np.nan))
        ref = float(measured.reference.get(spec.name, np.nan))
        level = suspicion(value, baseline=base, reference=ref, kind=spec.kind)
        weight = weights[spec.name]
        rows.append(pd.DataFrame({
            "ring_id": values.index,
            "feature": spec.name,
            "group": spec.group,
            "value": value,
            "baseline": base,
            "suspicion": level,
            "weight": weight,
            "contribution": weight * level / total_weight,
        }))
    contributions = pd.concat(rows, ignore_index=True)
    contributions["text"] = _texts(contributions, values)

    score = contributions.groupby("ring_id", sort=False)["contribution"].sum()
    rings = values.copy()
    rings.insert(0, "score", score.reindex(rings.index).to_numpy())
    rings = rings.reset_index().sort_values(
        ["score", "size", "ring_id"], ascending=[False, False, True], kind="stable"
    )
    rings.insert(2, "rank", np.arange(1, len(rings) + 1))
    rings.insert(3, "flagged", rings["score"] >= options.threshold)
    rings["explanation"] = _explanations(contributions, rings["ring_id"], options.explain_top)
    contributions = contributions.sort_values(
        ["ring_id", "contribution"], ascending=[True, False], kind="stable"
    ).reset_index(drop=True)
    return RingScores(
        rings=rings.reset_index(drop=True),
        contributions=contributions,
        baseline=measured.baseline,
        rate_limits=measured.rate_limits,
    )


def suspicion(
    value: np.ndarray, *, baseline: float, reference: float = np.nan, kind: str
) -> np.ndarray:
    """How far beyond the platform baseline a feature value is, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> suspicion(np.array([0.1, 0.55, 1.0]), baseline=0.1, kind="share").round(2).tolist()
    [0.0, 0.5, 1.0]
    >>> suspicion(np.array([1.0, 3.0, 9.0]), baseline=1.0, reference=9.0, kind="ratio").round(2)
    array([0. , 0.5, 1. ])
    """
    value = np.asarray(value, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "share":
            level = (value - baseline) / max(1.0 - baseline, 1e-9)
        elif kind in ("ratio", "inverse_ratio"):
            if not (baseline > 0 and reference > 0):
                return np.zeros_like(value)
            # A platform whose 99th percentile is barely above its median still needs a
            # scale; "twice the baseline" is the least that counts as fully suspicious.
            span = max(abs(np.log(reference / baseline)), np.log(2.0))
            ratio = value / baseline if kind == "ratio" else baseline / value
            level = np.log(ratio) / span
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
    return np.nan_to_num(np.clip(level, 0.0, 1.0), nan=0.0)


def _texts(contributions: pd.DataFrame, values: pd.DataFrame) -> list[str]:
    """One plain sentence per ring and feature, quoting value and baseline."""
    specs = {spec.name: spec for spec in FEATURES}
    detail = values.to_dict("index")
    return [
        _sentence(specs[feature], value, base, detail[ring])
        for ring, feature, value, base in zip(
            contributions["ring_id"], contributions["feature"], contributions["value"],
            contributions["baseline"], strict=True)
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _sentence(spec: FeatureSpec, value: float, base: float, row: dict) -> str:
    if not np.isfinite(value):
        return f"{spec.label}: not measurable for this ring"
    name = spec.name
    size = int(row["size"])
    if name == "accounts_per_card":
        cards = int(row["cards"])
        return (f"{int(row['card_members'])} accounts share {cards} payment "
                f"method{'s' if cards != 1 else ''} ({value:.1f} accounts per payment method, "
                f"platform {base:.1f})")
    if name == "prepaid_share":
        return (f"{_pct(value)} of members pay by prepaid card, {int(row['prepaid_cards'])} "
                f"prepaid card(s) (platform {_pct(base)})")
    if name == "datacenter_proxy_share":
        return (f"{_pct(value)} of members' IPs are datacenter or proxy, {int(row['ips'])} "
                f"IPs in all (platform {_pct(base)})")
    if name == "ip_rotation":
        return f"{value:.1f} distinct IPs per active day per account (platform {base:.1f})"
    if name == "signup_burst":
        return (f"{int(row['burst_members'])} of {size} accounts created within one burst "
                f"window (platform {_pct(base)} of sign-ups in its busiest window)")
    if name == "account_age_days":
        return f"median account age {value:.0f} days (platform {base:.0f})"
    if name == "farmable_signup_share":
        return (f"{_pct(value)} signed up through education/startup/research programs "
                f"(platform {_pct(base)})")
    if name == "requests_per_account":
        return f"{value:,.0f} requests per account (platform {base:,.0f})"
    if name == "tokens_per_account":
        return f"{value:,.0f} tokens per account (platform {base:,.0f})"
    if name == "output_input_ratio":
        return f"output/input token ratio {value:.2f} (platform {base:.2f})"
    if name == "near_rate_limit_share":
        return (f"{_pct(value)} of members' traffic in hours just below the rate limit of "
                f"{row['rate_limit']:,.0f} requests/hour (platform {_pct(base)})")
    if name == "around_the_clock":
        rhythm = "active 24/7" if value >= 0.7 else "sleeps like a person or a team"
        return (f"{rhythm}: its quietest 8 hours of the day carry {_pct(value)} of an even "
                f"spread's traffic (platform {_pct(base)})")
    if name == "load_balancing":
        order = "members take turns in round-robin order" if value >= 0.5 else (
            "members active independently or together")
        return f"{order} (regularity {value:.2f}, independent accounts 0)"
    if name == "model_pivot":
        return (f"{_pct(value)} of members' traffic went to newly released model(s) "
                f"{row['new_models']} in their first days (platform {_pct(base)})")
    if name == "template_concentration":
        templates = int(row["templates"])
        return (f"{int(row['senders'])} accounts send {templates} prompt "
                f"template{'s' if templates != 1 else ''} ({value:.1f} accounts per template, "
                f"platform {base:.1f})")
    if name == "reasoning_share":
        return (f"{_pct(value)} of members' prompts on reasoning-eliciting templates "
                f"({int(row['reasoning_templates'])} such templates; platform {_pct(base)})")
    if name == "capability_sweep":
        covered = row["categories"] or "none"
        return (f"main templates sweep {_pct(value)} of target capabilities ({covered}; "
                f"platform {_pct(base)})")
    raise ValueError(f"no sentence for feature {name!r}")


def _explanations(contributions: pd.DataFrame, order: pd.Series, top: int) -> list[str]:
    ranked = contributions.loc[contributions["contribution"] > 0].sort_values(
        ["ring_id", "contribution"], ascending=[True, False], kind="stable"
    )
    best = ranked.groupby("ring_id", sort=False).head(top)
    joined = best.groupby("ring_id", sort=False)["text"].agg("; ".join)
    return [joined.get(ring, "no extraction signal above the platform baseline")
            for ring in order]


def weights_from_mapping(mapping: dict[str, float]) -> ScoringWeights:
    """``ScoringWeights`` from a feature → weight mapping (unknown names are an error).

    Examples
    --------
    >>> weights_from_mapping({"reasoning_share": 5.0}).reasoning_share
    5.0
    """
    known = {f.name for f in fields(ScoringWeights)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValueError(f"unknown feature weight(s) {unknown}; known: {sorted(known)}")
    return ScoringWeights(**{k: float(v) for k, v in mapping.items()})
