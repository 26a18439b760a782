"""The saved query library: strict schema, parameter binding, the `queries` command, and
every query run against a real Neo4j holding planted rings and two sweeps."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import neo4j
import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.cli.investigate import queries
from graphinv.investigate.querylib import QueryError, bind, load_queries, parse_query, run_query
from graphinv.stores import open_store
from graphinv.stores.base import Store, SweepRecord
from graphinv.sweep import run_sweep
from graphinv.synth import generate

REQUIRED_IDS = {
    "top-rings", "ring-members", "ring-graph", "ring-score-explained", "card-sharers",
    "card-links", "ip-links", "template-links", "ring-growth", "campaigns", "account-overview",
}
GOOD = """\
id: {id}
name: A query
category: rings
description: Something useful.
parameters:
  - name: limit
    type: integer
    default: 5
    description: Rows.
query: |
  MATCH (g:Ring) RETURN g.id LIMIT $limit
"""

if "queries" not in cli.commands:
    cli.add_command(queries)


def test_library_holds_the_queries_investigators_need() -> None:
    library = load_queries()
    assert set(library) >= REQUIRED_IDS
    for query in library.values():
        assert query.path.stem == query.id
        assert query.description and query.name


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("name: A query\n", ""), "keys must be exactly"),
        (lambda t: t + "extra: 1\n", "keys must be exactly"),
        (lambda t: t.replace("category: rings", "category: misc"), "category"),
        (lambda t: t.replace("type: integer", "type: list"), "type"),
        (lambda t: t.replace("default: 5", "default: five"), "default"),
        (lambda t: t.replace("LIMIT $limit", "LIMIT 5"), "differ from those declared"),
        (lambda t: t.replace("LIMIT $limit", "WHERE g.id = $ring LIMIT $limit"),
         "differ from those declared"),
        (lambda t: t.replace("id: good", "id: other"), "equal the file name"),
        (lambda t: "- just a list\n", "keys must be exactly"),
    ],
)
def test_schema_rejects_bad_files(tmp_path: Path, edit, problem: str) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(edit(GOOD.format(id="good")))
    with pytest.raises(QueryError, match=problem):
        parse_query(path)


def test_schema_accepts_the_template(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD.format(id="good"))
    assert parse_query(path).parameters[0].default == 5


def test_bind_converts_text_and_checks_names() -> None:
    query = load_queries()["ring-graph"]
    assert bind(query, {"ring_id": "R-1", "max_accounts": "7"}) == {
        "ring_id": "R-1", "min_shared": 2, "max_identifiers": 40, "max_accounts": 7
    }
    with pytest.raises(QueryError, match="required"):
        bind(query, {})
    with pytest.raises(QueryError, match="not a integer"):
        bind(query, {"ring_id": "R-1", "max_accounts": "many"})
    with pytest.raises(QueryError, match="unknown parameter"):
        bind(query, {"ring_id": "R-1", "colour": "red"})


def test_queries_list_and_show_need_no_store() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["queries", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ring-growth" in listed.output
    shown = runner.invoke(cli, ["queries", "show", "card-sharers"])
    assert shown.exit_code == 0 and "MATCH (x:Account {id: $account_id})" in shown.output
    missing = runner.invoke(cli, ["queries", "show", "nope"])
    assert missing.exit_code == 1 and "no saved query 'nope'" in missing.output


def test_queries_run_on_the_embedded_store_says_it_needs_neo4j(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "g.duckdb"), "queries", "run", "top-rings"]
    )
    assert result.exit_code == 1
    assert "need the Neo4j store" in result.output


# -- against Neo4j -----------------------------------------------------------------------


def plant_two_sweeps(store: Store) -> dict[str, str]:
    """Load a small platform, sweep it, then record a second sweep in which the top ring
    has grown by three accounts; returns ids to query with."""
    platform = generate(preset="small", seed=11, n_accounts=1500)
    store.load(platform, progress=False)
    first = run_sweep(store, progress=False)
    rings = store.read_rings(sweep_id=first.sweep_id)
    top = str(rings["ring_id"].iloc[0])
    members = pd.concat(
        [store.read_ring_members(r, sweep_id=first.sweep_id) for r in rings["ring_id"]],
        ignore_index=True,
    )
    outsiders = platform.accounts.loc[
        ~platform.accounts["account_id"].isin(members["account_id"]), "account_id"
    ].head(3)
    grown = pd.concat([members, pd.DataFrame({"ring_id": top, "account_id": outsiders})])
    rings2 = rings.copy()
    rings2.loc[rings2["ring_id"] == top, "size"] += len(outsiders)
    rings2["status"] = "continuing"
    rings2.loc[rings2["ring_id"] == top, "status"] = "grown"
    rings2["predecessors"] = [[r] for r in rings2["ring_id"]]
    lineage = pd.DataFrame({
        "ring_id": rings2["ring_id"], "previous_ring_id": rings2["ring_id"],
        "status": rings2["status"], "shared_members": rings2["size"], "member_jaccard": 1.0,
        "shared_identifiers": 0, "infra_overlap": 0.0,
    })
    campaigns = rings.groupby("campaign_id", as_index=False).agg(
        n_rings=("ring_id", "size"), size=("size", "sum")
    )
    store.write_sweep(
        SweepRecord("S-second", first.at + timedelta(days=1), {}),
        rings=rings2, members=grown, campaigns=campaigns, lineage=lineage,
        previous_sweep_id=first.sweep_id,
    )
    member = store.read_ring_members(top)["account_id"].iloc[0]
    links = platform.links
    ring_links = links.loc[links["account_id"].isin(members.loc[members["ring_id"] == top,
                                                                "account_id"])]

    def most_shared(kind: str) -> str:
        return str(ring_links.loc[ring_links["kind"] == kind, "value"].value_counts().index[0])

    carded = ring_links.loc[ring_links["kind"] == "payment_method"]
    card_users = links.loc[links["value"].isin(carded["value"])].groupby("value").size()
    shared_card = card_users[card_users > 1].index[0]
    return {
        "ring_id": top,
        "account_id": member,
        "card_holder": str(carded.loc[carded["value"] == shared_card, "account_id"].iloc[0]),
        "card": most_shared("payment_method"),
        "ip": most_shared("ip"),
        "fingerprint": most_shared("prompt_fingerprint"),
    }


@pytest.mark.neo4j
def test_every_saved_query_returns_rows_on_neo4j(
    neo4j_uri: str, neo4j_driver: neo4j.Driver
) -> None:
    store = open_store(neo4j_uri=neo4j_uri, use_env=False)
    try:
        ids = plant_two_sweeps(store)
        params = {
            "top-rings": {}, "campaigns": {}, "ring-growth": {},
            "ring-neighbours": {"ring_id": ids["ring_id"]},
            "ring-members": {"ring_id": ids["ring_id"]},
            "ring-graph": {"ring_id": ids["ring_id"]},
            "ring-score-explained": {"ring_id": ids["ring_id"]},
            "account-overview": {"account_id": ids["account_id"]},
            "card-sharers": {"account_id": ids["card_holder"]},
            "card-links": {"card": ids["card"]},
            "ip-links": {"ip": ids["ip"]},
            "template-links": {"fingerprint": ids["fingerprint"]},
        }
        library = load_queries()
        assert set(params) == set(library), "every saved query needs a case here"
        empty = [qid for qid, values in params.items()
                 if run_query(store, qid, params=values).empty]
        assert not empty, f"queries returned no rows: {empty}"

        growth = run_query(store, "ring-growth").set_index("ring_id")
        assert growth.loc[ids["ring_id"], "growth"] == 3
        assert growth.loc[ids["ring_id"], "change"] == "grown", "the stored status"
        assert list(growth.index) == [ids["ring_id"]], "continuing rings left out by default"
        drawn = run_query(store, "ring-graph", params={"ring_id": ids["ring_id"]}).iloc[0]
        kinds = [sorted(node.labels)[0] for node in drawn["identifiers"]]
        assert kinds == sorted(kinds, key=["PaymentMethod", "IP", "PromptFingerprint",
                                           "Identifier"].index), "evidence order"
        assert "PaymentMethod" in kinds and "IP" in kinds
        assert drawn["note"].startswith(f"ring {ids['ring_id']}")
        why = run_query(store, "ring-score-explained", params={"ring_id": ids["ring_id"]})
        reasons = why.loc[why["kind"] == "reason", "item"].tolist()
        explanation = store.read_rings().set_index("ring_id").loc[ids["ring_id"], "explanation"]
        assert "; ".join(reasons) == explanation
        top = run_query(store, "top-rings", params={"limit": 3})
        assert top["rank"].tolist() == [1, 2, 3] and (top["sweep_id"] == "S-second").all()

        result = CliRunner().invoke(
            cli,
            ["--neo4j", neo4j_uri, "--quiet", "queries", "run", "ring-members",
             "--param", f"ring_id={ids['ring_id']}", "--format", "csv"],
        )
        assert result.exit_code == 0, result.output
        assert ids["account_id"] in result.output
        as_json = CliRunner().invoke(
            cli, ["--neo4j", neo4j_uri, "--quiet", "queries", "run", "top-rings", "--format",
                  "json"])
        assert as_json.exit_code == 0, as_json.output
        first = json.loads(as_json.stdout)[0]
        assert isinstance(first["score"], float) and isinstance(first["rank"], int)
    finally:
        store.close()


@pytest.mark.neo4j
def test_every_guide_query_returns_rows_with_only_the_ring_picked(
    neo4j_uri: str, neo4j_driver: neo4j.Driver
) -> None:
    """What Browser does: evaluate the slide's `:param ring_id => …` on its own, then run
    each query of the guide with that one parameter."""
    import html
    import re

    from graphinv.investigate import browser_kit

    store = open_store(neo4j_uri=neo4j_uri, use_env=False)
    try:
        plant_two_sweeps(store)
        page = browser_kit.guide_html()
        blocks = [(mode, html.unescape(text)) for mode, text in re.findall(
            r'<pre mode="(\w+)"[^>]*>(.*?)</pre>', page, flags=re.S)]
        params: dict[str, object] = {}
        empty = []
        for mode, text in blocks:
            if mode == "command":
                name, expression = re.match(r":param (\w+) => (.*)", text, flags=re.S).groups()
                params[name] = store.query(f"RETURN {expression} AS v")["v"].item()
            elif mode == "cypher" and store.query(text, params).empty:
                empty.append(text.splitlines()[-1])
        assert params["ring_id"], "the top ring was picked"
        assert len([m for m, _ in blocks if m == "cypher"]) >= 11
        assert not empty, f"guide queries without rows: {empty}"
    finally:
        store.close()
