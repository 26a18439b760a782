"""Detection quality on synthetic platforms, at issue 17's targets, on report seeds.

Report seeds come from ``bench/seeds.toml``: no setting was chosen on them. Targets
(issue 17, per seed): mean best-match F1 of true extraction rings ≥ 0.95 and recall ≥ 0.95
over live accounts (banned and suspended accounts are structure, never ring members), each
harder ring style recovered with best-match F1 ≥ 0.90, and no account of a benign
structure or benign twin inside a found ring that is mostly extraction.

Targets not met yet (bench/results/issue17_round6.md has the figures) are strict
expected failures: they fail the suite the day they pass, so that the marker goes and the
target guards the code from then on; F1 and recall on small report seeds 100 and 101 and
medium report seed 200 are met and guarded. (Small report seed 100 and
medium report seed 200 met F1 and recall before scoring in the third round, which split
prompt-template hubs by sign-up burst; that term joined unrelated rings on fingerprints
computed from request logs and was taken out again.)
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import pytest

from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.evaluate import evaluate

synth = pytest.importorskip("graphinv.synth")

SEEDS = tomllib.loads((Path(__file__).parents[1] / "bench" / "seeds.toml").read_text())
BENIGN_STRUCTURES = ("household", "office", "university", "enterprise_app")
HARD_STYLES = ("star_card_ring", "star_proxy_ring", "funding_tree_ring", "sparse_ring",
               "hub_ip_ring", "hub_template_ring", "aperiodic_ring")
NOT_MET = "issue 17 target not met yet: see bench/results/issue17_round6.md"
SMALL_SEEDS = SEEDS["small"]["report"][:2]


@functools.cache
def run(preset: str, seed: int, *, twins: bool = False):
    platform = synth.generate(preset=preset, seed=seed)
    detection = detect_rings(project(platform), platform=platform)
    ev = evaluate(detection.members, platform.labels)
    if not twins:
        return ev
    return ev, twins_in_extraction_rings(detection.members, platform.labels)


def twins_in_extraction_rings(members, labels) -> int:
    """Benign-twin accounts (company card, campus class) inside mostly-extraction rings."""
    truth = labels.set_index("account_id")
    kind = truth["kind"].reindex(members["account_id"]).astype(str).to_numpy()
    found = members.assign(extraction=kind == "extraction")
    mostly = found.groupby("ring_id")["extraction"].mean() > 0.5
    inside = found.loc[found["ring_id"].map(mostly), "account_id"]
    traits = truth["traits"].reindex(inside).fillna("").astype(str)
    return int(traits.str.contains("company_card|campus_class").sum())


@pytest.fixture(scope="module", params=SMALL_SEEDS)
def small_with_twins(request):
    return run("small", request.param, twins=True)


@pytest.fixture
def small(small_with_twins):
    return small_with_twins[0]


def test_report_seeds_are_not_tuning_seeds():
    for preset, sets in SEEDS.items():
        assert not set(sets["tuning"]) & set(sets["report"]), preset


# slow (these three): detection quality on the full small preset of two report seeds.
@pytest.mark.slow
def test_no_benign_structure_inside_an_extraction_ring(small_with_twins):
    ev, twins = small_with_twins
    assert ev.extraction_rings > 0
    merged = ev.by_kind.set_index("kind")["in_extraction_rings"]
    assert merged.reindex(BENIGN_STRUCTURES).fillna(0).sum() == 0
    assert twins == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed",
    [
        SMALL_SEEDS[0],  # met since issue 17's fifth round (live F1 0.964, recall 0.952)
        SMALL_SEEDS[1],  # met since the sixth round (the fifth: F1 0.919)
    ],
)
def test_extraction_rings_whole(seed):
    ev, _ = run("small", seed, twins=True)
    assert ev.extraction_mean_f1_active >= 0.95
    assert ev.extraction_recall_active >= 0.95


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=NOT_MET)
def test_every_harder_ring_style_recovered(small):
    traps = small.by_trap.set_index("trait")
    found = traps.reindex(HARD_STYLES)
    assert (found["abuse_rings"] > 0).all()
    assert (found["mean_f1"] >= 0.90).all()


@pytest.mark.slow
def test_medium_report_seed():  # met since issue 17's sixth round
    ev = run("medium", SEEDS["medium"]["report"][0])
    assert ev.extraction_mean_f1_active >= 0.95
    assert ev.extraction_recall_active >= 0.95
