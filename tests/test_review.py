"""Decisions on rings and the review queue across two sweeps, on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import neo4j
import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.errors import InputError, RingNotFound
from graphinv.investigate.review import (
    current_decisions,
    decide,
    decision_labels,
    review_queue,
    ring_notes,
)
from graphinv.schema import TABLES, Platform, conform
from graphinv.stores import Store, SweepRecord
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.store import Neo4jStore


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "embedded":
        opened: Store = EmbeddedStore(tmp_path / "graphinv.duckdb")
    else:
        driver: neo4j.Driver = request.getfixturevalue("neo4j_driver")
        opened = Neo4jStore(driver)
    yield opened
    opened.close()


ACCOUNTS = [f"a{i:02d}" for i in range(60)]


def load_accounts(store: Store) -> None:
    at = pd.to_datetime(["2024-01-01"] * len(ACCOUNTS), utc=True)
    accounts = pd.DataFrame({"account_id": ACCOUNTS, "created_at": at})
    store.load(Platform(
        conform(accounts, TABLES["accounts"]),
        conform(pd.DataFrame(columns=list(TABLES["links"].column_names)), TABLES["links"]),
        conform(pd.DataFrame(columns=list(TABLES["usage"].column_names)), TABLES["usage"]),
    ), progress=False)


def write(store: Store, sweep_id: str, day: int, rings: list[tuple], *,
          previous: str | None = None) -> None:
    """rings: (ring_id, size, score, status, predecessors); members drawn in order."""
    frame = pd.DataFrame(rings, columns=["ring_id", "size", "score", "status", "predecessors"])
    frame["rank"] = frame["score"].rank(ascending=False, method="first").astype(int)
    frame = frame.assign(campaign_id=None, explanation="", features=[{}] * len(frame),
                         flagged=frame["score"] >= 0.5, lineage_evidence=None, density=0.5)
    members, start = [], 0
    for ring_id, size in zip(frame["ring_id"], frame["size"], strict=True):
        members += [(ring_id, a) for a in ACCOUNTS[start:start + size]]
        start += size
    edges = [(r, p, s, 1, 0.5, 0, 0.0) for r, _, _, s, ps in rings for p in ps]
    store.write_sweep(
        SweepRecord(sweep_id, datetime(2024, 3, day, tzinfo=UTC),
                    {"settings": {"scoring": {"threshold": 0.5}}}),
        rings=frame,
        members=pd.DataFrame(members, columns=["ring_id", "account_id"]),
        campaigns=pd.DataFrame(columns=["campaign_id", "n_rings", "size"]),
        lineage=pd.DataFrame(edges, columns=["ring_id", "previous_ring_id", "status",
                                             "shared_members", "member_jaccard",
                                             "shared_identifiers", "infra_overlap"]),
        previous_sweep_id=previous,
    )


def day_one_decided(store: Store) -> None:
    load_accounts(store)
    write(store, "S1", 1, [
        ("rA", 10, 0.9, "new", []), ("rB", 5, 0.8, "new", []), ("rC", 4, 0.7, "new", []),
        ("rD", 6, 0.9, "new", []),
    ])
    at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    decide(store, "rA", status="actioned", by="ana", note="banned 10 accounts", at=at)
    decide(store, "rB", status="dismissed", by="ben", note="a university lab", at=at)
    decide(store, "rC", status="dismissed", by="ben", at=at)
    decide(store, "rD", status="in_progress", assignee="cy", by="ana", at=at)
    decide(store, "rD", status="confirmed", note="same BIN range as rA",
           by="cy", at=datetime(2024, 3, 1, 15, tzinfo=UTC))


def test_decisions_keep_who_when_and_the_latest_state(store: Store) -> None:
    day_one_decided(store)
    state = current_decisions(store).set_index("ring_id")
    assert state.loc["rD", "status"] == "confirmed"
    assert state.loc["rD", "assignee"] == "cy", "a later event without assignee keeps it"
    assert state.loc["rD", "last_note"] == "2024-03-01 15:00 cy: same BIN range as rA"
    assert state.loc["rB", "status_size"] == 5
    notes = ring_notes(store, "rD")
    assert notes["by"].tolist() == ["ana", "cy"]
    assert notes["status"].tolist() == ["in_progress", "confirmed"]
    assert str(notes["at"].iloc[1]) == "2024-03-01 15:00:00+00:00"


def test_a_second_sweep_escalates_respawns_and_keeps_dismissed_rings_silent(
    store: Store,
) -> None:
    day_one_decided(store)
    write(store, "S2", 2, [
        ("rA", 8, 0.85, "respawned", ["rA"]),   # actioned, back on its cards
        ("rB", 6, 0.8, "grown", ["rB"]),        # dismissed at 5; 6 ≤ 7.5: silent
        ("rC", 9, 0.7, "grown", ["rC"]),        # dismissed at 4; 9 > 6: alerts again
        ("rE", 4, 0.9, "split", ["rD"]),        # a piece of confirmed rD, new id
        ("rF", 5, 0.95, "new", []),             # undecided, above the threshold
        ("rG", 3, 0.2, "new", []),              # undecided, below it
    ], previous="S1")
    queue = review_queue(store, include_silent=True).set_index("ring_id")
    assert queue.loc["rA", "priority"] == "escalated"
    assert "actioned in S1" in queue.loc["rA", "reason"]
    assert queue.index[0] == "rA", "escalations first"
    assert queue.loc["rB", "priority"] == "silent"
    assert queue.loc["rC", "priority"] == "alert"
    assert "margin 50%" in queue.loc["rC", "reason"]
    assert queue.loc["rE", ["priority", "disposition", "decided_on"]].tolist() == [
        "in review", "confirmed", "rD"]
    assert queue.loc["rE", "assignee"] == "cy", "inherited with the decision"
    assert queue.loc["rF", "priority"] == "alert"
    assert queue.loc["rG", "priority"] == "silent"
    assert "rB" not in set(review_queue(store)["ring_id"]), "silent rings left out"
    # A wider margin keeps rC silent too.
    wide = review_queue(store, margin=2.0, include_silent=True).set_index("ring_id")
    assert wide.loc["rC", "priority"] == "silent"
    # Deciding the respawn in this sweep ends the escalation.
    decide(store, "rA", status="in_progress", by="ana")
    assert review_queue(store).set_index("ring_id").loc["rA", "priority"] == "in review"


def test_decisions_become_labels_for_fitting(store: Store) -> None:
    day_one_decided(store)
    labels = decision_labels(store).set_index("account_id")
    assert (labels.loc[ACCOUNTS[:10], "kind"] == "extraction").all()   # rA actioned
    assert (labels.loc[ACCOUNTS[10:19], "kind"] == "benign").all()     # rB, rC dismissed
    assert (labels.loc[ACCOUNTS[19:25], "kind"] == "extraction").all()  # rD confirmed
    assert len(labels) == 25


def test_bad_decisions_are_refused(store: Store) -> None:
    with pytest.raises(RingNotFound, match="no sweep"):
        decide(store, "rA", status="dismissed")
    day_one_decided(store)
    with pytest.raises(InputError, match="not one of"):
        decide(store, "rA", status="banned")
    with pytest.raises(InputError, match="give a status"):
        decide(store, "rA")
    with pytest.raises(RingNotFound, match="not in sweep"):
        decide(store, "nope", status="dismissed")


def test_review_command_sets_and_lists(tmp_path: Path) -> None:
    from graphinv.cli import cli

    db = tmp_path / "g.duckdb"
    with EmbeddedStore(db) as opened:
        day_one_decided(opened)
        write(opened, "S2", 2, [("rA", 8, 0.85, "respawned", ["rA"]),
                                ("rF", 5, 0.95, "new", [])], previous="S1")
    runner = CliRunner()
    set_result = runner.invoke(cli, ["--db", str(db), "review", "rF", "--set-status",
                                     "in_progress", "--assignee", "dee", "--note", "looking",
                                     "--by", "dee"])
    assert set_result.exit_code == 0, set_result.output
    assert "rF: in_progress" in set_result.output
    listed = runner.invoke(cli, ["--db", str(db), "review", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = pd.DataFrame(json.loads(listed.stdout))
    assert rows["ring_id"].tolist() == ["rA", "rF"]
    assert rows["priority"].tolist() == ["escalated", "in review"]
    table = runner.invoke(cli, ["--db", str(db), "review"])
    assert "escalated" in table.output and "dee" in table.output


def test_fit_weights_learns_from_decisions(tmp_path: Path) -> None:
    from graphinv.cli import cli
    from graphinv.sweep import run_sweep
    from graphinv.synth import generate

    db = tmp_path / "g.duckdb"
    with EmbeddedStore(db) as opened:
        opened.load(generate(preset="small", seed=5, n_accounts=1500), progress=False)
        rings = run_sweep(opened, progress=False).rings
        for ring_id in rings["ring_id"].head(3):
            decide(opened, ring_id, status="confirmed", by="ana")
        for ring_id in rings["ring_id"].tail(3):
            decide(opened, ring_id, status="dismissed", by="ana")
    result = CliRunner().invoke(cli, ["--db", str(db), "fit-weights", "--from-decisions"])
    assert result.exit_code == 0, result.output
    assert "Fitted on 6 rings (3 extraction)" in result.output
    assert "[scoring.weights]" in result.output


def test_alerts_are_grouped_by_the_ring_they_descend_from(store: Store) -> None:
    from graphinv.investigate.review import alert_groups

    day_one_decided(store)
    write(store, "S2", 2, [
        ("rA", 8, 0.85, "respawned", ["rA"]),
        ("rH", 3, 0.8, "respawned", ["rA"]),
        ("rF", 5, 0.95, "new", []),
    ], previous="S1")
    alerts = store.read_rings()
    groups = alert_groups(store, alerts)
    assert [g["predecessor"] for g in groups] == ["rA", None]
    assert groups[0]["ring_ids"] == ["rA", "rH"] and groups[0]["accounts"] == 11
    assert groups[0]["text"].startswith("rA (10 accounts, actioned) is back as 2 rings / "
                                        "11 accounts")
    assert groups[1]["text"] == "rF: new ring of 5 accounts, score 0.95"
