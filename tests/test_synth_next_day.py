"""Invariants of the synthetic platform's next day (small preset, a few seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphinv.errors import ConfigError
from graphinv.schema import TABLES, Platform, validate
from graphinv.stores import open_store
from graphinv.synth import generate, next_day, next_day_delta, true_rings

START = pd.Timestamp("2025-03-17", tz="UTC")


@pytest.fixture(scope="module")
def day0() -> Platform:
    return generate(preset="small", seed=0)


@pytest.fixture(scope="module")
def day1(day0: Platform) -> Platform:
    return next_day(day0, seed=0)


def _respawned(day0: Platform, day1: Platform) -> list[str]:
    before = true_rings(day0).groupby("ring_id")["account_id"].agg(set)
    after = true_rings(day1).groupby("ring_id")["account_id"].agg(set)
    return [r for r in after.index if r in before.index and not after[r] & before[r]]


def _ring_values(p: Platform, accounts: set[str], kind: str) -> set[str]:
    links = p.links
    return set(links.loc[(links["kind"] == kind) & links["account_id"].isin(accounts), "value"])


def test_output_is_valid_input(day1: Platform) -> None:
    good, quarantine = validate(
        day1.tables(), extra_kinds=("api_client",), now=START + pd.Timedelta(days=1)
    )
    assert quarantine.count() == 0
    for name, frame in day1.tables().items():
        assert tuple(frame.columns) == TABLES[name].column_names, name
        assert len(getattr(good, name)) == len(frame), name
    assert day1.usage["hour"].max() == START + pd.Timedelta(hours=23)
    assert day1.usage["hour"][day1.usage["hour"] >= START].nunique() == 24


def test_old_rows_are_kept(day0: Platform, day1: Platform) -> None:
    pd.testing.assert_frame_equal(day1.usage.iloc[: len(day0.usage)], day0.usage)
    for name in ("ips", "payment_methods", "prompt_fingerprints"):
        pd.testing.assert_frame_equal(
            getattr(day1, name).iloc[: len(getattr(day0, name))], getattr(day0, name)
        )
    acc = day1.accounts.iloc[: len(day0.accounts)]
    pd.testing.assert_frame_equal(acc.drop(columns="status"), day0.accounts.drop(columns="status"))
    assert set(acc.loc[acc["status"] != day0.accounts["status"], "status"]) == {"banned"}
    old = day1.links.iloc[: len(day0.links)]
    pd.testing.assert_frame_equal(
        old[["account_id", "kind", "value", "first_seen"]],
        day0.links[["account_id", "kind", "value", "first_seen"]],
    )
    assert (old["last_seen"] >= day0.links["last_seen"]).all()
    assert (old["count"] >= day0.links["count"]).all()
    # IP and template counts are requests; card and client counts follow active hours.
    bumped = (old["last_seen"] >= START) & old["kind"].isin(["ip", "prompt_fingerprint"])
    assert bumped.mean() > 0.05
    assert (old.loc[bumped, "count"] > day0.links.loc[bumped, "count"]).all()
    labels = day1.labels.iloc[: len(day0.labels)]
    assert (labels["account_id"] == day0.labels["account_id"]).all()


def test_new_accounts_are_labelled(day0: Platform, day1: Platform) -> None:
    new = day1.labels.iloc[len(day0.labels) :]
    assert len(new) > 0
    assert list(new["account_id"]) == list(day1.accounts["account_id"].iloc[len(day0.accounts) :])
    assert (new["kind"] == "extraction").all() and (new["ring_id"] != "").all()
    roles = new["traits"].str.extract(r"(respawned|joined)")[0]
    assert roles.notna().all() and set(roles) == {"respawned", "joined"}
    assert set(new["ring_id"]) <= set(day0.labels["ring_id"])
    created = day1.accounts["created_at"].iloc[len(day0.accounts) :]
    assert (created >= START).all() and (created < START + pd.Timedelta(days=1)).all()
    # Banned accounts stop: no traffic after the ban, and the trait says so.
    banned = set(day1.accounts.loc[day1.accounts["status"] == "banned", "account_id"])
    assert not banned & set(day1.usage.loc[day1.usage["hour"] >= START, "account_id"])
    labels = day1.labels.set_index("account_id")
    assert labels.loc[sorted(banned), "traits"].str.contains("banned").all()


def test_respawned_rings_reuse_infrastructure_not_accounts(day0: Platform, day1: Platform) -> None:
    respawned = _respawned(day0, day1)
    n_rings = true_rings(day0)["ring_id"].nunique()
    assert len(respawned) == max(1, round(0.25 * n_rings))  # ban_share 0.25
    before = true_rings(day0).groupby("ring_id")["account_id"].agg(set)
    after = true_rings(day1).groupby("ring_id")["account_id"].agg(set)
    for ring in respawned:
        assert not before[ring] & after[ring]
        for kind in ("payment_method", "ip"):
            old = _ring_values(day0, before[ring], kind)
            new = _ring_values(day1, after[ring], kind)
            # Most of what the respawn uses is the predecessor's (IPs: its proxy pool, not
            # the camouflaged members' home lines).
            assert len(new & old) / len(new) >= 0.75, (ring, kind)
        old_cards = _ring_values(day0, before[ring], "payment_method")
        assert len(_ring_values(day1, after[ring], "payment_method") & old_cards) >= 0.75 * len(
            old_cards
        )


def test_grown_and_split_rings(day0: Platform, day1: Platform) -> None:
    before = true_rings(day0).groupby("ring_id").size()
    after = true_rings(day1).groupby("ring_id").size()
    split = [r for r in after.index if r.endswith("_split")]
    assert len(split) == 1
    parent = split[0].removesuffix("_split")
    assert after[parent] + after[split[0]] == before[parent]
    cards = day1.links[day1.links["kind"] == "payment_method"].merge(
        true_rings(day1), on="account_id"
    )
    assert cards.groupby("value")["ring_id"].nunique().max() == 1
    joined = day1.labels[day1.labels["traits"].str.contains("joined")]
    grown = joined["ring_id"].unique()
    assert len(grown) == max(1, round(0.2 * before.size))  # grow_share 0.2
    ratio = after[grown] / before[grown]
    assert ((ratio > 1.4) & (ratio < 1.6)).all()


def test_deterministic_for_a_seed(day0: Platform, day1: Platform) -> None:
    again = next_day(day0, seed=0)
    for name, frame in day1.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    assert not next_day(day0, seed=1).labels.equals(day1.labels)


def _merged(previous: Platform, delta: Platform) -> dict[str, pd.DataFrame]:
    """The loader's merge rule, in pandas: links first_seen min, last_seen and count max,
    accounts created_at min, anything else the newer value."""
    out = {}
    for name, spec in TABLES.items():
        both = pd.concat([getattr(previous, name), getattr(delta, name)], ignore_index=True)
        rules = {c: "last" for c in spec.column_names if c not in spec.key}
        rules |= {
            "links": {"first_seen": "min", "last_seen": "max", "count": "max"},
            "accounts": {"created_at": "min"},
        }.get(name, {})
        out[name] = both.groupby(list(spec.key), sort=True).agg(rules).reset_index()
    return out


def test_delta_plus_previous_is_the_full_platform(day0: Platform, day1: Platform) -> None:
    delta = next_day_delta(day0, day1)
    assert len(delta.usage) == len(day1.usage) - len(day0.usage)
    assert len(delta.links) < len(day1.links) / 2
    assert delta.prompt_fingerprints.empty
    merged = _merged(day0, delta)
    for name, spec in TABLES.items():
        full = getattr(day1, name).sort_values(list(spec.key), ignore_index=True)
        pd.testing.assert_frame_equal(merged[name][list(spec.column_names)], full, obj=name)


def test_delta_through_the_embedded_store(tmp_path, day0: Platform, day1: Platform) -> None:
    incremental = open_store(path=tmp_path / "inc.duckdb", use_env=False)
    full = open_store(path=tmp_path / "full.duckdb", use_env=False)
    try:
        incremental.load(day0, progress=False)
        stats = incremental.load(next_day_delta(day0, day1), progress=False)
        full.load(day1, progress=False)
        assert stats.rows["usage"] == len(day1.usage) - len(day0.usage)
        a = incremental.read_platform(include_labels=True)
        b = full.read_platform(include_labels=True)
        for name, frame in b.tables().items():
            pd.testing.assert_frame_equal(a.tables()[name], frame, obj=name)
    finally:
        incremental.close()
        full.close()


def test_several_days_and_errors(day0: Platform) -> None:
    small = generate(preset="small", seed=4, n_accounts=1_500)
    later = next_day(small, seed=4, days=2, ban_share=0.0, grow_share=0.0, n_split=0)
    assert later.usage["hour"].max() == START + pd.Timedelta(days=1, hours=23)
    assert len(later.accounts) == len(small.accounts)
    # Two days of plain traffic: the daily volume stays where it was.
    daily = later.usage.groupby(later.usage["hour"].dt.floor("D"))["requests"].sum()
    assert np.allclose(daily.iloc[-2:], daily.iloc[-9:-7], rtol=0.35)
    with pytest.raises(ConfigError):
        next_day(small, ban_share=1.5)
    with pytest.raises(ConfigError):
        next_day(small, nonsense=1)
    with pytest.raises(ConfigError):
        next_day(small, days=0)
