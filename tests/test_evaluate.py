"""Metrics of found rings against labels, on small hand-checked cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from graphinv.config import Settings
from graphinv.errors import ConfigError
from graphinv.evaluate import EvaluationOptions, evaluate
from graphinv.score.scoring import ScoringOptions


def labels_frame() -> pd.DataFrame:
    rows = (
        [(f"e{i}", "R1", "extraction", "camouflage" if i == 0 else "") for i in range(6)]
        + [(f"f{i}", "R2", "extraction", "") for i in range(4)]
        + [(f"o{i}", "O1", "office", "office_nat") for i in range(5)]
        + [(f"b{i}", None if i else "", "benign", "cgnat;vpn" if i < 2 else "") for i in range(5)]
    )
    return pd.DataFrame(rows, columns=["account_id", "ring_id", "kind", "traits"])


def members_frame(groups: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(r, a) for r, accounts in groups.items() for a in accounts],
        columns=["ring_id", "account_id"],
    )


def test_perfect_detection():
    labels = labels_frame()
    in_ring = labels[labels["ring_id"].fillna("") != ""]
    groups = {r: list(g) for r, g in in_ring.groupby("ring_id")["account_id"]}
    ev = evaluate(members_frame(groups), labels)
    assert ev.extraction_mean_f1 == 1.0
    assert ev.extraction_share_f1_050 == 1.0
    assert ev.ari == pytest.approx(1.0)
    assert ev.extraction_precision == 10 / 15  # office accounts are flagged without scores
    assert ev.extraction_recall == 1.0
    assert ev.benign_flagged == 5
    assert ev.benign_in_extraction_rings == 0
    assert ev.precision_at_k is None


def test_best_match_f1_and_merge_damage():
    # R1 found with one missing member and two office accounts merged in; R2 split in half.
    groups = {
        "x": ["e1", "e2", "e3", "e4", "e5", "o0", "o1"],
        "y": ["f0", "f1"],
        "z": ["f2", "f3", "b4"],
    }
    ev = evaluate(members_frame(groups), labels_frame())
    per_ring = ev.per_ring.set_index("ring_id")
    assert per_ring.loc["R1", "f1"] == pytest.approx(2 * 5 / (6 + 7))
    assert per_ring.loc["R1", "best_ring"] == "x"
    assert per_ring.loc["R2", "f1"] == pytest.approx(2 * 2 / (4 + 2))
    assert per_ring.loc["O1", "f1"] == pytest.approx(2 * 2 / (5 + 7))
    assert ev.extraction_mean_f1 == pytest.approx((10 / 13 + 2 / 3) / 2)
    assert ev.benign_in_extraction_rings == 3  # o0, o1 in x; b4 in z
    by_kind = ev.by_kind.set_index("kind")
    assert by_kind.loc["office", "in_extraction_rings"] == 2
    by_trait = ev.by_trait.set_index("trait")
    assert by_trait.loc["camouflage", "extraction"] == 1
    assert by_trait.loc["camouflage", "extraction_flagged"] == 0
    assert by_trait.loc["office_nat", "other_in_extraction_rings"] == 2
    assert by_trait.loc["cgnat", "other_flagged"] == 0


def test_ari_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    ids = [f"a{i}" for i in range(300)]
    truth = rng.integers(0, 30, 300)
    labels = pd.DataFrame(
        {
            "account_id": ids,
            "ring_id": [f"t{t}" if t < 20 else None for t in truth],
            "kind": "extraction",
        }
    )
    found = rng.integers(0, 40, 300)
    members = pd.DataFrame({"ring_id": [f"f{f}" for f in found], "account_id": ids})
    members = members[found < 25]
    ev = evaluate(members, labels)
    singles_t = [f"t{t}" if t < 20 else f"st{i}" for i, t in enumerate(truth)]
    singles_f = [f"f{f}" if f < 25 else f"sf{i}" for i, f in enumerate(found)]
    assert ev.ari == pytest.approx(sklearn.adjusted_rand_score(singles_t, singles_f))


def test_scores_threshold_and_top_k():
    groups = {
        "x": [f"e{i}" for i in range(6)],
        "y": [f"o{i}" for i in range(5)],
        "z": [f"f{i}" for i in range(4)],
    }
    scores = pd.DataFrame({"ring_id": ["x", "y", "z"], "score": [0.9, 0.6, 0.3]})
    ev = evaluate(members_frame(groups), labels_frame(), scores=scores,
                  options=EvaluationOptions(top_k=2))
    # Flagging uses the scoring threshold (one source: ScoringOptions), 0.4 by default.
    assert ev.threshold == ScoringOptions().threshold == 0.4
    assert ev.precision_at_k == 0.5
    assert ev.extraction_recall == 0.6
    assert ev.extraction_precision == 6 / 11
    assert ev.benign_flagged == 5
    strict = evaluate(members_frame(groups), labels_frame(), scores=scores,
                      settings=Settings(scoring=ScoringOptions(threshold=0.8)))
    assert strict.benign_flagged == 0 and strict.extraction_precision == 1.0


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match=r"evaluation\.top_k = 0: must be ≥ 1"):
        EvaluationOptions(top_k=0)


def test_serialises_and_renders():
    ev = evaluate(members_frame({"x": ["e0", "e1", "e2"]}), labels_frame())
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["rings_found"] == 1
    assert {r["ring_id"] for r in data["per_ring"]} == {"R1", "R2"}
    console = Console(record=True, width=160)
    console.print(ev.table())
    assert "extraction_mean_f1" in console.export_text()


def test_nothing_found():
    ev = evaluate(pd.DataFrame(columns=["ring_id", "account_id"]), labels_frame())
    assert ev.extraction_mean_f1 == 0.0
    assert math.isnan(ev.extraction_precision)
    assert ev.extraction_recall == 0.0
    assert ev.ari == pytest.approx(0.0)


def trap_labels() -> pd.DataFrame:
    rows = (
        [
            (f"e{i}", "R1", "extraction", "star_card_ring" + (";banned" if i == 5 else ""))
            for i in range(6)
        ]
        + [
            (f"f{i}", "R2", "extraction", "sparse_ring" + (";suspended" if i == 3 else ""))
            for i in range(4)
        ]
        + [(f"o{i}", "O1", "office", "company_card") for i in range(5)]
        + [(f"b{i}", "", "benign", "ring_hub_user" if i == 0 else "") for i in range(5)]
    )
    return pd.DataFrame(rows, columns=["account_id", "ring_id", "kind", "traits"])


def trap_found() -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = {
        "x": ["e0", "e1", "e2", "e3", "e4", "o0"],
        "y": ["f0", "f1"],
        "z": ["b0", "b1", "b2"],
    }
    scores = pd.DataFrame({"ring_id": ["x", "y", "z"], "score": [0.9, 0.6, 0.3]})
    return members_frame(groups), scores


def test_purity_benign_rate_and_flagged_rings():
    members, scores = trap_found()
    ev = evaluate(members, trap_labels(), scores=scores)
    # x and y are flagged (score >= 0.5): e0-e4, o0, f0, f1.
    assert ev.flagged_rings == 2 and ev.extraction_rings == 2
    assert ev.flagged_per_true_ring == 1.0
    assert ev.extraction_precision == 7 / 8
    assert ev.extraction_recall == 7 / 10
    assert ev.benign_accounts == 10 and ev.benign_flagged == 1
    assert ev.benign_flagged_per_10k == 1_000.0
    # Before scoring: 11 accounts in found rings, 7 of them in true abuse rings.
    assert ev.ring_purity == pytest.approx(7 / 11)
    unscored = evaluate(members, trap_labels())
    assert unscored.flagged_rings == 3 and unscored.flagged_per_true_ring == 1.5
    assert unscored.benign_flagged_per_10k == 4 * 1_000.0  # o0, b0, b1, b2


def test_active_only_figures_leave_banned_and_suspended_out():
    members, scores = trap_found()
    ev = evaluate(members, trap_labels(), scores=scores)
    assert ev.inactive_accounts == 2  # e5 banned, f3 suspended
    assert ev.extraction_mean_f1 == pytest.approx((10 / 12 + 4 / 6) / 2)
    # Live R1 is e0-e4 (x holds them and o0); live R2 is f0-f2 (y holds two).
    assert ev.extraction_mean_f1_active == pytest.approx((10 / 11 + 4 / 5) / 2)
    assert ev.extraction_recall_active == 7 / 8
    assert ev.extraction_precision_active == 7 / 8
    # A status column counts too: b1 suspended is left out of the live view.
    with_status = trap_labels().assign(status="active")
    with_status.loc[with_status["account_id"] == "b1", "status"] = "suspended"
    assert evaluate(members, with_status, scores=scores).inactive_accounts == 3


def test_per_trap_table():
    members, scores = trap_found()
    trap = evaluate(members, trap_labels(), scores=scores).by_trap.set_index("trait")
    assert trap.loc["star_card_ring", "abuse_rings"] == 1
    assert trap.loc["star_card_ring", "mean_f1"] == pytest.approx(10 / 12)
    assert trap.loc["star_card_ring", "abuse_flagged_share"] == pytest.approx(5 / 6)
    assert trap.loc["sparse_ring", "min_f1"] == pytest.approx(4 / 6)
    assert trap.loc["sparse_ring", "abuse_flagged_share"] == 0.5
    # One banned member of six does not make R1 a "banned" ring.
    assert trap.loc["banned", "abuse_rings"] == 0 and trap.loc["banned", "abuse_accounts"] == 1
    assert trap.loc["company_card", "benign_accounts"] == 5
    assert trap.loc["company_card", "benign_flagged"] == 1
    assert trap.loc["company_card", "abuse_rings"] == 0
    # b0 sits in a found ring (z) that scored below the threshold: in a ring, not flagged.
    assert trap.loc["ring_hub_user", "benign_in_rings"] == 1
    assert trap.loc["ring_hub_user", "benign_flagged"] == 0
