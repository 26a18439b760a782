"""Invariants of the synthetic platform (small preset; counts are never pinned exactly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphinv.errors import ConfigError
from graphinv.schema import TABLES, Platform
from graphinv.synth import PRESETS, generate, resolve_params, write_platform
from graphinv.synth.world import KINDS, STYLES, TRAITS

ADVERSARIAL = ("extraction", "card_testing", "free_tier_farming")
RING_STYLES = STYLES[1:8]


@pytest.fixture(scope="module")
def plat() -> Platform:
    return generate(preset="small", seed=0)


@pytest.fixture(scope="module")
def labelled_links(plat: Platform) -> pd.DataFrame:
    return plat.links.merge(plat.labels, on="account_id")


def _check_type(series: pd.Series, kind: str) -> bool:
    if kind == "string":
        return pd.api.types.is_string_dtype(series) and not pd.api.types.is_object_dtype(series)
    if kind == "timestamp":
        return isinstance(series.dtype, pd.DatetimeTZDtype) and str(series.dtype.tz) == "UTC"
    if kind == "int":
        return series.dtype == np.int64
    if kind == "bool":
        return series.dtype == np.bool_
    return pd.api.types.is_float_dtype(series)


def test_tables_match_the_input_contract(plat: Platform) -> None:
    tables = plat.tables()
    assert set(tables) == set(TABLES)
    for name, spec in TABLES.items():
        frame = tables[name]
        assert tuple(frame.columns) == spec.column_names, name
        for col in spec.columns:
            assert _check_type(frame[col.name], col.type), (name, col.name, frame[col.name].dtype)
        for col in spec.required_columns:
            assert frame[col].notna().all(), (name, col)
        assert not frame.duplicated(list(spec.key)).any(), f"{name} key not unique"


def test_every_account_has_one_label_and_adversaries_a_ring(plat: Platform) -> None:
    labels = plat.labels
    assert labels["account_id"].is_unique
    assert set(labels["account_id"]) == set(plat.accounts["account_id"])
    adv = labels[labels["kind"].isin(ADVERSARIAL)]
    assert (adv["ring_id"] != "").all() and (adv["campaign_id"] != "").all()
    structures = labels[~labels["kind"].isin([*ADVERSARIAL, "benign"])]
    assert (structures["ring_id"] != "").all()
    assert (labels.loc[labels["kind"] == "benign", "ring_id"] == "").all()


def test_every_kind_and_trait_is_present(plat: Platform) -> None:
    assert set(plat.labels["kind"]) == set(KINDS)
    traits = set(plat.labels["traits"].str.split(";").explode()) - {""}
    assert traits == set(TRAITS)


def test_extraction_rings_and_campaigns(plat: Platform) -> None:
    ext = plat.labels[plat.labels["kind"] == "extraction"]
    assert ext["ring_id"].nunique() >= 10
    assert ext["campaign_id"].nunique() >= 2
    sizes = ext.groupby("ring_id").size()
    assert sizes.min() >= 15


def test_rate_limits_respected(plat: Platform) -> None:
    p = PRESETS["small"]
    per_hour = plat.usage.groupby(["account_id", "hour"])["requests"].sum().reset_index()
    tier = plat.accounts.set_index("account_id")["verification_tier"]
    limit = np.where(
        per_hour["account_id"].map(tier) == "enterprise",
        p.enterprise_rate_limit_per_hour,
        p.rate_limit_per_hour,
    )
    assert (per_hour["requests"] <= limit).all()
    assert (plat.usage["requests"] > 0).all()
    # Extraction rides just under the limit; benign users mostly do not.
    kinds = per_hour["account_id"].map(plat.labels.set_index("account_id")["kind"])
    near = per_hour["requests"] >= 0.7 * p.rate_limit_per_hour
    assert near[kinds == "extraction"].mean() > 0.8
    assert near[kinds == "benign"].mean() < 0.1


def test_shared_ip_hubs_and_popular_templates(plat: Platform, labelled_links: pd.DataFrame) -> None:
    ips = labelled_links[labelled_links["kind_x"] == "ip"]
    degree = ips.groupby("value")["account_id"].nunique()
    for trait in ("cgnat", "vpn"):
        holders = ips[ips["traits"].str.contains(trait)]
        assert degree[holders["value"].unique()].max() >= 100, trait
    tpl = labelled_links[labelled_links["kind_x"] == "prompt_fingerprint"]
    assert tpl.groupby("value")["account_id"].nunique().max() >= 0.05 * len(plat.accounts)


def test_extraction_infrastructure_is_shared_but_not_one_card(
    labelled_links: pd.DataFrame,
) -> None:
    ext = labelled_links[labelled_links["kind_y"] == "extraction"]
    # Ordinary rings only: the harder ring styles have their own tests below.
    ext = ext[~ext["traits"].str.contains("|".join(RING_STYLES))]
    cards = ext[ext["kind_x"] == "payment_method"]
    per_card = cards.groupby("value")["account_id"].nunique()
    assert per_card.max() <= 10 and (per_card >= 2).mean() > 0.7
    camo = cards[cards["traits"].str.contains("camouflage")]
    assert (per_card[camo["value"]] == 1).all()
    # Camouflaged members still go through their ring's proxy exits.
    ips = ext[ext["kind_x"] == "ip"]
    ring_ips = ips[~ips["traits"].str.contains("camouflage")].groupby("ring_id")["value"].agg(set)
    camo_ips = ips[ips["traits"].str.contains("camouflage")]
    shared = camo_ips.apply(lambda r: r["value"] in ring_ips[r["ring_id"]], axis=1)
    assert shared.groupby(camo_ips["account_id"]).any().all()
    # Residential proxy exits also carry benign customers.
    all_ips = labelled_links[labelled_links["kind_x"] == "ip"]
    benign_ips = set(all_ips.loc[all_ips["kind_y"] == "benign", "value"])
    assert len(set(ips["value"]) & benign_ips) > 0


def test_extraction_traffic_shape(plat: Platform) -> None:
    labels = plat.labels.set_index("account_id")
    kind = plat.usage["account_id"].map(labels["kind"])
    # Operators without a schedule stay on one model: they have a test of their own.
    kind = kind.mask(plat.usage["account_id"].map(labels["traits"]).str.contains("aperiodic"))
    sums = plat.usage.groupby(kind)[["input_tokens", "output_tokens"]].sum()
    ratio = sums["output_tokens"] / sums["input_tokens"]
    assert ratio["extraction"] > 3 * ratio["benign"]
    ext = plat.usage[kind == "extraction"]
    release = pd.Timestamp(PRESETS["small"].window_start) + pd.Timedelta(
        days=PRESETS["small"].release_day, hours=17
    )
    new = ext[ext["model"] == "frontier-2"]
    assert len(new) > 0 and (new["hour"] >= release).all()
    after = ext[ext["hour"] >= release + pd.Timedelta(days=2)]
    assert (after["model"] == "frontier-2").mean() > 0.8
    # Round-robin: each ring is busy around the clock, not on a human rhythm.
    hours = ext["hour"].dt.hour.value_counts()
    assert hours.min() > 0.5 * hours.mean()


def test_links_are_consistent(plat: Platform) -> None:
    links = plat.links
    assert (links["first_seen"] <= links["last_seen"]).all()
    assert (links["count"] >= 1).all()
    created = links["account_id"].map(plat.accounts.set_index("account_id")["created_at"])
    assert (links["first_seen"] >= created).all()
    for table, kind, col in (
        (plat.ips, "ip", "ip"),
        (plat.payment_methods, "payment_method", "fingerprint"),
        (plat.prompt_fingerprints, "prompt_fingerprint", "fingerprint"),
    ):
        assert set(links.loc[links["kind"] == kind, "value"]) == set(table[col])


def test_same_seed_same_tables_other_seed_differs(plat: Platform) -> None:
    again = generate(preset="small", seed=0)
    for name, frame in plat.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name])
    other = generate(preset="small", seed=1)
    assert not plat.links.equals(other.links)
    assert not plat.usage.equals(other.usage)


def _normalise(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    out = {}
    for col in TABLES[name].columns:
        s = frame[col.name]
        if col.type == "timestamp":
            s = pd.to_datetime(s, utc=True).astype("datetime64[us, UTC]")
        elif col.type == "string":
            s = s.astype("str").fillna("")
        elif col.type == "bool" and pd.api.types.is_string_dtype(s):
            s = s.str.lower() == "true"
        elif col.type == "int":
            s = s.astype(np.int64)
        out[col.name] = s.reset_index(drop=True)
    return pd.DataFrame(out)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "csv.gz"])
def test_write_platform_round_trip(tmp_path: Path, fmt: str) -> None:
    plat = generate(preset="small", seed=2, n_accounts=1_500)
    written = write_platform(plat, tmp_path, fmt=fmt)
    assert set(written) == set(TABLES)
    for name, frame in plat.tables().items():
        path = tmp_path / f"{name}.{fmt}"
        rows, size = written[name]
        assert rows == len(frame) and size == path.stat().st_size > 0
        if fmt == "parquet":
            back = pd.read_parquet(path)
        else:
            back = pd.read_csv(path, dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(_normalise(back, name), _normalise(frame, name))


def test_unknown_names_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown synth preset"):
        generate(preset="huge")
    with pytest.raises(ConfigError, match="unknown synth parameter"):
        generate(preset="small", vpn_shar=0.1)
    with pytest.raises(ConfigError, match="not in"):
        generate(preset="small", vpn_share=1.5)
    with pytest.raises(ConfigError, match="format"):
        write_platform(generate(n_accounts=500), tmp_path, fmt="xlsx")


def test_case_24k_parameters() -> None:
    p = PRESETS["case-24k"]
    assert p.n_accounts == 1_000_000
    fraud = sum(c.n_accounts for c in p.campaigns)
    assert 23_000 <= fraud <= 25_000
    volumes = sorted(c.n_requests for c in p.campaigns)
    assert volumes == [150_000, 3_400_000, 13_000_000]
    assert sum(volumes) > 16_000_000


def test_case_24k_scaled_down_keeps_campaign_ratios() -> None:
    n = 40_000
    plat = generate(preset="case-24k", seed=0, n_accounts=n)
    labels = plat.labels.set_index("account_id")
    ext = labels[labels["kind"] == "extraction"]
    assert abs(len(ext) - 24_000 * n / 1_000_000) < 0.05 * 24_000 * n / 1_000_000
    camp = plat.usage["account_id"].map(labels["campaign_id"])
    volume = plat.usage.groupby(camp)["requests"].sum()
    for c in PRESETS["case-24k"].campaigns:
        expected = c.n_requests * n / 1_000_000
        assert abs(volume[c.name] - expected) < 0.15 * expected, c.name


def test_scaling_and_overrides() -> None:
    p = resolve_params(preset="small", n_accounts=12_000, camouflage_share=0.2)
    assert p.camouflage_share == 0.2
    assert sum(c.n_accounts for c in p.campaigns) == 2 * sum(
        c.n_accounts for c in PRESETS["small"].campaigns
    )


CORE = ("payment_method", "ip", "prompt_fingerprint")


def _rings_with(labels: pd.DataFrame, trait: str) -> dict[str, set[str]]:
    carriers = labels[labels["traits"].str.split(";").map(lambda ts: trait in ts)]
    return carriers.groupby("ring_id")["account_id"].agg(set).to_dict()


def _holders(links: pd.DataFrame, kind: str) -> pd.Series:
    return links[links["kind"] == kind].groupby("value")["account_id"].agg(set)


def test_every_preset_plants_each_harder_ring_and_twin() -> None:
    for name, p in PRESETS.items():
        for field in (
            "star_card_rings",
            "star_proxy_rings",
            "funding_tree_rings",
            "sparse_rings",
            "hub_ip_rings",
            "hub_template_rings",
            "aperiodic_rings",
            "company_card_twins",
            "campus_class_twins",
        ):
            assert getattr(p, field) >= 1, (name, field)
    labels = generate(preset="small", seed=3).labels
    for style in (*RING_STYLES, "company_card", "campus_class"):
        rings = _rings_with(labels, style)
        assert len(rings) == getattr(PRESETS["small"], _COUNT_OF[style]), style
        kinds = set(labels.loc[labels["ring_id"].isin(rings), "kind"])
        assert kinds == ({"extraction"} if style in RING_STYLES else {_TWIN_KIND[style]})


_COUNT_OF = {
    **{s: s + "s" for s in STYLES[1:8]},
    "company_card": "company_card_twins",
    "campus_class": "campus_class_twins",
}
_TWIN_KIND = {"company_card": "office", "campus_class": "university"}


def test_star_rings_hang_on_one_identifier(plat: Platform) -> None:
    labels, links = plat.labels, plat.links
    benign = set(labels.loc[labels["kind"] == "benign", "account_id"])
    p = PRESETS["small"]
    for members in _rings_with(labels, "star_card_ring").values():
        assert p.hard_ring_size[0] <= len(members) <= p.hard_ring_size[1]
        cards = _holders(links[links["account_id"].isin(members)], "payment_method")
        assert len(cards) == 1
        # The card funds every member (banned and respawned ones too) and nobody else.
        assert _holders(links, "payment_method")[cards.index[0]] == members
    for members in _rings_with(labels, "star_proxy_ring").values():
        mine = links[links["account_id"].isin(members)]
        ips = _holders(mine, "ip")
        hub = ips[ips.map(len) == len(members)]
        assert len(hub) == 1
        # Nobody else but a few customers of the residential line.
        others = _holders(links, "ip")[hub.index[0]] - members
        assert len(others) <= 3 and others <= benign
        # Little else is shared: own cards (a respawn inherits its predecessor's).
        assert _holders(mine, "payment_method").map(len).max() <= 2
        assert _holders(mine, "prompt_fingerprint").map(len).max() <= 2


def test_funding_tree_and_sparse_rings(plat: Platform) -> None:
    labels, links = plat.labels, plat.links
    for members in _rings_with(labels, "funding_tree_ring").values():
        mine = links[links["account_id"].isin(members)]
        cards = _holders(mine, "payment_method")
        assert len(cards) >= 3
        assert (cards.map(len) >= 2).all() and (cards.map(len) < len(members)).all()
        assert set().union(*cards) == members
        cards_per_member = mine[mine["kind"] == "payment_method"].groupby("account_id").size()
        assert (cards_per_member >= 2).any()  # the subsets overlap
        everyone = _holders(links, "payment_method")
        assert all(everyone[c] <= members for c in cards.index)
    for members in _rings_with(labels, "sparse_ring").values():
        mine = links[links["account_id"].isin(members) & links["kind"].isin(CORE)]
        pairs = mine.merge(mine, on=["kind", "value"])
        pairs = pairs[pairs["account_id_x"] != pairs["account_id_y"]]
        mates = pairs.groupby("account_id_x")["account_id_y"].nunique()
        # Two or three ring-mates each (a respawn also shares with its predecessor's).
        assert mates.median() <= 3 and mates.max() <= 5
        assert mates.min() >= 2 and len(mates) == len(members)


def test_hub_rings_hide_behind_a_public_identifier(plat: Platform) -> None:
    labels, links = plat.labels, plat.links
    kind = labels.set_index("account_id")["kind"]
    traits = labels.set_index("account_id")["traits"]
    lo, hi = PRESETS["small"].ring_hub_accounts
    for style, id_kind in (("hub_ip_ring", "ip"), ("hub_template_ring", "prompt_fingerprint")):
        rings = _rings_with(labels, style)
        assert rings, style
        for members in rings.values():
            held = _holders(links[links["account_id"].isin(members)], id_kind)
            hub = held.map(len).idxmax()
            assert len(held[hub]) >= 0.9 * len(members)
            everyone = _holders(links, id_kind)[hub]
            # Far above the projection's default hub cap of 200, and mostly benign users.
            assert lo <= len(everyone) <= hi
            public = everyone - members
            assert (kind[list(public)] == "benign").all()
            assert traits[list(public)].str.contains("ring_hub_user").all()


def test_aperiodic_rings_have_no_schedule_and_one_model(plat: Platform) -> None:
    usage = plat.usage.merge(plat.labels, on="account_id")
    usage = usage[usage["kind"] == "extraction"].sort_values("hour")

    def top_gap_share(rows: pd.DataFrame) -> float:
        gaps = rows.groupby("account_id")["hour"].diff().dropna()
        return float(gaps.value_counts(normalize=True).iloc[0])

    loose = usage["traits"].str.contains("aperiodic_ring")
    assert loose.any()
    assert usage.loc[loose, "model"].nunique() == 1
    # An ordinary ring's members come back on a period; these do not.
    ordinary = ~usage["traits"].str.contains("|".join(RING_STYLES) + "|camouflage")
    assert top_gap_share(usage[loose]) < 0.15 < 0.25 < top_gap_share(usage[ordinary])


def test_benign_twins(plat: Platform) -> None:
    labels, links = plat.labels, plat.links
    for members in _rings_with(labels, "company_card").values():
        cards = _holders(links[links["account_id"].isin(members)], "payment_method")
        assert len(cards) == 1 and _holders(links, "payment_method")[cards.index[0]] == members
        assert not labels.set_index("account_id").loc[list(members), "traits"].str.contains(
            "office_nat"
        ).any()
    active = set(plat.usage["account_id"])
    for members in _rings_with(labels, "campus_class").values():
        live = members & active
        assert len(live) >= 20
        for id_kind in ("ip", "prompt_fingerprint"):
            held = _holders(links[links["account_id"].isin(members)], id_kind)
            shared = held[held.map(len) >= len(live) / 2]
            # One NAT address and one course template: every active student, nobody else.
            assert len(shared) == 1, id_kind
            assert live <= shared.iloc[0] <= members
    # A family shares a card and a home line.
    households = labels[labels["kind"] == "household"].groupby("ring_id")["account_id"].agg(set)
    ips, cards = _holders(links, "ip"), _holders(links, "payment_method")
    for members in households.head(20):
        assert any(h == members for h in cards)
        assert any(members <= h for h in ips)


def test_inactive_traits_match_status(plat: Platform) -> None:
    status = plat.accounts.set_index("account_id")["status"]
    traits = plat.labels.set_index("account_id")["traits"].str.split(";")
    for name in ("banned", "suspended"):
        has = traits.map(lambda ts, n=name: n in ts)
        assert (status[has.index[has]] == name).all() and has.sum() == (status == name).sum()
