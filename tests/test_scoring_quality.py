"""Scoring quality on synthetic platforms against ground truth (the issue's targets).

Weights and threshold are the documented defaults, chosen on seed 0; these tests use
other seeds. The targets are the issue's, never fitted to the result. True rings come
from the labels (the members frame a perfect detector would give); the last test runs the
real projection and Leiden detection.
"""

from __future__ import annotations

import pandas as pd
import pytest

from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.schema import Platform
from graphinv.score.fit_weights import fit_weights
from graphinv.score.scoring import ScoringOptions, score_rings
from graphinv.synth import generate

ABUSE = ("card_testing", "free_tier_farming")
ADVERSARIAL = ("extraction", *ABUSE)
SEEDS = (1, 2)


def true_rings(platform: Platform) -> tuple[pd.DataFrame, pd.Series]:
    """Members of every labelled structure of two or more accounts, and each ring's kind."""
    labels = platform.labels
    ringed = labels[(labels["ring_id"].fillna("") != "") & (labels["kind"] != "benign")]
    size = ringed.groupby("ring_id")["account_id"].transform("size")
    ringed = ringed[size >= 2]
    kind = ringed.groupby("ring_id")["kind"].agg(lambda k: k.value_counts().index[0])
    return ringed[["ring_id", "account_id"]], kind


def account_metrics(members: pd.DataFrame, flagged_rings: pd.Index, labels: pd.DataFrame
                    ) -> dict[str, float]:
    kind = labels.set_index("account_id")["kind"]
    flagged = members.loc[members["ring_id"].isin(flagged_rings), "account_id"].unique()
    flagged_kind = kind.reindex(flagged).fillna("benign")
    benign_population = int((~kind.isin(ADVERSARIAL)).sum())
    hits = int((flagged_kind == "extraction").sum())
    return {
        "precision": hits / max(len(flagged), 1),
        "recall": hits / int((kind == "extraction").sum()),
        "benign_flagged_share": int((~flagged_kind.isin(ADVERSARIAL)).sum())
        / benign_population,
    }


@pytest.fixture(scope="module", params=SEEDS)
def scored(request) -> tuple[Platform, pd.DataFrame, pd.Series, pd.DataFrame]:
    platform = generate(preset="small", seed=request.param)
    members, kind = true_rings(platform)
    rings = score_rings(members, platform).rings.set_index("ring_id")
    return platform, members, kind, rings


def test_every_extraction_ring_ranks_above_every_other_ring(scored) -> None:
    _, _, kind, rings = scored
    kind = kind.reindex(rings.index)
    extraction = rings.loc[kind == "extraction", "score"]
    others = rings.loc[kind != "extraction", "score"]
    assert len(extraction) >= 10
    assert extraction.min() > others.max()


def test_abuse_rings_rank_between_benign_structures_and_extraction(scored) -> None:
    _, _, kind, rings = scored
    kind = kind.reindex(rings.index)
    abuse = rings.loc[kind.isin(ABUSE), "score"]
    benign = rings.loc[~kind.isin(ADVERSARIAL), "score"]
    assert benign.max() < abuse.min()
    assert set(kind[~kind.isin(ADVERSARIAL)]) >= {"household", "office", "university",
                                                  "enterprise_app"}


def test_account_level_targets_at_the_default_threshold(scored) -> None:
    platform, members, _, rings = scored
    metrics = account_metrics(members, rings.index[rings["flagged"]], platform.labels)
    assert metrics["precision"] >= 0.95
    assert metrics["recall"] >= 0.9
    assert metrics["benign_flagged_share"] <= 0.001


def test_camouflaged_members_share_their_ring_score(scored) -> None:
    platform, members, _, rings = scored
    labels = platform.labels.set_index("account_id")
    camouflaged = labels.index[labels["traits"].fillna("").str.contains("camouflage")]
    assert len(camouflaged) > 0
    ring_of = members.set_index("account_id")["ring_id"]
    assert rings.loc[ring_of.reindex(camouflaged).dropna(), "flagged"].all()


def test_fit_weights_learns_a_separating_config_on_one_seed(scored) -> None:
    platform, members, _, _ = scored
    scores = score_rings(members, platform)
    fit = fit_weights(scores, members, platform.labels, seed=0)
    assert fit.metrics["roc_auc"].min() > 0.95
    assert set(fit.config()) == {"threshold", "weights"}
    fitted = score_rings(members, platform, options=ScoringOptions(
        weights=fit.weights, threshold=fit.threshold)).rings.set_index("ring_id")
    metrics = account_metrics(members, fitted.index[fitted["flagged"]], platform.labels)
    assert metrics["recall"] >= 0.9 and metrics["precision"] >= 0.95


# slow (these two): detection then scoring on the full small preset, two seeds each.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 4])
def test_with_detected_rings_extraction_accounts_are_found(seed: int) -> None:
    platform = generate(preset="small", seed=seed)
    members = detect_rings(project(platform), platform=platform).members
    rings = score_rings(members, platform).rings.set_index("ring_id")
    metrics = account_metrics(members, rings.index[rings["flagged"]], platform.labels)
    assert metrics["precision"] >= 0.95
    assert metrics["benign_flagged_share"] <= 0.001
    # Scoring itself must flag no ring that is mostly benign.
    kind = members["account_id"].map(platform.labels.set_index("account_id")["kind"])
    extraction_share = (kind == "extraction").groupby(members["ring_id"]).mean()
    assert (extraction_share.reindex(rings.index[rings["flagged"]]) > 0.5).all()


# Open target (issue 17): since the presets hold the harder rings (star proxy, sparse, hub
# rings) detected-ring recall is 0.81 / 0.74 on these seeds. Strict: the suite fails the
# day it passes, so the mark is removed then.
@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="detected-ring recall below 0.9 on the harder presets")
@pytest.mark.parametrize("seed", [1, 4])
def test_with_detected_rings_extraction_recall_reaches_target(seed: int) -> None:
    platform = generate(preset="small", seed=seed)
    members = detect_rings(project(platform), platform=platform).members
    rings = score_rings(members, platform).rings.set_index("ring_id")
    metrics = account_metrics(members, rings.index[rings["flagged"]], platform.labels)
    assert metrics["recall"] >= 0.9
