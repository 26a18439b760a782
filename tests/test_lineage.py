"""Lineage across sweeps: every class of change on hand-made sweeps, plus invariants at scale."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import graphinv.lineage
from graphinv.errors import ConfigError
from graphinv.lineage import LineageOptions, match_rings, ring_identifiers


def members(rings: dict) -> pd.DataFrame:
    """``{ring: [accounts]}`` as a members frame."""
    return pd.DataFrame(
        [(ring, account) for ring, accounts in rings.items() for account in accounts],
        columns=["ring_id", "account_id"],
    )


def accounts(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def identifiers(rings: dict) -> pd.DataFrame:
    """``{ring: {kind: [values]}}`` as an identifiers frame."""
    return pd.DataFrame(
        [
            (ring, kind, value)
            for ring, by_kind in rings.items()
            for kind, values in by_kind.items()
            for value in values
        ],
        columns=["ring_id", "kind", "value"],
    )


def match(prev: dict | None, cur: dict, prev_ids: dict | None = None,
          cur_ids: dict | None = None, **kwargs):
    return match_rings(
        previous_members=None if prev is None else members(prev),
        previous_identifiers=None if prev_ids is None else identifiers(prev_ids),
        current_members=members(cur),
        current_identifiers=None if cur_ids is None else identifiers(cur_ids),
        **kwargs,
    )


def row(lineage, key) -> pd.Series:
    rings = lineage.rings.set_index("new_ring_key")
    return rings.loc[key]


def test_docstring_examples_run():
    assert doctest.testmod(graphinv.lineage).failed == 0


def test_first_sweep_mints_member_hash_ids():
    first = match(None, {1: accounts("a", 5), 2: accounts("b", 3)})
    assert set(first.rings["status"]) == {"new"}
    assert first.rings["ring_id"].str.fullmatch(r"R-[0-9a-f]{12}").all()
    assert first.rings["ring_id"].is_unique
    assert first.dissolved.empty and first.edges.empty
    # The id depends on the accounts only, not on the detector's key.
    relabelled = match(None, {"x": accounts("a", 5)})
    assert relabelled.rings.loc[0, "ring_id"] == row(first, 1)["ring_id"]
    assert first.summary() == {"new": 2, "continuing": 0, "grown": 0, "shrunk": 0, "split": 0,
                               "merged": 0, "respawned": 0, "dissolved": 0}


def test_nothing_changed_keeps_every_id():
    cur = {k: accounts(f"r{k}-", 3 + k) for k in range(6)}
    first = match(None, cur)
    stable = dict(zip(first.rings["new_ring_key"], first.rings["ring_id"], strict=True))
    again = match({stable[k]: v for k, v in cur.items()}, cur)
    assert (again.rings["status"] == "continuing").all()
    assert again.rings["ring_id"].tolist() == [stable[k] for k in again.rings["new_ring_key"]]
    assert (again.rings["member_jaccard"] == 1.0).all()
    assert [tuple([stable[k]]) for k in again.rings["new_ring_key"]] == list(
        again.rings["predecessors"])
    assert again.dissolved.empty
    assert len(again.edges) == 6 and set(again.edges["status"]) == {"continuing"}


@pytest.mark.parametrize(
    ("new_size", "status"),
    [(10, "continuing"), (12, "continuing"), (13, "grown"), (30, "grown"), (8, "shrunk"),
     (9, "continuing")],
)
def test_continuing_grown_shrunk(new_size, status):
    old = accounts("a", 10)
    new = (old + accounts("n", new_size - 10))[:new_size]
    lineage = match({"R-1": old}, {0: new})
    ring = row(lineage, 0)
    assert (ring["status"], ring["ring_id"], ring["predecessors"]) == (status, "R-1", ("R-1",))
    assert ring["shared_members"] == min(10, new_size)
    assert lineage.dissolved.empty


def test_split_largest_piece_keeps_the_id():
    old = accounts("a", 10)
    lineage = match({"R-1": old, "R-2": accounts("b", 4)},
                    {0: old[:4], 1: old[4:], 2: accounts("b", 4)})
    big, small = row(lineage, 1), row(lineage, 0)
    assert (big["status"], big["ring_id"]) == ("split", "R-1")
    assert small["status"] == "split" and small["ring_id"] not in {"R-1", "R-2"}
    assert small["predecessors"] == ("R-1",) == big["predecessors"]
    assert "one of 2 pieces of R-1" in small["evidence"]
    assert "R-1 stays with a ring holding at least as many" in small["evidence"]
    assert "keeps its id" in big["evidence"]
    assert row(lineage, 2)["status"] == "continuing"
    split_edges = lineage.edges[lineage.edges["previous_ring_id"] == "R-1"]
    assert sorted(split_edges["ring_id"]) == sorted([big["ring_id"], small["ring_id"]])
    assert set(split_edges["status"]) == {"split"}


def test_merge_keeps_id_of_largest_contributor():
    lineage = match({"R-1": accounts("a", 4), "R-2": accounts("b", 7), "R-3": accounts("c", 3)},
                    {0: accounts("a", 4) + accounts("b", 7), 1: accounts("c", 3)})
    merged = row(lineage, 0)
    assert (merged["status"], merged["ring_id"]) == ("merged", "R-2")
    assert merged["predecessors"] == ("R-2", "R-1")
    assert "merge of 2 earlier rings into 11 accounts: R-2 (7 of its 7), R-1 (4 of its 4)" \
        in merged["evidence"]
    assert lineage.dissolved.empty
    assert sorted(lineage.edges.loc[lineage.edges["ring_id"] == "R-2", "previous_ring_id"]) == [
        "R-1", "R-2"]


def test_merge_tie_goes_to_smallest_id_whatever_the_row_order():
    prev = {"R-b": accounts("b", 5), "R-a": accounts("a", 5)}
    cur = {0: accounts("b", 5) + accounts("a", 5)}
    forward = match(prev, cur)
    backward = match(dict(reversed(prev.items())), cur)
    assert forward.rings.loc[0, "ring_id"] == backward.rings.loc[0, "ring_id"] == "R-a"


def test_split_piece_that_merges_takes_a_free_id():
    # R-1 splits; its largest piece keeps R-1, the other piece absorbs R-2 and takes R-2.
    lineage = match({"R-1": accounts("a", 20), "R-2": accounts("b", 5)},
                    {0: accounts("a", 20)[:12], 1: accounts("a", 20)[12:] + accounts("b", 5)})
    assert row(lineage, 0)[["ring_id", "status"]].tolist() == ["R-1", "split"]
    assert row(lineage, 1)[["ring_id", "status"]].tolist() == ["R-2", "merged"]
    assert row(lineage, 1)["predecessors"] == ("R-1", "R-2")


CARDS = ["card1", "card2"]
IPS = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


def test_respawn_with_new_accounts_and_same_cards_and_ips():
    lineage = match(
        {"R-old": accounts("a", 8), "R-kept": accounts("k", 5)},
        {0: accounts("n", 9), 1: accounts("k", 5)},
        prev_ids={"R-old": {"payment_method": CARDS, "ip": IPS, "prompt_fingerprint": ["t1"]},
                  "R-kept": {"payment_method": ["kc"]}},
        cur_ids={0: {"payment_method": CARDS, "ip": [*IPS, "198.51.100.9"],
                     "prompt_fingerprint": ["t2"]}, 1: {"payment_method": ["kc"]}},
    )
    ring = row(lineage, 0)
    assert (ring["status"], ring["ring_id"], ring["predecessors"]) == (
        "respawned", "R-old", ("R-old",))
    assert ring["shared_members"] == 0 and ring["shared_identifiers"] == 5
    # Of its own: cards 2/2, IPs 3/4, templates 0/1; mean of the three kinds.
    assert ring["infra_overlap"] == pytest.approx((1 + 0.75 + 0) / 3)
    assert ring["evidence"].startswith(
        "2 of its 2 payment methods and 3 of its 4 IPs were used by R-old; 0 members in common")
    assert lineage.dissolved.empty
    edge = lineage.edges[lineage.edges["previous_ring_id"] == "R-old"].iloc[0]
    assert (edge["ring_id"], edge["status"]) == ("R-old", "respawned")


def test_respawn_of_a_long_history_with_one_day_of_its_own():
    # Two weeks of the old ring: 30 templates, its camouflage members' home IPs. The
    # respawn's day: 2 of the templates and most of the ring's cards and proxies. Jaccard
    # (2/30, 4/12, 3/4) would average 0.33; what counts is that its own are the old ones.
    history = {"payment_method": ["c1", "c2", "c3", "c4"],
               "ip": [f"proxy{i}" for i in range(4)] + [f"home{i}" for i in range(8)],
               "prompt_fingerprint": [f"t{i}" for i in range(30)]}
    day = {"payment_method": ["c1", "c2", "c3", "fresh"],
           "ip": ["proxy0", "proxy1", "proxy2", "proxy3", "proxy9"],
           "prompt_fingerprint": ["t0", "t1"]}
    lineage = match({"R-old": accounts("a", 12)}, {0: accounts("n", 6)},
                    prev_ids={"R-old": history}, cur_ids={0: day})
    ring = row(lineage, 0)
    assert (ring["status"], ring["ring_id"]) == ("respawned", "R-old")
    assert ring["infra_overlap"] == pytest.approx((3 / 4 + 4 / 5 + 1) / 3)
    assert ring["evidence"] == (
        "3 of its 4 payment methods, 4 of its 5 IPs and 2 of its 2 prompt templates were "
        "used by R-old; 0 members in common (identifier overlap 0.85)")


def test_templates_alone_make_no_respawn():
    # Rings of one lab send the same templates; on their own cards and proxies a new ring
    # of that lab is no respawn of a dissolved sibling (overlap (0 + 0 + 1) / 3).
    lineage = match({"R-sib": accounts("a", 6)}, {0: accounts("n", 6)},
                    prev_ids={"R-sib": {"payment_method": ["c1"], "ip": IPS,
                                        "prompt_fingerprint": ["t1", "t2"]}},
                    cur_ids={0: {"payment_method": ["c9"], "ip": ["198.51.100.1"],
                                 "prompt_fingerprint": ["t1", "t2"]}})
    assert row(lineage, 0)["status"] == "new"
    assert lineage.dissolved["ring_id"].tolist() == ["R-sib"]


def test_respawn_in_two_pieces():
    # The fresh accounts of a banned ring are only loosely tied yet; detection finds two
    # rings on its infrastructure. Both are its respawns; the one using more of it keeps
    # the id, like the bigger piece of a split.
    old = {"payment_method": ["c1", "c2", "c3", "c4"], "ip": IPS}
    lineage = match(
        {"R-old": accounts("a", 10)},
        {0: accounts("n", 4), 1: accounts("m", 6)},
        prev_ids={"R-old": old},
        cur_ids={0: {"payment_method": ["c1"], "ip": IPS[:2]},
                 1: {"payment_method": ["c2", "c3", "c4"], "ip": IPS[1:]}},
    )
    small, big = row(lineage, 0), row(lineage, 1)
    assert (big["status"], big["ring_id"], big["predecessors"]) == (
        "respawned", "R-old", ("R-old",))
    assert small["status"] == "respawned" and small["predecessors"] == ("R-old",)
    assert small["ring_id"] != "R-old"
    assert big["evidence"].endswith("; one of 2 rings respawned from it; keeps its id")
    assert small["evidence"].endswith(
        "; one of 2 rings respawned from it; R-old stays with one sharing at least as many "
        "of its identifiers")
    assert lineage.dissolved.empty
    assert lineage.edges["previous_ring_id"].tolist() == ["R-old", "R-old"]
    assert lineage.summary()["respawned"] == 2


def test_no_respawn_from_a_ring_that_lives_on():
    lineage = match(
        {"R-1": accounts("a", 6)},
        {0: accounts("a", 6), 1: accounts("n", 6)},
        prev_ids={"R-1": {"payment_method": CARDS, "ip": IPS}},
        cur_ids={0: {"payment_method": CARDS, "ip": IPS}, 1: {"payment_method": CARDS, "ip": IPS}},
    )
    assert row(lineage, 0)["status"] == "continuing"
    assert row(lineage, 1)["status"] == "new"


def test_shared_cgnat_ip_alone_is_no_respawn():
    cgnat = ["100.64.0.1", "100.64.0.2"]
    crowd = [f"mobile{i}" for i in range(500)]
    old, new = accounts("a", 6), accounts("n", 6)

    def links(ring_accounts, card):
        rows = [(a, "payment_method", f"{card}-{a}") for a in ring_accounts]
        rows += [(a, "ip", ip) for a in ring_accounts + crowd for ip in cgnat]
        return pd.DataFrame(rows, columns=["account_id", "kind", "value"])

    prev_m, cur_m = members({"R-old": old}), members({0: new})
    raw = match_rings(
        previous_members=prev_m,
        previous_identifiers=links(old, "x").merge(prev_m)[["ring_id", "kind", "value"]],
        current_members=cur_m,
        current_identifiers=links(new, "y").merge(cur_m)[["ring_id", "kind", "value"]],
    )
    # Unfiltered, the two CGNAT IPs alone look like a respawn; that is the trap.
    assert raw.rings.loc[0, "status"] == "respawned"
    filtered = match_rings(
        previous_members=prev_m,
        previous_identifiers=ring_identifiers(prev_m, links(old, "x")),
        current_members=cur_m,
        current_identifiers=ring_identifiers(cur_m, links(new, "y")),
    )
    assert filtered.rings.loc[0, "status"] == "new"
    assert filtered.dissolved["ring_id"].tolist() == ["R-old"]


def test_ring_identifiers_keeps_identifiers_shared_by_few_outsiders():
    ring = members({"R1": accounts("a", 4)})
    links = pd.DataFrame(
        [(a, "ip", "proxy") for a in [*accounts("a", 4), *accounts("u", 20)]]
        + [(a, "ip", "cgnat") for a in [*accounts("a", 4), *accounts("u", 21)]]
        + [("a0", "payment_method", "card"), ("a0", "device", "d1")],
        columns=["account_id", "kind", "value"],
    )
    out = ring_identifiers(ring, links)
    assert out[["kind", "value", "accounts"]].values.tolist() == [
        ["ip", "proxy", 4], ["payment_method", "card", 1]]
    assert len(ring_identifiers(ring, links, kinds=["device"])) == 1


def test_dissolved_and_new_evidence():
    lineage = match({"R-1": accounts("a", 10), "R-2": accounts("b", 4)},
                    {0: [*accounts("c", 20), "a0"]})
    assert lineage.dissolved["ring_id"].tolist() == ["R-1", "R-2"]
    assert lineage.dissolved["size"].tolist() == [10, 4]
    first, second = lineage.dissolved["evidence"]
    assert first.startswith("1 of its 10 members are in 1 ring now, too few to continue it")
    assert second.startswith("none of its 4 members is in a ring now")
    ring = row(lineage, 0)
    assert ring["status"] == "new" and ring["predecessors"] == ()
    assert np.isnan(ring["member_jaccard"]) and ring["shared_members"] == 0
    assert "1 of them in earlier rings (most in R-1)" in ring["evidence"]
    assert lineage.summary()["dissolved"] == 2


def test_empty_current_sweep_dissolves_everything():
    lineage = match_rings(previous_members=members({"R-1": accounts("a", 3)}),
                          previous_identifiers=None,
                          current_members=pd.DataFrame(columns=["ring_id", "account_id"]),
                          current_identifiers=None)
    assert lineage.rings.empty and lineage.dissolved["ring_id"].tolist() == ["R-1"]


def test_mint_id_callable_names_largest_first():
    lineage = match(None, {"k1": accounts("a", 3), "k2": accounts("b", 8)},
                    mint_id=lambda i: f"S7-{i:03d}")
    assert row(lineage, "k2")["ring_id"] == "S7-000"
    assert row(lineage, "k1")["ring_id"] == "S7-001"
    with pytest.raises(ValueError, match="already a ring id"):
        match({"S7-000": accounts("z", 3)}, {"k": accounts("a", 3)}, mint_id=lambda i: "S7-000")


def test_missing_column_and_bad_options():
    with pytest.raises(ValueError, match="current_members lacks column"):
        match_rings(previous_members=None, previous_identifiers=None,
                    current_members=pd.DataFrame({"ring_id": [1]}), current_identifiers=None)
    with pytest.raises(ConfigError):
        LineageOptions(growth_ratio=1.0)
    with pytest.raises(ConfigError):
        LineageOptions(member_jaccard_min=0)
    assert LineageOptions(infra_kinds=["ip"]).infra_kinds == ("ip",)
    assert LineageOptions(inactive_statuses=["banned"]).inactive_statuses == ("banned",)
    with pytest.raises(ConfigError):
        LineageOptions(infra_overlap_min=1.5)


def random_sweeps(seed: int, n_rings: int = 1000, n_accounts: int = 25_000):
    """Two sweeps of random rings with churn, splits, merges, bans, respawns and newcomers.

    Returns members and links of both sweeps.
    """
    rng = np.random.default_rng(seed)
    ring = rng.integers(0, n_rings, n_accounts)
    prev = pd.DataFrame({"ring_id": [f"R-{r:04d}" for r in ring],
                         "account_id": [f"a{i}" for i in range(n_accounts)]})

    def links_for(account_ids, rings):
        # Each account: 2 of its ring's 20 cards, 10 of its 300 IPs, 2 of its 10 templates.
        n = len(account_ids)
        parts = []
        for kind, pool, k in (("payment_method", 20, 2), ("ip", 300, 10),
                              ("prompt_fingerprint", 10, 2)):
            pick = rng.integers(0, pool, (n, k))
            parts.append(pd.DataFrame({
                "account_id": np.repeat(account_ids, k),
                "kind": kind,
                "value": [f"{kind}-{r}-{v}" for r, v in zip(np.repeat(rings, k), pick.ravel(),
                                                            strict=True)],
            }))
        return pd.concat(parts, ignore_index=True)

    prev_links = links_for(prev["account_id"].to_numpy(), ring)
    cur_ring = ring.astype(np.int64).copy()
    moved = rng.random(n_accounts) < 0.05
    cur_ring[moved] = rng.integers(0, n_rings, moved.sum())
    halves = np.isin(cur_ring, rng.choice(n_rings, 50, replace=False)) & (
        rng.random(n_accounts) < 0.4)
    cur_ring[halves] += 10 * n_rings
    merge_from = rng.choice(n_rings, 50, replace=False)
    cur_ring = np.where(np.isin(cur_ring, merge_from), (cur_ring + 1) % n_rings, cur_ring)
    banned = rng.choice(n_rings, 30, replace=False)
    keep = ~np.isin(ring, banned) & (rng.random(n_accounts) > 0.05)
    cur = pd.DataFrame({"ring_id": cur_ring[keep], "account_id": prev["account_id"][keep]})
    # Respawns: fresh accounts on 20 banned rings' infrastructure (10 stay dissolved); plus
    # brand-new rings.
    fresh_rings = np.concatenate([np.repeat(banned[:20], 15), rng.integers(0, 100, 2000) + 20_000])
    fresh = pd.DataFrame({"ring_id": fresh_rings + 50_000,
                          "account_id": [f"n{i}" for i in range(len(fresh_rings))]})
    cur = pd.concat([cur, fresh], ignore_index=True)
    cur_links = pd.concat([prev_links[prev_links["account_id"].isin(cur["account_id"])],
                           links_for(fresh["account_id"].to_numpy(), fresh_rings)],
                          ignore_index=True)
    return prev, prev_links, cur, cur_links


def test_scale_invariants():
    prev, prev_links, cur, cur_links = random_sweeps(seed=1)
    prev_ids, cur_ids = ring_identifiers(prev, prev_links), ring_identifiers(cur, cur_links)
    assert len(prev_ids) > 150_000 and len(cur_ids) > 150_000
    lineage = match_rings(previous_members=prev, previous_identifiers=prev_ids,
                          current_members=cur, current_identifiers=cur_ids)
    rings = lineage.rings
    assert sorted(rings["new_ring_key"]) == sorted(cur["ring_id"].unique())
    assert rings["new_ring_key"].is_unique and rings["ring_id"].is_unique
    assert set(rings["status"]) <= set(graphinv.lineage.STATUSES)
    successors = set(lineage.edges["previous_ring_id"])
    gone = set(lineage.dissolved["ring_id"])
    assert successors.isdisjoint(gone)
    assert successors | gone == set(prev["ring_id"])
    assert set(rings.loc[rings["status"] == "new", "predecessors"].map(len)) == {0}
    assert (rings.loc[rings["status"] != "new", "predecessors"].map(len) >= 1).all()
    summary = lineage.summary()
    assert sum(summary.values()) == len(rings) + len(gone)
    for status in ("continuing", "split", "merged", "respawned", "new", "dissolved"):
        assert summary[status] > 0, summary


def test_row_order_and_repeated_rows_do_not_matter():
    prev, prev_links, cur, cur_links = random_sweeps(seed=2, n_rings=80, n_accounts=2_000)
    prev_ids, cur_ids = ring_identifiers(prev, prev_links), ring_identifiers(cur, cur_links)
    frames = {"previous_members": prev, "previous_identifiers": prev_ids,
              "current_members": cur, "current_identifiers": cur_ids}
    expected = match_rings(**frames)
    # Shuffled, and with some rows repeated: neither may change anything.
    shuffled = match_rings(**{
        k: pd.concat([v, v.iloc[::7]]).sample(frac=1, random_state=3) for k, v in frames.items()
    })
    pd.testing.assert_frame_equal(expected.rings, shuffled.rings)
    pd.testing.assert_frame_equal(expected.dissolved, shuffled.dissolved)
    pd.testing.assert_frame_equal(expected.edges, shuffled.edges)
    assert expected.summary()["respawned"] > 0
