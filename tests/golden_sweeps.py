"""Writes tests/data/golden_sweeps.json: what two sweeps find on a small platform.

The file pins sweep results (members, scores, features, explanations, lineage) so a
change to how stores read or how features are computed cannot change them unnoticed;
``tests/test_identical_results.py`` compares against it. Regenerate it only for a change
that is meant to change results, and say so in the commit:
``python tests/golden_sweeps.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphinv.stores import open_store
from graphinv.sweep import run_sweep
from graphinv.synth import generate, next_day

GOLDEN = Path(__file__).parent / "data" / "golden_sweeps.json"
SEED = 11
AT = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC))


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if hasattr(value, "item"):
        return _number(value.item())
    return value


def sweep_results(store_path: Path) -> list[dict[str, Any]]:
    """Two sweeps (a platform, then its next day) on a fresh embedded store."""
    day0 = generate(preset="small", seed=SEED)
    day1 = next_day(day0, seed=SEED)
    out = []
    with open_store(path=store_path, use_env=False) as store:
        for platform, at in zip((day0, day1), AT, strict=True):
            store.load(platform, progress=False)
            report = run_sweep(store, progress=False, at=at)
            members = store.read_members()
            rings = []
            for row in report.rings.to_dict("records"):
                rings.append({
                    "ring_id": row["ring_id"],
                    "rank": int(row["rank"]),
                    "score": float(row["score"]),
                    "size": int(row["size"]),
                    "flagged": bool(row["flagged"]),
                    "campaign_id": row["campaign_id"],
                    "status": row["status"],
                    "predecessors": sorted(row["predecessors"]),
                    "explanation": row["explanation"],
                    "features": {k: _number(v) for k, v in sorted(row["features"].items())},
                    "members_sha256": hashlib.sha256("\n".join(sorted(
                        members.loc[members["ring_id"] == row["ring_id"], "account_id"]
                    )).encode()).hexdigest(),
                })
            out.append({"sweep_id": report.sweep_id, "counts": report.counts, "rings": rings})
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        results = sweep_results(Path(tmp) / "g.duckdb")
    GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {[len(s['rings']) for s in results]} rings")
