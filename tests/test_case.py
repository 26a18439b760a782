"""graphinv.Case on both stores, its exports, and the `ring` and `case` commands."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.cli.investigate import case, ring
from graphinv.context import Context
from graphinv.errors import RingNotFound
from graphinv.investigate.case import Case
from graphinv.stores import open_store
from graphinv.sweep import run_sweep
from graphinv.synth import generate

for command in (ring, case):
    if command.name not in cli.commands:
        cli.add_command(command)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A swept embedded store (path) and its top ring."""
    db = tmp_path_factory.mktemp("case") / "g.duckdb"
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        ctx.store.load(generate(preset="small", seed=7, n_accounts=1500), progress=False)
        ctx.sweep()
        top = str(ctx.rings()["ring_id"].iloc[0])
    # Closed before the tests: DuckDB refuses a read-only CLI open beside a writable one.
    yield db, top


def test_case_frames_tell_the_story_of_the_ring(embedded: tuple[Path, str]) -> None:
    db, ring_id = embedded
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        opened = Case(ring_id, context=ctx)
    assert opened.ring["ring_id"] == ring_id and opened.ring["rank"] == 1
    assert len(opened.members) == opened.ring["size"]
    assert opened.members["account_id"].is_unique
    assert {"created_at", "requests", "first_active", "last_active"} <= set(opened.members)
    shared = opened.shared_identifiers
    assert len(shared) and (shared["members"] >= 2).all()
    assert (shared["platform_accounts"] >= shared["members"]).all()
    assert set(opened.timeline["account_id"]) <= set(opened.members["account_id"])
    assert opened.timeline["hour"].is_monotonic_increasing
    assert opened.breakdown["contribution"].sum() == pytest.approx(opened.ring["score"], abs=1e-9)
    assert list(opened.breakdown["contribution"]) == sorted(opened.breakdown["contribution"],
                                                            reverse=True)


def test_enforcement_content_and_decisions(embedded: tuple[Path, str], tmp_path: Path) -> None:
    db, ring_id = embedded
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        opened = Case(ring_id, context=ctx)
        assert opened.decision["disposition"] == "open"
        event = opened.decide(status="confirmed", assignee="ana", note="same BINs", by="ana")
        assert event["status"] == "confirmed"
        assert opened.decision["disposition"] == "confirmed"
        assert opened.notes["note"].tolist() == ["same BINs"]
        opened.decide(status="open", note="reopened for the test", by="ana")
    cards = opened.cards
    assert {"card", "type", "bin", "issuer_country", "prepaid", "outside_ring"} <= set(cards)
    assert len(cards) and cards["type"].notna().all()
    evidence = opened.evidence_identifiers
    assert (evidence["concentration"] >= 0.5).all()
    kinds = evidence["kind"].tolist()
    order = {"payment_method": 0, "ip": 1, "prompt_fingerprint": 2}
    assert [order.get(k, 3) for k in kinds] == sorted(order.get(k, 3) for k in kinds)
    assert (opened.hubs["concentration"] < 0.5).all()
    assert opened.totals["requests"] == opened.timeline["requests"].sum()
    events = opened.events
    assert events["at"].dropna().is_monotonic_increasing
    assert events["event"].str.contains("finds it").any()
    assert events["event"].str.contains("ana: confirmed").any()
    assert opened.provenance["code_version"] and opened.provenance["commands"]
    assert len(opened.templates) and opened.templates["category"].notna().all()


def test_exports_are_self_contained(embedded: tuple[Path, str], tmp_path: Path) -> None:
    db, ring_id = embedded
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        opened = Case(ring_id, context=ctx)
    page = opened.to_html(tmp_path / "case.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "overflow: auto" not in page and 'class="scroll"' not in page, "prints every row"
    for account in opened.members["account_id"]:
        assert f"<td>{account}</td>" in page
    for heading in ("Payment methods", "Prompt templates", "Timeline", "Provenance",
                    "Campaign: sibling rings", "Accounts outside the ring"):
        assert heading in page
    assert f"case {ring_id} --sweep" in page, "the command that reproduces it"
    assert not re.search(r"""(src|href)=["']?https?:""", page), "no external resources"
    assert ring_id in page and "Accounts to action" in page
    accounts = pd.read_csv(opened.to_csv(tmp_path / "accounts.csv"))
    assert list(accounts.columns) == ["account_id", "ring_id", "sweep_id", "ring_rank",
                                      "ring_score", "reason"]
    assert sorted(accounts["account_id"]) == sorted(opened.members["account_id"])
    assert accounts["reason"].str.startswith(f"member of ring {ring_id}").all()
    assert accounts["reason"].str.contains(" with ").any(), "what each account shares"


def test_unknown_ring_is_a_clear_error(embedded: tuple[Path, str]) -> None:
    db, _ = embedded
    store = open_store(path=db, use_env=False)
    try:
        with pytest.raises(RingNotFound, match="R-nope"):
            Case.open("R-nope", store=store)
    finally:
        store.close()


def test_ring_and_case_commands_on_the_embedded_store(
    embedded: tuple[Path, str], tmp_path: Path
) -> None:
    db, ring_id = embedded
    runner = CliRunner()
    shown = runner.invoke(cli, ["--db", str(db), "--quiet", "ring", ring_id, "--limit", "3"])
    assert shown.exit_code == 0, shown.output
    assert "Why this score" in shown.output and "Shared identifiers" in shown.output
    exported = runner.invoke(cli, ["--db", str(db), "--quiet", "case", ring_id,
                                   "--html", str(tmp_path / "c.html"),
                                   "--csv", str(tmp_path / "c.csv")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "c.html").is_file() and (tmp_path / "c.csv").is_file()
    neither = runner.invoke(cli, ["--db", str(db), "case", ring_id])
    assert neither.exit_code == 2 and "--html" in neither.output
    missing = runner.invoke(cli, ["--db", str(db), "ring", "R-nope"])
    assert missing.exit_code == 1 and "R-nope" in missing.output


@pytest.mark.neo4j
def test_case_and_commands_on_neo4j(
    neo4j_uri: str, neo4j_driver: neo4j.Driver, tmp_path: Path
) -> None:
    store = open_store(neo4j_uri=neo4j_uri, use_env=False)
    try:
        store.load(generate(preset="small", seed=7, n_accounts=1500), progress=False)
        run_sweep(store, progress=False)
        ring_id = str(store.read_rings()["ring_id"].iloc[0])
        opened = Case.open(ring_id, store=store)
        members = store.read_ring_members(ring_id)
    finally:
        store.close()
    assert sorted(opened.members["account_id"]) == sorted(members["account_id"])
    assert opened.breakdown["contribution"].sum() == pytest.approx(opened.ring["score"], abs=1e-9)
    assert len(opened.timeline) and len(opened.shared_identifiers)

    runner = CliRunner()
    shown = runner.invoke(cli, ["--neo4j", neo4j_uri, "--quiet", "ring", ring_id])
    assert shown.exit_code == 0, shown.output
    assert ring_id in shown.output
    exported = runner.invoke(cli, ["--neo4j", neo4j_uri, "--quiet", "case", ring_id,
                                   "--csv", str(tmp_path / "c.csv")])
    assert exported.exit_code == 0, exported.output
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(members)


def test_indicators_share_keyed_hashes_in_stix(embedded: tuple[Path, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from graphinv.cli.investigate import indicators
    from graphinv.ingest.pseudonymise import pseudonym

    if "indicators" not in cli.commands:
        cli.add_command(indicators)
    db, ring_id = embedded
    runner = CliRunner()
    monkeypatch.delenv("GRAPHINV_INDICATOR_KEY", raising=False)
    refused = runner.invoke(cli, ["--db", str(db), "indicators", ring_id])
    assert refused.exit_code == 1 and "GRAPHINV_INDICATOR_KEY" in refused.output
    monkeypatch.setenv("GRAPHINV_INDICATOR_KEY", "a-key-both-platforms-hold")
    out = tmp_path / "ring.stix.json"
    result = runner.invoke(cli, ["--db", str(db), "indicators", ring_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "bundle"
    kinds = {o["type"] for o in bundle["objects"]}
    assert {"identity", "indicator", "grouping"} <= kinds
    indicators_ = [o for o in bundle["objects"] if o["type"] == "indicator"]
    assert all(o["spec_version"] == "2.1" for o in indicators_)
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        evidence = Case(ring_id, context=ctx).evidence_identifiers
    shared = evidence.loc[evidence["kind"].isin(["payment_method", "ip", "prompt_fingerprint"])]
    assert len(indicators_) == len(shared) > 0
    text = out.read_text()
    key = b"a-key-both-platforms-hold"
    for kind, value in shared[["kind", "value"]].itertuples(index=False):
        assert value not in text, "never a raw value"
        assert pseudonym(value, kind=kind, key=key) in text
    grouping = next(o for o in bundle["objects"] if o["type"] == "grouping")
    assert grouping["x_graphinv_ring_id"] == ring_id and grouping["description"]


def test_provenance_names_every_input_file_by_hash(tmp_path: Path) -> None:
    from graphinv.synth import write_platform

    first, second = tmp_path / "day1", tmp_path / "day2"
    write_platform(generate(preset="small", seed=7, n_accounts=600), first)
    write_platform(generate(preset="small", seed=8, n_accounts=300), second)
    db = tmp_path / "g.duckdb"
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        ctx.load(first)
        ctx.sweep()
        ring_id = str(ctx.rings()["ring_id"].iloc[0])
        before_second_load = Case(ring_id, context=ctx).provenance["input_files"]
        ctx.load(second)
        history = ctx.store.load_history()
    assert [record.source for record in history] == [str(first.resolve()), str(second.resolve())]
    links = next(f for f in history[0].files if f.name.startswith("links"))
    assert links.sha256 == hashlib.sha256((first / links.name).read_bytes()).hexdigest()
    assert links.bytes == (first / links.name).stat().st_size
    # The case rests on the first load only: the second came after its sweep.
    assert links.sha256 in before_second_load and str(second.resolve()) not in before_second_load
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        page = Case(ring_id, context=ctx).to_html(tmp_path / "case.html").read_text()
    assert links.sha256 in page


def test_spend_is_estimated_from_configured_prices_only(embedded: tuple[Path, str]) -> None:
    from graphinv.config import load_settings

    db, ring_id = embedded
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        unpriced = Case(ring_id, context=ctx)
    assert "not estimated" in unpriced.totals["spend"]
    tokens = unpriced.timeline.groupby("model")[["input_tokens", "output_tokens"]].sum()
    priced_model, other = tokens.index[0], list(tokens.index[1:])
    settings = load_settings(path=None, environ={
        f"GRAPHINV_CASE__PRICES__{priced_model.upper()}": "[2.0, 10.0]",
    })
    # Environment keys are read lower-case, like every other setting.
    assert settings.case.prices == {priced_model.lower(): (2.0, 10.0)}
    settings = type(settings)(case=type(settings.case)(prices={priced_model: (2.0, 10.0)}))
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        priced = Case(ring_id, store=ctx.store, settings=settings)
    row = tokens.loc[priced_model]
    expected = (row["input_tokens"] * 2.0 + row["output_tokens"] * 10.0) / 1e6
    assert priced.totals["spend"].startswith(f"${expected:,.2f} at list prices")
    for model in other:
        assert model in priced.totals["spend"]
