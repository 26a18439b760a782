"""Speed work must not change results: two sweeps on a small platform give exactly the
rings, members, scores, features and explanations pinned in ``tests/data/golden_sweeps.json``
(written by ``tests/golden_sweeps.py`` with the code before the columnar read path)."""

from __future__ import annotations

import json
from pathlib import Path

from golden_sweeps import GOLDEN, sweep_results


def test_sweeps_match_the_pinned_results_exactly(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text())
    found = json.loads(json.dumps(sweep_results(tmp_path / "g.duckdb"), sort_keys=True))
    assert [len(s["rings"]) for s in found] == [len(s["rings"]) for s in expected]
    for got, want in zip(found, expected, strict=True):
        assert got["counts"] == want["counts"]
        for ring, pinned in zip(got["rings"], want["rings"], strict=True):
            assert ring == pinned, ring["ring_id"]
