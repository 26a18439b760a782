"""Detection quality on the synthetic platform, at the issue's targets.

Defaults were tuned on seed 0 of the small preset; these seeds were not looked at while
tuning. Targets: mean best-match F1 of true extraction rings at least 0.9, and no account
of a benign structure (household, office, university, enterprise app) inside a found
ring that is mostly extraction.
"""

from __future__ import annotations

import pytest

from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.evaluate import evaluate

synth = pytest.importorskip("graphinv.synth")

BENIGN_STRUCTURES = ("household", "office", "university", "enterprise_app")


def run(preset: str, seed: int):
    platform = synth.generate(preset=preset, seed=seed)
    detection = detect_rings(project(platform), platform=platform)
    return evaluate(detection.members, platform.labels)


def check(ev) -> None:
    assert ev.extraction_rings > 0
    assert ev.extraction_mean_f1 >= 0.9
    merged = ev.by_kind.set_index("kind")["in_extraction_rings"]
    assert merged.reindex(BENIGN_STRUCTURES).fillna(0).sum() == 0


@pytest.mark.parametrize("seed", [11, 12])
def test_small_preset(seed: int):
    check(run("small", seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [22])
def test_medium_preset(seed: int):
    check(run("medium", seed))
