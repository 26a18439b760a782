"""The evaluation protocol's seeds file: tuning and report seeds apart, enough of each."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from graphinv.synth import PRESETS

SEEDS = Path(__file__).resolve().parents[1] / "bench" / "seeds.toml"
MIN_REPORT = {"small": 10, "medium": 10, "case-24k": 3}
# Seeds the detector was tuned or checked on before the protocol: never report seeds.
SEEN = {"small": {0, 2, 7, 11, 12}, "medium": {21, 22}, "case-24k": {3}}


@pytest.fixture(scope="module")
def seeds() -> dict:
    return tomllib.loads(SEEDS.read_text())


def test_every_preset_has_both_sets(seeds: dict) -> None:
    assert set(seeds) == set(PRESETS)
    for preset, sets in seeds.items():
        assert set(sets) == {"tuning", "report"}, preset
        for name, values in sets.items():
            assert values and all(isinstance(s, int) and s >= 0 for s in values), (preset, name)
            assert len(set(values)) == len(values), (preset, name)


@pytest.mark.parametrize("preset", sorted(MIN_REPORT))
def test_report_seeds_are_enough_and_never_tuned_on(seeds: dict, preset: str) -> None:
    tuning, report = set(seeds[preset]["tuning"]), set(seeds[preset]["report"])
    assert not tuning & report
    assert len(report) >= MIN_REPORT[preset]
    assert SEEN[preset] <= tuning
    assert len(tuning) > len(SEEN[preset])  # a few new tuning seeds besides the old ones
