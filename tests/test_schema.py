"""The validator on its own: contract files, column checks, and a property-based test."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphinv.errors import ConfigError, InputError
from graphinv.schema import (
    TABLES,
    check_columns,
    conform,
    dtype_of,
    json_schema,
    known_kinds,
    validate,
)
from graphinv.stores.neo4j.cypher import schema_script

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
NOW = pd.Timestamp("2025-01-01", tz="UTC")


@pytest.mark.parametrize("table", list(TABLES))
def test_published_json_schema_matches_the_contract(table: str) -> None:
    published = json.loads((SCHEMAS / f"{table}.schema.json").read_text())
    assert published == json.loads(json.dumps(json_schema(table)))
    jsonschema.Draft202012Validator.check_schema(published)


def test_json_schema_accepts_a_good_link_and_refuses_a_bad_one() -> None:
    validator = jsonschema.Draft202012Validator(json_schema("links"))
    good = {"account_id": "a1", "kind": "device", "value": "d1", "count": 2,
            "first_seen": "2024-01-01T00:00:00Z", "last_seen": "2024-01-02T00:00:00Z"}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "count": 0})
    assert not validator.is_valid({**good, "kind": "Fax Number"})
    assert not validator.is_valid({**good, "colour": "red"})


def test_published_neo4j_schema_matches_the_store() -> None:
    assert (SCHEMAS / "neo4j-schema.cypher").read_text() == schema_script()


def test_extra_kinds_must_be_plain_words() -> None:
    assert known_kinds(["api_client"])[-1] == "api_client"
    with pytest.raises(ConfigError, match="Device ID"):
        known_kinds(["Device ID"])


def test_validate_refuses_frames_without_required_columns() -> None:
    with pytest.raises(InputError, match=r"links: missing required column\(s\) \['count'\]"):
        validate({
            "accounts": pd.DataFrame({"account_id": ["a"], "created_at": ["2024-01-01"]}),
            "links": pd.DataFrame(columns=["account_id", "kind", "value", "first_seen",
                                           "last_seen"]),
            "usage": pd.DataFrame(columns=list(TABLES["usage"].column_names)),
        })


def test_check_columns_names_the_file() -> None:
    with pytest.raises(InputError, match=r"x\.csv: unknown column"):
        check_columns(TABLES["accounts"], ["account_id", "created_at", "nickname"], "x.csv")


def test_conform_gives_the_documented_dtypes() -> None:
    frame = conform(pd.DataFrame({"account_id": ["a"], "created_at": ["2024-01-01"]}),
                    TABLES["accounts"])
    assert [str(t) for t in frame.dtypes] == [dtype_of(c) for c in TABLES["accounts"].columns]


# -- property-based: every row ends up in exactly one place, and only good rows load ------

GOOD_TIMES = ["2024-01-01T00:00:00Z", "2024-06-01T12:00:00+02:00", "2023-12-31"]
BAD_TIMES = ["", "yesterday", "1970-01-01", "2999-01-01", "2024-13-01"]
GOOD_COUNTS = ["1", "7", "1000000"]
BAD_COUNTS = ["", "0", "-3", "1.5", "x", "9" * 30]
ACCOUNTS = ["a1", "a2", "a3"]


def _link(account: str, kind: str, value: str, first: str, last: str, count: str) -> dict:
    return {"account_id": account, "kind": kind, "value": value, "first_seen": first,
            "last_seen": last, "count": count}


good_links = st.builds(
    _link,
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["ip", "payment_method", "device"]),
    st.text(alphabet="abc'\"{}() ,;é", min_size=1, max_size=6).filter(lambda s: s.strip()),
    st.just("2024-01-01T00:00:00Z"),
    st.sampled_from(GOOD_TIMES[:2]),
    st.sampled_from(GOOD_COUNTS),
)
any_links = st.builds(
    _link,
    st.sampled_from([*ACCOUNTS, "zz", ""]),
    st.sampled_from(["ip", "device", "fax", ""]),
    st.sampled_from(["v1", "v2", ""]),
    st.sampled_from(GOOD_TIMES + BAD_TIMES),
    st.sampled_from(GOOD_TIMES + BAD_TIMES),
    st.sampled_from(GOOD_COUNTS + BAD_COUNTS),
)


def _frames(links: list[dict]) -> dict[str, pd.DataFrame]:
    return {
        "accounts": pd.DataFrame({"account_id": ACCOUNTS, "created_at": ["2024-01-01"] * 3}),
        "links": pd.DataFrame(links, columns=list(TABLES["links"].column_names)),
        "usage": pd.DataFrame(columns=list(TABLES["usage"].column_names)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_links, max_size=25))
def test_every_row_is_either_loaded_or_quarantined_and_loaded_rows_are_sound(
    links: list[dict],
) -> None:
    platform, quarantine = validate(_frames(links), extra_kinds=["device"], now=NOW)
    out = platform.links
    assert len(out) + quarantine.count("links") == len(links)
    if quarantine.count("links"):
        rows = quarantine.rows["links"]["row"]
        assert rows.is_unique and rows.between(1, len(links)).all()
    assert out["account_id"].isin(ACCOUNTS).all()
    assert out["kind"].isin(["ip", "payment_method", "prompt_fingerprint", "device"]).all()
    assert (out["count"] >= 1).all()
    assert (out["last_seen"] >= out["first_seen"]).all()
    assert (out["last_seen"] <= NOW + pd.Timedelta(days=1)).all()
    assert (out["first_seen"] >= pd.Timestamp("2000-01-01", tz="UTC")).all()
    assert not out.duplicated(["account_id", "kind", "value"]).any()
    assert str(out["first_seen"].dtype) == "datetime64[us, UTC]"


@settings(max_examples=40, deadline=None)
@given(st.lists(good_links, max_size=25, unique_by=lambda r: (r["account_id"], r["kind"],
                                                               r["value"].strip())))
def test_good_rows_are_never_quarantined(links: list[dict]) -> None:
    platform, quarantine = validate(_frames(links), extra_kinds=["device"], now=NOW)
    assert quarantine.count() == 0
    assert len(platform.links) == len(links)
    assert list(platform.links["value"]) == [r["value"].strip() for r in links]
