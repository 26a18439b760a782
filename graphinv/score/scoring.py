"""Score rings by extraction behaviour, with an explanation a person can check.

Each feature of the registry :data:`graphinv.score.features.FEATURES` is turned into a
*suspicion* in [0, 1] by comparing the ring's value with the platform baseline, as its
``unit`` says:

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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pydantic

from graphinv.errors import stage_options
from graphinv.schema import Platform
from graphinv.score.features import FEATURES, FeatureOptions, ring_features
from graphinv.score.registry import RingFeatures, Unit

__all__ = ["Measure", "RingScores", "ScoringOptions", "score_rings", "suspicion"]

#: ``(members, platform, *, options: FeatureOptions) → RingFeatures``: how an engine
#: measures features (:func:`~graphinv.score.features.ring_features` by default).
Measure = Callable[..., RingFeatures]


@stage_options("scoring")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class ScoringOptions:
    """Settings of :func:`score_rings`.

    Parameters
    ----------
    weights : mapping of str to float ≥ 0
        Weight of each feature (any non-negative scale; they are normalised). Features
        not named keep their registered default weight; a name the registry does not know
        is an error. Defaults follow from how specific each signal is to distillation
        (docs/scoring.md): content and timing signals that only a model-extraction
        pipeline produces weigh 2–3, infrastructure signals common to every kind of
        coordinated abuse (cards, bursts, proxies) weigh 1, and raw volume and template
        concentration, which enterprise apps show too, weigh 0.25–0.5.
    threshold : float in [0, 1]
        Rings scoring at or above it are flagged (``RingScores.rings.flagged``). Default
        ``0.4``: an extraction ring shows most extraction signals at once and scores
        0.5–0.9; card-testing and free-tier-farming rings share only the infrastructure
        signals (about a third of the weight) and benign structures one or two signals.
    features : FeatureOptions
        How features are measured (rate limit, burst window, target categories, …).
    explain_top : int ≥ 1
        Features quoted in a ring's one-line explanation. Default ``4``.

    Examples
    --------
    >>> ScoringOptions(weights={"reasoning_share": 5.0}).weights["output_input_ratio"]
    2.0
    >>> ScoringOptions(threshold=7)
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: scoring.threshold = 7: must be ≤ 1
    >>> ScoringOptions(weights={"reasoning_shares": 5.0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: scoring.weights: unknown feature(s) ['reasoning_shares']; ...
    """

    weights: dict[str, Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]] = (
        dataclasses.field(default_factory=FEATURES.default_weights))
    threshold: Annotated[float, pydantic.Field(ge=0, le=1)] = 0.4
    features: FeatureOptions = dataclasses.field(default_factory=FeatureOptions)
    explain_top: Annotated[int, pydantic.Field(ge=1)] = 4

    @pydantic.field_validator("weights")
    @classmethod
    def _known_features(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(FEATURES.names()))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {list(FEATURES.names())}")
        return {f.name: weights.get(f.name, f.weight) for f in FEATURES}


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
    members: pd.DataFrame,
    platform: Platform,
    *,
    options: ScoringOptions | None = None,
    measure: Measure | None = None,
) -> RingScores:
    """Score every ring of ``members`` by extraction behaviour and explain the score.

    Parameters
    ----------
    members : DataFrame
        ``ring_id, account_id``; every member gets its ring's score.
    platform : Platform
        The platform's tables; ``labels`` is never read.
    options : ScoringOptions, optional
        Weights, threshold and feature settings; default: the class's documented defaults.
    measure : callable, optional
        Measures the features, ``(members, platform, *, options) → RingFeatures``;
        default :func:`~graphinv.score.features.ring_features`. An engine passes its own
        (e.g. ``SparkDetector.features``, which aggregates on Spark).

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
    options = options or ScoringOptions()
    measured = (measure or ring_features)(members, platform, options=options.features)
    # A feature registered after ``options`` was made has no weight there: its default.
    weights = {spec.name: options.weights.get(spec.name, spec.weight) for spec in FEATURES}
    total_weight = sum(weights.values()) or 1.0
    values = measured.values
    rows = []
    for spec in FEATURES:
        value = values[spec.name].to_numpy(dtype=float)
        base = float(measured.baseline.get(spec.name, np.nan))
        ref = float(measured.reference.get(spec.name, np.nan))
        level = suspicion(value, baseline=base, reference=ref, unit=spec.unit)
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
    value: np.ndarray, *, baseline: float, reference: float = np.nan, unit: Unit
) -> np.ndarray:
    """How far beyond the platform baseline a feature value is, in [0, 1], by ``unit``.

    Examples
    --------
    >>> import numpy as np
    >>> suspicion(np.array([0.1, 0.55, 1.0]), baseline=0.1, unit="share").round(2).tolist()
    [0.0, 0.5, 1.0]
    >>> suspicion(np.array([1.0, 3.0, 9.0]), baseline=1.0, reference=9.0, unit="ratio").round(2)
    array([0. , 0.5, 1. ])
    """
    value = np.asarray(value, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if unit == "share":
            level = (value - baseline) / max(1.0 - baseline, 1e-9)
        elif unit in ("ratio", "inverse_ratio"):
            if not (baseline > 0 and reference > 0):
                return np.zeros_like(value)
            # A platform whose 99th percentile is barely above its median still needs a
            # scale; "twice the baseline" is the least that counts as fully suspicious.
            span = max(abs(np.log(reference / baseline)), np.log(2.0))
            ratio = value / baseline if unit == "ratio" else baseline / value
            level = np.log(ratio) / span
        else:
            raise ValueError(f"unknown feature unit {unit!r}")
    return np.nan_to_num(np.clip(level, 0.0, 1.0), nan=0.0)


def _texts(contributions: pd.DataFrame, values: pd.DataFrame) -> list[str]:
    """One plain sentence per ring and feature, quoting value and baseline."""
    detail: dict[Any, Any] = values.to_dict("index")
    return [
        FEATURES[feature].explain(value, base, detail[ring])
        for ring, feature, value, base in zip(
            contributions["ring_id"], contributions["feature"], contributions["value"],
            contributions["baseline"], strict=True)
    ]


def _explanations(contributions: pd.DataFrame, order: pd.Series, top: int) -> list[str]:
    ranked = contributions.loc[contributions["contribution"] > 0].sort_values(
        ["ring_id", "contribution"], ascending=[True, False], kind="stable"
    )
    best = ranked.groupby("ring_id", sort=False).head(top)
    joined = best.groupby("ring_id", sort=False)["text"].agg("; ".join)
    return [joined.get(ring, "no extraction signal above the platform baseline")
            for ring in order]

