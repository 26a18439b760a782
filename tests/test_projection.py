"""Invariants of the rarity-weighted, co-activity and lockstep projection."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from graphinv.detect.projection import ProjectionOptions, project
from graphinv.schema import Platform

T0 = pd.Timestamp("2025-03-01", tz="UTC")
USAGE_COLUMNS = ["account_id", "hour", "model", "requests", "input_tokens", "output_tokens"]


def platform(links: list[tuple], usage: list[tuple] = (), labels=None) -> Platform:
    """Links are ``(account, kind, value[, first_seen])``; usage rows ``(account, hour)``."""
    rows = [(a, k, v, (rest[0] if rest else T0)) for a, k, v, *rest in links]
    link_frame = pd.DataFrame(rows, columns=["account_id", "kind", "value", "first_seen"])
    link_frame["last_seen"] = link_frame["first_seen"] + pd.Timedelta("1h")
    link_frame["count"] = 1
    usage_frame = pd.DataFrame(
        [(a, T0 + pd.Timedelta(hours=h), "m", 1, 10, 10) for a, h in usage], columns=USAGE_COLUMNS
    )
    ids = sorted({r[0] for r in rows} | {u[0] for u in usage})
    accounts = pd.DataFrame({"account_id": ids, "created_at": T0})
    return Platform(accounts=accounts, links=link_frame, usage=usage_frame, labels=labels)


def weight(proj, a: str, b: str) -> float:
    ids = list(proj.account_ids)
    return float(proj.weights[ids.index(a), ids.index(b)])


def star(prefix: str, n: int, kind: str, value: str, first_seen=T0) -> list[tuple]:
    return [(f"{prefix}{i:04d}", kind, value, first_seen) for i in range(n)]


def test_symmetric_zero_diagonal_sorted_ids():
    p = platform(star("x", 4, "ip", "1.1.1.1") + star("x", 3, "payment_method", "c1"))
    proj = project(p)
    w = proj.weights
    assert list(proj.account_ids) == sorted(proj.account_ids)
    assert (w != w.T).nnz == 0
    assert np.all(w.diagonal() == 0)
    assert proj.stats.edges == w.nnz // 2 == 6


def test_rare_identifier_weighs_more_than_common_one():
    links = [("a", "payment_method", "card"), ("b", "payment_method", "card")]
    links += [*star("ip", 50, "ip", "shared"), ("c", "ip", "shared"), ("d", "ip", "shared")]
    proj = project(platform(links), options=ProjectionOptions(co_activity_window=""))
    assert weight(proj, "a", "b") == pytest.approx(1.0 / np.log(3))
    assert weight(proj, "c", "d") == pytest.approx(0.5 / np.log(53))
    assert weight(proj, "a", "c") == 0


def test_kind_weights_from_options():
    links = [("a", "device", "d1"), ("b", "device", "d1"), ("a", "ip", "i"), ("b", "ip", "i")]
    opts = ProjectionOptions(
        kind_weights={"ip": 0.0}, default_kind_weight=2.0, co_activity_window=""
    )
    proj = project(platform(links), options=opts)
    assert weight(proj, "a", "b") == pytest.approx(2.0 / np.log(3))


def test_hubs_are_not_expanded_and_are_counted():
    links = star("h", 30, "ip", "cgnat") + star("h", 3, "payment_method", "card")
    opts = ProjectionOptions(hub_cap=10, co_activity_window="")
    proj = project(platform(links), options=opts)
    assert proj.stats.hubs == {"ip": 1, "payment_method": 0}
    assert proj.stats.hub_links == {"ip": 30, "payment_method": 0}
    assert proj.stats.identifiers == {"ip": 1, "payment_method": 1}
    assert proj.stats.edges == 3  # only the card's triangle


def test_co_activity_same_window_outweighs_months_apart():
    later = T0 + pd.Timedelta(days=90)
    links = [("a", "ip", "i1"), ("b", "ip", "i1"), ("c", "ip", "i2"), ("d", "ip", "i2", later)]
    proj = project(platform(links))
    assert weight(proj, "a", "b") > weight(proj, "c", "d") > 0


def test_co_activity_splits_hubs_by_time():
    links = [(f"h{i:03d}", "ip", "cgnat", T0 + pd.Timedelta(days=i)) for i in range(40)]
    links += [("a", "ip", "cgnat", T0 + pd.Timedelta(days=100))]
    links += [("b", "ip", "cgnat", T0 + pd.Timedelta(days=100, hours=2))]
    # The rest of the platform, on cards of their own: a hub that most of the accounts
    # hold is a default and is not split (next test).
    links += [(f"o{i:03d}", "payment_method", f"card{i}") for i in range(60)]
    proj = project(platform(links), options=ProjectionOptions(hub_cap=10))
    assert proj.stats.hubs == {"ip": 1, "payment_method": 0}
    assert weight(proj, "a", "b") > 0
    assert proj.stats.edges == 1


def test_a_hub_most_of_the_platform_holds_gives_no_co_activity_tokens():
    # A default system prompt on 30 of 40 accounts (hub_cap 10): its first use is when an
    # account became active, so the two that started on day 100 share only that day.
    links = [(f"h{i:03d}", "prompt_fingerprint", "default", T0 + pd.Timedelta(days=i))
             for i in range(28)]
    links += [("a", "prompt_fingerprint", "default", T0 + pd.Timedelta(days=100))]
    links += [("b", "prompt_fingerprint", "default", T0 + pd.Timedelta(days=100, hours=2))]
    rest = [(f"o{i:03d}", "payment_method", f"card{i}") for i in range(10)]
    options = ProjectionOptions(hub_cap=10, lockstep_weight=0)
    proj = project(platform(links + rest), options=options)
    assert proj.stats.co_activity_tokens == 0
    assert weight(proj, "a", "b") == 0
    # The same prompt on 30 of 70 accounts is a hub like any other, split by time.
    more = [(f"o{i:03d}", "payment_method", f"card{i}") for i in range(10, 40)]
    proj = project(platform(links + rest + more), options=options)
    assert weight(proj, "a", "b") > 0
    # The share is an option: at 0.8 the 30 of 40 are a hub split by time again.
    proj = project(platform(links + rest),
                   options=dataclasses.replace(options, hub_max_share=0.8))
    assert weight(proj, "a", "b") > 0


def test_lockstep_links_accounts_sharing_nothing():
    rng = np.random.default_rng(1)
    schedule = rng.choice(24 * 30, size=60, replace=False)
    usage = [(f"bot{i}", int(h)) for i in range(6) for h in schedule]
    usage += [(f"human{i}", int(h)) for i in range(30) for h in rng.choice(720, 60, replace=False)]
    usage += [(f"always{i}", h) for i in range(5) for h in range(720)]
    links = [(f"bot{i}", "ip", f"own{i}") for i in range(6)]
    proj = project(platform(links, usage))
    assert proj.stats.lockstep_accounts == 36  # always-on accounts are left out
    assert proj.stats.lockstep_pairs == 15
    assert weight(proj, "bot0", "bot5") == pytest.approx(ProjectionOptions().lockstep_weight)
    assert weight(proj, "human0", "human1") == 0
    assert weight(proj, "always0", "always1") == 0


def test_lockstep_skips_overcrowded_buckets():
    usage = [(f"job{i:03d}", h) for i in range(30) for h in range(0, 720, 5)]
    proj = project(platform([], usage), options=ProjectionOptions(lockstep_bucket_cap=20))
    assert proj.stats.lockstep_candidates == 0
    assert proj.stats.edges == 0


def test_input_row_order_and_labels_do_not_matter():
    rng = np.random.default_rng(0)
    links = [
        (
            f"a{rng.integers(60)}",
            "ip",
            f"ip{rng.integers(15)}",
            T0 + pd.Timedelta(hours=int(rng.integers(200))),
        )
        for _ in range(300)
    ]
    links += [(f"a{rng.integers(60)}", "payment_method", f"c{rng.integers(20)}") for _ in range(80)]
    usage = [(f"a{i}", int(h)) for i in range(10) for h in range(30, 90)]
    base = platform(links, usage)
    labels = pd.DataFrame({"account_id": ["a1"], "ring_id": ["r"], "kind": ["extraction"]})
    shuffled = platform([links[i] for i in rng.permutation(len(links))], usage[::-1], labels)
    a, b = project(base), project(shuffled)
    assert list(a.account_ids) == list(b.account_ids)
    assert abs(a.weights - b.weights).max() < 1e-12
    assert abs(a.ring_evidence - b.ring_evidence).max() < 1e-12
    assert a.stats == b.stats


def test_empty_platform():
    proj = project(platform([]))
    assert proj.weights.shape == (0, 0)
    assert proj.stats.edges == 0


def test_ring_evidence_is_the_card_and_ip_part_of_the_projection():
    links = star("x", 4, "ip", "1.1.1.1") + star("x", 3, "payment_method", "c1")
    links += star("x", 5, "prompt_fingerprint", "tpl") + star("x", 2, "device", "d1")
    usage = [(f"x{i:04d}", h) for i in range(4) for h in range(30, 60)]
    proj = project(platform(links, usage))
    alone = ProjectionOptions(
        kind_weights={"payment_method": 1.0, "ip": 0.5}, default_kind_weight=0, lockstep_weight=0
    )
    expected = project(platform(links, usage), options=alone).weights
    assert abs(proj.ring_evidence - expected).max() < 1e-12
    assert (proj.ring_evidence != proj.ring_evidence.T).nnz == 0
    assert np.all(proj.ring_evidence.diagonal() == 0)
    # Templates, devices and lockstep are in the weights but not in the ring evidence.
    assert (proj.weights - proj.ring_evidence).min() >= 0
    assert weight(proj, "x0003", "x0004") > 0 == proj.ring_evidence[3, 4]


def _with_created(p: Platform, created: dict[str, pd.Timestamp]) -> Platform:
    accounts = p.accounts.assign(created_at=p.accounts["account_id"].map(created))
    return Platform(accounts=accounts, links=p.links, usage=p.usage)


def test_a_burst_of_sign_ups_on_a_hub_is_linked_and_the_public_is_not():
    # A carrier exit of 300 accounts (above hub_cap 200): 280 of the public sign up one a
    # day for 280 days, a ring of 20 in one day. Only the ring's day is a burst.
    # 400 more accounts, each with a card of its own, are the rest of the platform.
    public = star("p", 280, "ip", "carrier")
    ring = star("r", 20, "ip", "carrier")
    rest = [(f"o{i:04d}", "payment_method", f"card{i}", T0) for i in range(400)]
    created = {f"p{i:04d}": T0 - pd.Timedelta(days=300 - i) for i in range(280)}
    created |= {f"r{i:04d}": T0 - pd.Timedelta(days=10, hours=i % 5) for i in range(20)}
    created |= {f"o{i:04d}": T0 - pd.Timedelta(days=400 - i) for i in range(400)}
    p = _with_created(platform(public + ring + rest), created)
    off = ProjectionOptions(co_activity_window="", lockstep_weight=0, hub_arrival_window="")
    proj = project(p, options=dataclasses.replace(off, hub_arrival_window="1D"))
    assert project(p, options=off).weights.nnz == 0  # the hub alone links no one
    assert weight(proj, "r0000", "r0019") > 0
    assert weight(proj, "p0000", "p0001") == 0
    assert weight(proj, "p0270", "r0000") == 0
    ids = list(proj.account_ids)
    assert proj.ring_evidence[ids.index("r0000"), ids.index("r0001")] > 0
    held = np.asarray(proj.ring_identifiers.sum(axis=0)).ravel()
    assert held.max() == 20  # the ring's arrival token, counted as a rare identifier


def test_a_hub_most_of_the_platform_holds_gives_no_arrival_tokens():
    # A default system prompt on 300 of 400 accounts: the 20 who signed up on one day
    # share nothing but that day (the platform's busy day), so they are not linked; the
    # same accounts behind a prompt that only they and 280 of the 1,000 hold are.
    links = star("p", 280, "prompt_fingerprint", "default") + star(
        "r", 20, "prompt_fingerprint", "default")
    others = [(f"o{i:04d}", "payment_method", f"card{i}", T0) for i in range(100)]
    created = {f"p{i:04d}": T0 - pd.Timedelta(days=300 - i) for i in range(280)}
    created |= {f"r{i:04d}": T0 - pd.Timedelta(days=10, hours=i % 5) for i in range(20)}
    created |= {f"o{i:04d}": T0 - pd.Timedelta(days=100 - i) for i in range(100)}
    options = ProjectionOptions(co_activity_window="", lockstep_weight=0)
    proj = project(_with_created(platform(links + others), created), options=options)
    assert weight(proj, "r0000", "r0019") == 0
    more = [(f"o{i:04d}", "payment_method", f"card{i}", T0) for i in range(100, 1000)]
    created |= {f"o{i:04d}": T0 - pd.Timedelta(days=1000 - i) for i in range(100, 1000)}
    proj = project(_with_created(platform(links + others + more), created), options=options)
    assert weight(proj, "r0000", "r0019") > 0
    assert weight(proj, "p0000", "p0001") == 0


def test_a_hub_made_of_bursts_is_campaign_infrastructure_and_left_out():
    # A campaign template of 300 accounts: fifteen rings of 20, each signed up in a day.
    links, created = [], {}
    for r in range(15):
        links += star(f"c{r:02d}_", 20, "prompt_fingerprint", "campaign")
        created |= {f"c{r:02d}_{i:04d}": T0 - pd.Timedelta(days=5 * r) for i in range(20)}
    p = _with_created(platform(links), created)
    proj = project(p, options=ProjectionOptions(co_activity_window="", lockstep_weight=0))
    assert proj.weights.nnz == 0


def test_a_hub_with_a_third_of_its_accounts_in_bursts_is_campaign_infrastructure():
    # A campaign template of 400 accounts: 240 sign up one a day (its rings' slow
    # stragglers, or the public), and two rings of 80 sign up together on one day. At
    # 40 % in bursts the hub is a campaign's own (default hub_campaign_share 0.3): its
    # arrival tokens would join the two rings. Called public (share 0.5), they are joined.
    links = star("p", 240, "prompt_fingerprint", "tpl") + star("a", 80, "prompt_fingerprint", "tpl")
    links += star("b", 80, "prompt_fingerprint", "tpl")
    rest = [(f"o{i:04d}", "payment_method", f"card{i}", T0) for i in range(1000)]
    created = {f"p{i:04d}": T0 - pd.Timedelta(days=300 - i) for i in range(240)}
    created |= {
        f"{g}{i:04d}": T0 - pd.Timedelta(days=10, hours=i % 6) for g in "ab" for i in range(80)
    }
    created |= {f"o{i:04d}": T0 - pd.Timedelta(days=1000 - i) for i in range(1000)}
    p = _with_created(platform(links + rest), created)
    options = ProjectionOptions(co_activity_window="", lockstep_weight=0)
    assert weight(project(p, options=options), "a0000", "b0000") == 0
    public = dataclasses.replace(options, hub_campaign_share=0.5)
    assert weight(project(p, options=public), "a0000", "b0000") > 0


def test_bursts_are_counted_on_the_grid_that_finds_more():
    # 300 of the public sign up on an exit every 2.4 hours for 30 days, and a ring of 60
    # across one midnight (half at 23:00, half at 01:00): 360 accounts over 30 days, so a
    # burst needs 4 × 12 = 48 in a window. Calendar days hold 10 + 30 each, no burst;
    # the grid shifted by half a day holds the ring whole, about 70 accounts, 19 % of
    # the hub. Counted on that grid the hub is a campaign's at a share of 0.15.
    links = star("p", 300, "ip", "exit") + star("r", 60, "ip", "exit")
    rest = [(f"o{i:04d}", "payment_method", f"card{i}", T0) for i in range(1000)]
    start = T0 - pd.Timedelta(days=40)
    created = {f"p{i:04d}": start + pd.Timedelta(minutes=144 * i) for i in range(300)}
    midnight = start + pd.Timedelta(days=15)
    created |= {f"r{i:04d}": midnight + pd.Timedelta(hours=1 - 2 * (i % 2)) for i in range(60)}
    created |= {f"o{i:04d}": T0 - pd.Timedelta(days=1000 - i) for i in range(1000)}
    p = _with_created(platform(links + rest), created)
    options = ProjectionOptions(co_activity_window="", lockstep_weight=0, hub_campaign_share=0.15)
    assert weight(project(p, options=options), "r0000", "r0001") == 0
    public = dataclasses.replace(options, hub_campaign_share=0.25)
    assert weight(project(p, options=public), "r0000", "r0001") > 0
