"""Scoring features, scores and explanations on tiny hand-made rings with hand-computed values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphinv.schema import Platform
from graphinv.score.features import FEATURES, FeatureOptions, ring_features
from graphinv.score.scoring import ScoringOptions, score_rings, suspicion

T0 = pd.Timestamp("2025-03-03", tz="UTC")  # a Monday
LINK_COLUMNS = ["account_id", "kind", "value", "first_seen", "last_seen", "count"]
USAGE_COLUMNS = ["account_id", "hour", "model", "requests", "input_tokens", "output_tokens"]


def make_platform(
    accounts: dict[str, dict] | list[str],
    *,
    links: list[tuple] = (),
    usage: list[tuple] = (),
    ips: list[tuple] | None = None,
    cards: list[tuple] | None = None,
    prompts: list[tuple] | None = None,
) -> Platform:
    """A platform from literal rows.

    ``links``: (account, kind, value, count); ``usage``: (account, hour offset from T0,
    model, requests, input tokens, output tokens); ``ips``: (ip, datacenter, proxy);
    ``cards``: (fingerprint, prepaid); ``prompts``: (fingerprint, category, reasoning).
    """
    if isinstance(accounts, list):
        accounts = {a: {} for a in accounts}
    rows = [{"account_id": a, "created_at": T0 - pd.Timedelta(days=100), **extra}
            for a, extra in accounts.items()]
    return Platform(
        accounts=pd.DataFrame(rows),
        links=pd.DataFrame(
            [(a, k, v, T0, T0, c) for a, k, v, c in links], columns=LINK_COLUMNS
        ),
        usage=pd.DataFrame(
            [(a, T0 + pd.Timedelta(hours=h), m, r, i, o) for a, h, m, r, i, o in usage],
            columns=USAGE_COLUMNS,
        ),
        ips=None if ips is None else pd.DataFrame(
            ips, columns=["ip", "is_datacenter", "is_proxy"]),
        payment_methods=None if cards is None else pd.DataFrame(
            cards, columns=["fingerprint", "prepaid"]),
        prompt_fingerprints=None if prompts is None else pd.DataFrame(
            prompts, columns=["fingerprint", "category", "elicits_reasoning"]),
    )


def ring(*accounts: str, ring_id: str = "r1") -> pd.DataFrame:
    return pd.DataFrame({"ring_id": ring_id, "account_id": list(accounts)})


def feature(platform: Platform, members: pd.DataFrame, name: str, ring_id: str = "r1",
            **options) -> float:
    found = ring_features(members, platform, options=FeatureOptions(**options))
    return float(found.values.loc[ring_id, name])


# --- infrastructure ------------------------------------------------------------------


def test_accounts_per_card_is_the_members_median_of_their_most_shared_card() -> None:
    # a, b, c share card1 (3 accounts); d has card1 and its own card2; e has no card.
    platform = make_platform(
        list("abcdefg"),
        links=[("a", "payment_method", "card1", 1), ("b", "payment_method", "card1", 1),
               ("c", "payment_method", "card1", 1), ("d", "payment_method", "card1", 1),
               ("d", "payment_method", "card2", 1), ("f", "payment_method", "card3", 1)],
    )
    found = ring_features(ring("a", "b", "c", "d", "e"), platform)
    # Per account: a..d → 4 (card1 has 4 accounts), e → 1; median of [4, 4, 4, 4, 1] = 4.
    assert found.values.loc["r1", "accounts_per_card"] == 4.0
    assert found.values.loc["r1", "card_members"] == 4
    assert found.values.loc["r1", "cards"] == 2
    # Platform: a..d → 4, e, f, g → 1; median 4 of 7 values [1,1,1,4,4,4,4].
    assert found.baseline["accounts_per_card"] == 4.0


def test_prepaid_share_counts_members_paying_by_prepaid_card() -> None:
    platform = make_platform(
        list("abcd"),
        links=[("a", "payment_method", "p1", 1), ("b", "payment_method", "p1", 1),
               ("c", "payment_method", "k1", 1)],
        cards=[("p1", True), ("k1", False)],
    )
    found = ring_features(ring("a", "b", "c"), platform)
    assert found.values.loc["r1", "prepaid_share"] == pytest.approx(2 / 3)
    assert found.values.loc["r1", "prepaid_cards"] == 1
    assert found.baseline["prepaid_share"] == pytest.approx(2 / 4)


def test_datacenter_proxy_share_and_ip_rotation() -> None:
    # a: 4 IPs (2 datacenter, 1 proxy) over 2 active days; b: 1 clean IP on 1 day.
    platform = make_platform(
        ["a", "b"],
        links=[("a", "ip", "1.1.1.1", 1), ("a", "ip", "2.2.2.2", 1),
               ("a", "ip", "3.3.3.3", 1), ("a", "ip", "4.4.4.4", 1),
               ("b", "ip", "4.4.4.4", 1)],
        ips=[("1.1.1.1", True, False), ("2.2.2.2", True, False),
             ("3.3.3.3", False, True), ("4.4.4.4", False, False)],
        usage=[("a", 0, "m", 1, 1, 1), ("a", 30, "m", 1, 1, 1), ("b", 0, "m", 1, 1, 1)],
    )
    found = ring_features(ring("a", "b"), platform)
    assert found.values.loc["r1", "datacenter_proxy_share"] == pytest.approx((3 / 4 + 0) / 2)
    # a: 4 IPs / 2 days = 2, b: 1 / 1 = 1; median of [2, 1] = 1.5.
    assert found.values.loc["r1", "ip_rotation"] == pytest.approx(1.5)
    assert found.values.loc["r1", "ips"] == 4


def test_signup_burst_counts_other_members_in_the_densest_window() -> None:
    created = {"a": 0, "b": 2, "c": 5, "d": 200, "e": 400}
    platform = make_platform(
        {k: {"created_at": T0 + pd.Timedelta(hours=h)} for k, h in created.items()})
    found = ring_features(ring(*created), platform, options=FeatureOptions(burst_window_hours=6))
    # a, b, c fall inside 6 hours: (3 − 1) / (5 − 1).
    assert found.values.loc["r1", "burst_members"] == 3
    assert found.values.loc["r1", "signup_burst"] == pytest.approx(0.5)
    assert found.baseline["signup_burst"] == pytest.approx(3 / 5)


def test_account_age_and_farmable_signup_paths() -> None:
    end = 10 * 24  # the last usage hour sets "now"
    platform = make_platform(
        {"a": {"created_at": T0, "signup_path": "education"},
         "b": {"created_at": T0 + pd.Timedelta(days=4), "signup_path": "self_serve"},
         "c": {"created_at": T0 - pd.Timedelta(days=90), "signup_path": "research_access"}},
        usage=[("c", end, "m", 1, 1, 1)],
    )
    found = ring_features(ring("a", "b"), platform)
    # Ages in days (+1): a = 11, b = 7; median 9.
    assert found.values.loc["r1", "account_age_days"] == pytest.approx(9.0)
    assert found.values.loc["r1", "farmable_signup_share"] == pytest.approx(0.5)
    assert found.baseline["farmable_signup_share"] == pytest.approx(2 / 3)


# --- traffic ---------------------------------------------------------------------------


def test_volume_and_output_ratio_are_member_medians() -> None:
    platform = make_platform(
        ["a", "b", "c", "x"],
        usage=[("a", 0, "m", 10, 100, 500), ("a", 1, "m", 10, 100, 500),
               ("b", 0, "m", 30, 300, 600), ("c", 0, "m", 5, 100, 100),
               ("x", 0, "m", 1, 10, 10)],
    )
    found = ring_features(ring("a", "b", "c"), platform)
    values = found.values.loc["r1"]
    assert values["requests_per_account"] == 20  # a 20, b 30, c 5
    assert values["tokens_per_account"] == 900  # a 1200, b 900, c 200
    assert values["output_input_ratio"] == pytest.approx(2.0)  # a 5, b 2, c 1
    assert found.baseline["requests_per_account"] == pytest.approx(12.5)


def test_near_rate_limit_share_with_a_given_limit() -> None:
    # Hourly requests: 50 and 58 are ≥ 0.8 × 60 = 48, 20 is not; two models in one hour add.
    platform = make_platform(
        ["a", "b"],
        usage=[("a", 0, "m1", 30, 1, 1), ("a", 0, "m2", 20, 1, 1), ("a", 1, "m1", 58, 1, 1),
               ("b", 0, "m1", 20, 1, 1)],
    )
    found = ring_features(ring("a", "b"), platform, options=FeatureOptions(rate_limit=60))
    # Members' mean: a sends 108 of 108 near the limit, b 0 of 20.
    assert found.values.loc["r1", "near_rate_limit_share"] == pytest.approx(0.5)
    assert found.values.loc["r1", "rate_limit"] == 60


def test_rate_limit_is_inferred_per_verification_tier() -> None:
    usage = [("s", h, "m", 50 + h % 10, 1, 1) for h in range(50)]
    usage += [("e", h, "m", 1000 + h, 1, 1) for h in range(50)]
    platform = make_platform(
        {"s": {"verification_tier": "standard"}, "e": {"verification_tier": "enterprise"}},
        usage=usage,
    )
    found = ring_features(ring("s", "e"), platform,
                          options=FeatureOptions(rate_limit_quantile=1.0, min_tier_hours=10))
    assert found.rate_limits.to_dict() == {"standard": 59.0, "enterprise": 1049.0, "*": 1049.0}


def test_around_the_clock_compares_the_quietest_8_hours_with_an_even_spread() -> None:
    days = range(3)
    flat = [("a", d * 24 + h, "m", 10, 1, 1) for d in days for h in range(24)]
    # b: 10 requests an hour, but only 5 from midnight to 8 (UTC).
    dimmed = [("b", d * 24 + h, "m", 5 if h < 8 else 10, 1, 1) for d in days for h in range(24)]
    office = [("c", d * 24 + h, "m", 10, 1, 1) for d in range(5) for h in range(9, 17)]
    platform = make_platform(["a", "b", "c"], usage=flat + dimmed + office)
    members = pd.concat([ring("a", ring_id="flat"), ring("b", ring_id="dimmed"),
                         ring("c", ring_id="office")])
    found = ring_features(members, platform)
    assert found.values.loc["flat", "around_the_clock"] == pytest.approx(1.0)
    # 8 × 5 of 8 × 5 + 16 × 10 requests = 20%, against 8/24 for an even spread.
    assert found.values.loc["dimmed", "around_the_clock"] == pytest.approx(0.2 * 3)
    assert found.values.loc["office", "around_the_clock"] == 0.0
    assert found.baseline["around_the_clock"] == pytest.approx(0.6)  # median of 1, 0.6, 0


def test_load_balancing_tells_round_robin_from_lockstep() -> None:
    hours = range(96)
    round_robin = [(f"r{i}", h, "m", 10, 1, 1) for h in hours for i in range(3) if h % 3 == i]
    # Lockstep: all three on during the same half of the hours.
    lockstep = [(f"l{i}", h, "m", 10, 1, 1) for h in hours for i in range(3) if h % 2 == 0]
    platform = make_platform([f"r{i}" for i in range(3)] + [f"l{i}" for i in range(3)],
                             usage=round_robin + lockstep)
    members = pd.concat([ring("r0", "r1", "r2", ring_id="rr"),
                         ring("l0", "l1", "l2", ring_id="ls")])
    found = ring_features(members, platform)
    # Round robin: exactly one member per hour, variance 0 → 1.
    assert found.values.loc["rr", "load_balancing"] == pytest.approx(1.0)
    # Lockstep: count is 0 or 3 (variance 2.25) vs independent 3 × 0.5 × 0.5 → D = 3 → 0.
    assert found.values.loc["ls", "load_balancing"] == 0.0


def test_model_pivot_measures_traffic_on_a_new_model_in_its_first_days() -> None:
    # m2 first appears at hour 100; in [100, 100 + 48) the ring sends 30 of 40 on m2.
    usage = [("a", h, "m1", 1, 1, 1) for h in range(0, 100, 10)]
    usage += [("a", 100, "m2", 20, 1, 1), ("b", 110, "m2", 10, 1, 1), ("b", 120, "m1", 10, 1, 1)]
    usage += [("x", 130, "m1", 60, 1, 1)]
    platform = make_platform(["a", "b", "x"], usage=usage)
    found = ring_features(ring("a", "b"), platform,
                          options=FeatureOptions(release_window_days=2))
    # Members' mean: a sends 20 of 20 in the window on m2, b 10 of 20; x 0 of 60.
    assert found.values.loc["r1", "model_pivot"] == pytest.approx(0.75)
    assert found.baseline["model_pivot"] == pytest.approx(1.5 / 3)
    assert found.values.loc["r1", "new_models"] == "m2"


# --- content ---------------------------------------------------------------------------


def test_template_concentration_reasoning_and_capability_sweep() -> None:
    links = [("a", "prompt_fingerprint", "t_code", 50), ("b", "prompt_fingerprint", "t_math", 30),
             ("b", "prompt_fingerprint", "t_chat", 15), ("a", "prompt_fingerprint", "t_tiny", 5),
             ("x", "prompt_fingerprint", "t_chat", 100)]
    prompts = [("t_code", "coding", True), ("t_math", "math", True),
               ("t_chat", "chat", False), ("t_tiny", "science", True)]
    platform = make_platform(["a", "b", "x"], links=links, prompts=prompts)
    found = ring_features(ring("a", "b"), platform,
                          options=FeatureOptions(main_template_share=0.1,
                                                 target_categories=("coding", "math",
                                                                    "science", "agentic")))
    values = found.values.loc["r1"]
    # 2 accounts send 4 templates; the platform: 3 accounts, 4 templates.
    assert values["template_concentration"] == pytest.approx(0.5)
    assert found.baseline["template_concentration"] == pytest.approx(0.75)
    # Members' mean: a 55 of 55 prompts on reasoning templates, b 30 of 45.
    assert values["reasoning_share"] == pytest.approx((1 + 30 / 45) / 2)
    assert found.baseline["reasoning_share"] == pytest.approx((1 + 30 / 45 + 0) / 3)
    # Main templates (≥ 10%): code, math, chat → 2 of 4 target categories (science is 5%).
    assert values["capability_sweep"] == pytest.approx(0.5)
    assert values["categories"] == "coding, math"


# --- properties --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    cards=st.lists(st.integers(0, 5), min_size=6, max_size=6),
    extra=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=4),
)
def test_more_shared_cards_never_lower_the_card_feature(cards, extra) -> None:
    accounts = [f"a{i}" for i in range(6)]
    links = [(a, "payment_method", f"card{c}", 1) for a, c in zip(accounts, cards, strict=True)]
    members = ring(*accounts[:4])
    before = ring_features(members, make_platform(accounts, links=links))
    more = links + [(accounts[a], "payment_method", f"card{c}", 1) for a, c in extra]
    after = ring_features(members, make_platform(accounts, links=list(dict.fromkeys(more))))
    assert (after.values.loc["r1", "accounts_per_card"]
            >= before.values.loc["r1", "accounts_per_card"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20), st.floats(0, 0.99))
def test_share_suspicion_is_monotone_and_bounded(values, baseline) -> None:
    ordered = np.sort(np.array(values))
    level = suspicion(ordered, baseline=baseline, unit="share")
    assert np.all(np.diff(level) >= 0)
    assert np.all((level >= 0) & (level <= 1))


def test_suspicion_of_ratios_uses_the_log_scale_to_the_platform_extreme() -> None:
    assert suspicion(np.array([3.0]), baseline=1.0, reference=9.0, unit="ratio")[0] == (
        pytest.approx(0.5))
    young = suspicion(np.array([10.0]), baseline=100.0, reference=1.0, unit="inverse_ratio")
    assert young[0] == pytest.approx(0.5)
    assert suspicion(np.array([np.nan]), baseline=1.0, reference=9.0, unit="ratio")[0] == 0


# --- score and explanation ---------------------------------------------------------------


def _two_rings() -> tuple[Platform, pd.DataFrame]:
    """An extraction-like ring (prepaid card, round-robin 24/7, reasoning template, high
    output ratio) next to a family (one ordinary card, a few evening hours)."""
    bots = [f"x{i}" for i in range(4)]
    family = ["f0", "f1"]
    others = [f"o{i}" for i in range(20)]
    links = [(b, "payment_method", "prepaid1", 1) for b in bots]
    links += [(f, "payment_method", "family_card", 1) for f in family]
    links += [(o, "payment_method", f"own{i}", 1) for i, o in enumerate(others)]
    links += [(b, "prompt_fingerprint", "cot_math", 100) for b in bots]
    links += [(p, "prompt_fingerprint", "chat", 5) for p in family + others]
    usage = [(bots[h % 4], h, "m", 55, 1000, 8000) for h in range(168)]
    usage += [(p, d * 24 + 20, "m", 3, 500, 400) for p in family + others for d in range(5)]
    platform = make_platform(
        {**{b: {"created_at": T0, "signup_path": "education"} for b in bots},
         **{p: {} for p in family + others}},
        links=links, usage=usage,
        cards=[("prepaid1", True), ("family_card", False)]
        + [(f"own{i}", False) for i in range(20)],
        prompts=[("cot_math", "math", True), ("chat", "chat", False)],
    )
    members = pd.concat([ring(*bots, ring_id="bots"), ring(*family, ring_id="family")])
    return platform, members


def test_score_ranks_extraction_first_and_contributions_add_up() -> None:
    platform, members = _two_rings()
    scores = score_rings(members, platform, options=ScoringOptions(threshold=0.3))
    rings = scores.rings.set_index("ring_id")
    assert list(scores.rings["ring_id"]) == ["bots", "family"]
    assert rings.loc["bots", "rank"] == 1 and rings.loc["bots", "flagged"]
    assert not rings.loc["family", "flagged"]
    assert ((scores.rings["score"] >= 0) & (scores.rings["score"] <= 1)).all()
    summed = scores.contributions.groupby("ring_id")["contribution"].sum()
    assert summed["bots"] == pytest.approx(rings.loc["bots", "score"])
    assert set(scores.contributions["feature"]) == {f.name for f in FEATURES}


def test_explanation_quotes_the_feature_values() -> None:
    platform, members = _two_rings()
    scores = score_rings(members, platform)
    rows = scores.contributions.set_index(["ring_id", "feature"])
    for (ring_id, feature), row in rows.iterrows():
        value = row["value"]
        if not np.isfinite(value):
            continue
        text = row["text"]
        if feature.endswith(("share", "clock", "sweep", "pivot")):
            assert f"{100 * value:.0f}%" in text, (ring_id, feature, text)
            assert f"{100 * row['baseline']:.0f}%" in text, (ring_id, feature, text)
    bots = rows.loc["bots"]
    assert "4 accounts share 1 payment method" in bots.loc["accounts_per_card", "text"]
    assert "100% of members' prompts on reasoning-eliciting templates" in (
        bots.loc["reasoning_share", "text"])
    assert "4 accounts send 1 prompt template" in bots.loc["template_concentration", "text"]
    assert "round-robin" in bots.loc["load_balancing", "text"]
    explanation = scores.rings.set_index("ring_id").loc["bots", "explanation"]
    top = bots.sort_values("contribution", ascending=False).head(4)
    assert explanation == "; ".join(top["text"])
    ratio = float(re.search(r"ratio ([\d.]+)", bots.loc["output_input_ratio", "text"]).group(1))
    assert ratio == pytest.approx(bots.loc["output_input_ratio", "value"], abs=0.005)


def test_weights_change_the_score_but_not_the_features() -> None:
    platform, members = _two_rings()
    only_cards = {f.name: 0.0 for f in FEATURES} | {"accounts_per_card": 1.0}
    scores = score_rings(members, platform, options=ScoringOptions(weights=only_cards))
    card = scores.contributions.query("feature == 'accounts_per_card'").set_index("ring_id")
    rings = scores.rings.set_index("ring_id")
    assert rings["score"].to_dict() == pytest.approx(card["suspicion"].to_dict())


class _Untouchable:
    def __getattr__(self, name):
        raise AssertionError("scoring read platform.labels")

    def __getitem__(self, key):
        raise AssertionError("scoring read platform.labels")


def test_scoring_never_reads_labels() -> None:
    platform, members = _two_rings()
    plain = score_rings(members, platform)
    labelled = Platform(**{**platform.tables(), "labels": _Untouchable()})
    pd.testing.assert_frame_equal(score_rings(members, labelled).rings, plain.rings)


def test_unknown_accounts_and_missing_tables_do_not_break_scoring() -> None:
    platform = make_platform(["a", "b"])
    scores = score_rings(ring("a", "b", "ghost"), platform)
    assert scores.rings.loc[0, "size"] == 2
    assert scores.rings.loc[0, "score"] == 0.0
    assert "not measurable" in scores.contributions.set_index("feature").loc[
        "datacenter_proxy_share", "text"]


# --- the feature registry ----------------------------------------------------------------


@pytest.fixture
def register_weekend_share():
    """Registers the module docstring's example feature when called; removed afterwards."""
    from graphinv.score.features import feature
    from graphinv.score.registry import PerAccount, RingContext

    def register() -> str:
        @feature("weekend_share", group="traffic", unit="share", weight=9.0,
                 label="traffic on weekends",
                 sentence=lambda r: f"{100 * r.value:.0f}% of members' traffic on weekends "
                                    f"(platform {100 * r.baseline:.0f}%)")
        def weekend_share(ring: RingContext) -> PerAccount:
            usage = ring.usage
            weekend = (usage.hour // 24 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
            on = usage.per_account(np.where(weekend, usage.requests, 0.0))
            total = usage.per_account(usage.requests)
            with np.errstate(invalid="ignore", divide="ignore"):
                return PerAccount(np.where(total > 0, on / total, np.nan))

        return "weekend_share"

    yield register
    if "weekend_share" in FEATURES:
        FEATURES.unregister("weekend_share")


def test_one_decorated_function_adds_a_scored_and_explained_feature(
        register_weekend_share, tmp_path) -> None:
    from graphinv.config import load_settings

    name = register_weekend_share()
    platform, members = _two_rings()
    scores = score_rings(members, platform)
    bots = scores.contributions.set_index(["ring_id", "feature"]).loc[("bots", name)]
    # The bots run round the clock for a week from Monday: 2 of 7 days are a weekend;
    # the family and the 20 others send on weekdays only: platform mean 4 × (2/7) / 26.
    assert bots["value"] == pytest.approx(2 / 7)
    assert bots["baseline"] == pytest.approx(4 * 2 / 7 / 26)
    assert bots["group"] == "traffic" and bots["weight"] == 9.0
    assert bots["text"] == "29% of members' traffic on weekends (platform 4%)"
    # Its default weight puts it among the four contributions the explanation quotes.
    explanation = scores.rings.set_index("ring_id").loc["bots", "explanation"]
    assert "; 29% of members' traffic on weekends (platform 4%); " in explanation
    summed = scores.contributions.groupby("ring_id")["contribution"].sum()
    assert summed["bots"] == pytest.approx(scores.rings.set_index("ring_id").loc["bots", "score"])
    assert name in ring_features(members, platform).values.columns
    # Its weight is a setting like any other, from Python or from TOML.
    assert ScoringOptions(weights={name: 2.0}).weights[name] == 2.0
    path = tmp_path / "graphinv.toml"
    path.write_text(f"[scoring.weights]\n{name} = 0.0\n")
    silenced = score_rings(members, platform,
                           options=load_settings(path=path, environ={}).scoring)
    assert silenced.contributions.query("feature == @name")["contribution"].eq(0).all()


def test_options_made_before_a_feature_was_registered_use_its_default_weight(
        register_weekend_share) -> None:
    platform, members = _two_rings()
    before = ScoringOptions(threshold=0.3)
    name = register_weekend_share()
    assert name not in before.weights
    rows = score_rings(members, platform, options=before).contributions
    assert rows.query("feature == @name")["weight"].eq(9.0).all()


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"name": "reasoning_share"}, "already registered"),
        ({"name": "Weekend Share"}, "not a lower-case identifier"),
        ({"group": "behaviour"}, "group 'behaviour'"),
        ({"unit": "count"}, "unit 'count'"),
        ({"weight": -1.0}, "weight -1.0"),
    ],
)
def test_bad_feature_declarations_are_refused(declaration: dict, message: str) -> None:
    from graphinv.score.features import feature

    good = {"name": "toy", "group": "traffic", "unit": "share", "weight": 1.0}
    with pytest.raises(ValueError, match=message):
        feature(**(good | declaration), label="toy", sentence=str)
    assert "toy" not in FEATURES


@pytest.mark.parametrize(("options", "message"), [
    ({"folds": 1}, r"fit_weights folds = 1: must be ≥ 2"),
    ({"regularisation": 0.0}, r"fit_weights regularisation = 0.0: must be > 0"),
    ({"positive_kinds": ()}, r"fit_weights positive_kinds = \[\]: must name a label kind"),
])
def test_fit_weights_refuses_bad_options(options: dict, message: str) -> None:
    from graphinv.errors import ConfigError
    from graphinv.score.fit_weights import fit_weights

    platform, members = _two_rings()
    scores = score_rings(members, platform)
    labels = pd.DataFrame({"account_id": members["account_id"],
                           "kind": np.where(members["ring_id"] == "bots", "extraction", "benign")})
    with pytest.raises(ConfigError, match=message):
        fit_weights(scores, members, labels, **options)
