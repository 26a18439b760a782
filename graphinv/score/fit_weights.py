"""Learn scoring weights from labelled past cases (``graphinv fit-weights``).

The score is a weighted mean of per-feature suspicions (:mod:`graphinv.score.scoring`). A
logistic regression on those suspicions, ``P(extraction) = σ(Σ cᵢ sᵢ + b)``, is the same
model up to a monotone map: with ``C = Σ cᵢ`` and weights ``wᵢ = cᵢ / C`` the score is
``Σ wᵢ sᵢ``, ``P = σ(C · score + b)``, and ``P = ½`` exactly at ``score = −b / C``. So the
fitted coefficients are config-ready weights, the fitted intercept gives the threshold,
and ``(C, b)`` is a Platt calibration from score to probability.

Coefficients are kept non-negative (a feature may only add suspicion, so the score stays
in [0, 1] and explanations stay readable): features the fit wants negative are dropped
(weight 0) and the model refitted, until all are ≥ 0. Quality is measured by stratified
cross-validation of that whole procedure. This is the only module that reads labels.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from graphinv.score.scoring import RingScores
>>> rng = np.random.default_rng(0)
>>> rings = [f"r{i}" for i in range(40)]
>>> bad = rng.random(40) < 0.5
>>> rows = [(r, f, float(np.clip(rng.normal(0.7 if b and f == "reasoning_share" else 0.2,
...                                         0.1), 0, 1)))
...         for r, b in zip(rings, bad) for f in ("reasoning_share", "prepaid_share")]
>>> contributions = pd.DataFrame(rows, columns=["ring_id", "feature", "suspicion"])
>>> scores = RingScores(rings=pd.DataFrame({"ring_id": rings}), contributions=contributions,
...                     baseline=pd.Series(dtype=float), rate_limits=pd.Series(dtype=float))
>>> members = pd.DataFrame({"ring_id": rings, "account_id": rings})
>>> labels = pd.DataFrame({"account_id": rings,
...                        "kind": np.where(bad, "extraction", "benign")})
>>> fit = fit_weights(scores, members, labels, folds=4)
>>> fit.weights["reasoning_share"] > fit.weights["prepaid_share"]
True
>>> bool(fit.metrics["roc_auc"].mean() > 0.95)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from graphinv.errors import ConfigError
from graphinv.score.features import FEATURES
from graphinv.score.scoring import RingScores

__all__ = ["FitResult", "fit_weights", "ring_labels"]


@dataclass(frozen=True)
class FitResult:
    """Weights learnt from labelled rings, with cross-validated quality.

    Attributes
    ----------
    weights : dict of str to float
        Feature name → weight for every registered feature, normalised to sum to 1
        (features the fit dropped weigh 0); the ``[scoring.weights]`` table.
    threshold : float
        Score at which the fitted probability of extraction is ½.
    slope, intercept : float
        Calibration: ``P(extraction) = 1 / (1 + exp(−(slope · score + intercept)))``.
    metrics : DataFrame
        One row per cross-validation fold: ``roc_auc``, ``average_precision``, ``brier``,
        ``log_loss`` on the held-out rings.
    n_rings, n_positive : int
        Rings fitted on and how many of them are extraction rings.
    """

    weights: dict[str, float]
    threshold: float
    slope: float
    intercept: float
    metrics: pd.DataFrame
    n_rings: int
    n_positive: int

    def config(self) -> dict[str, Any]:
        """The ``[scoring]`` settings this fit implies, for graphinv's TOML config."""
        return {"threshold": round(self.threshold, 4),
                "weights": {k: round(v, 4) for k, v in self.weights.items()}}

    def probability(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probability of extraction for scores made with these weights."""
        return 1.0 / (1.0 + np.exp(-(self.slope * np.asarray(score) + self.intercept)))


def ring_labels(
    members: pd.DataFrame, labels: pd.DataFrame, *, positive_kinds: Sequence[str] = ("extraction",)
) -> pd.Series:
    """1 for rings whose members are mostly of a positive kind, else 0, by ``ring_id``.

    Members without a label count as benign.

    Examples
    --------
    >>> import pandas as pd
    >>> members = pd.DataFrame({"ring_id": ["r1", "r1", "r1", "r2"],
    ...                         "account_id": ["a", "b", "c", "d"]})
    >>> labels = pd.DataFrame({"account_id": ["a", "b", "d"],
    ...                        "kind": ["extraction", "extraction", "household"]})
    >>> ring_labels(members, labels).to_dict()
    {'r1': 1, 'r2': 0}
    """
    kind = members["account_id"].map(labels.set_index("account_id")["kind"])
    positive = kind.isin(list(positive_kinds)).astype(float)
    share = positive.groupby(members["ring_id"]).mean()
    return (share > 0.5).astype(int)


def fit_weights(
    scores: RingScores,
    members: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    positive_kinds: Sequence[str] = ("extraction",),
    folds: int = 5,
    regularisation: float = 1.0,
    seed: int = 0,
) -> FitResult:
    """Fit feature weights and threshold to labelled rings by logistic regression.

    Parameters
    ----------
    scores : RingScores
        Scores of the rings (any weights; only the per-feature suspicions are used).
    members : DataFrame
        ``ring_id, account_id`` of the scored rings.
    labels : DataFrame
        ``account_id, kind``: past enforcement or synthetic ground truth.
    positive_kinds : sequence of str
        Label kinds that count as extraction. Default ``("extraction",)``; card testing
        and free-tier farming are negatives, so the weights learn to rank them below.
    folds : int ≥ 2
        Stratified cross-validation folds (fewer if a class has fewer rings). Default 5.
    regularisation : float > 0
        Inverse L2 strength ``C`` of the regression; synthetic cases are often separable,
        and without a penalty the coefficients would grow without bound. Default 1.0.
    seed : int
        Shuffles the folds.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        ``folds`` < 2, ``regularisation`` ≤ 0 or no ``positive_kinds``.
    ValueError
        The labelled rings are all of one class, or no feature separates them.
    """
    refused = {"folds": (folds, "must be ≥ 2", folds < 2),
               "regularisation": (regularisation, "must be > 0", not regularisation > 0),
               "positive_kinds": (list(positive_kinds), "must name a label kind",
                                  not positive_kinds)}
    problems = [f"fit_weights {key} = {value}: {bound}"
                for key, (value, bound, failed) in refused.items() if failed]
    if problems:
        raise ConfigError("; ".join(problems))
    names = list(FEATURES.names())
    matrix = (scores.contributions.pivot_table(index="ring_id", columns="feature",
                                               values="suspicion", aggfunc="first")
              .reindex(columns=names).fillna(0.0))
    target = ring_labels(members, labels, positive_kinds=positive_kinds)
    target = target.reindex(matrix.index).fillna(0).astype(int)
    x, y = matrix.to_numpy(), target.to_numpy()
    n_positive = int(y.sum())
    if n_positive == 0 or n_positive == len(y):
        raise ValueError("fit_weights needs labelled rings of both classes")

    splits = min(folds, n_positive, len(y) - n_positive)
    rows = []
    if splits >= 2:
        cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
        for train, test in cv.split(x, y):
            coef, intercept = _fit_non_negative(x[train], y[train], regularisation)
            p = 1.0 / (1.0 + np.exp(-(x[test] @ coef + intercept)))
            rows.append({
                "roc_auc": roc_auc_score(y[test], p),
                "average_precision": average_precision_score(y[test], p),
                "brier": brier_score_loss(y[test], p),
                "log_loss": log_loss(y[test], p, labels=[0, 1]),
            })
    coef, intercept = _fit_non_negative(x, y, regularisation)
    slope = float(coef.sum())
    if slope <= 0:
        raise ValueError("no feature separates extraction rings from the others")
    weights = dict(zip(names, (coef / slope).tolist(), strict=True))
    return FitResult(
        weights=weights,
        threshold=float(np.clip(-intercept / slope, 0.0, 1.0)),
        slope=slope,
        intercept=float(intercept),
        metrics=pd.DataFrame(rows, columns=["roc_auc", "average_precision", "brier",
                                            "log_loss"]),
        n_rings=len(y),
        n_positive=n_positive,
    )


def _fit_non_negative(x: np.ndarray, y: np.ndarray, regularisation: float
                      ) -> tuple[np.ndarray, float]:
    keep = np.ones(x.shape[1], dtype=bool)
    coef = np.zeros(x.shape[1])
    intercept = 0.0
    while keep.any():
        model = LogisticRegression(C=regularisation, max_iter=1000)
        model.fit(x[:, keep], y)
        fitted = model.coef_[0]
        coef[:] = 0.0
        coef[keep] = fitted
        intercept = float(model.intercept_[0])
        if (fitted >= 0).all():
            break
        keep[np.flatnonzero(keep)[fitted < 0]] = False
    return coef, intercept
