"""Loading folders into both stores: bad input, quarantine, idempotency, merges, injection.

Tests taking ``store`` (``tests/conftest.py``) run on a fresh DuckDB file and on the
emptied Neo4j.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import duckdb
import neo4j
import pandas as pd
import pytest

from graphinv.errors import InputError, StoreError
from graphinv.ingest.load import EXIT_CLEAN, EXIT_QUARANTINED, load_dir, read_dir
from graphinv.schema import TABLES, Platform
from graphinv.stores.base import Store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.store import Neo4jStore

KINDS = ("device",)

BASE = {
    "accounts": (
        "account_id,created_at,country,signup_path\n"
        "a1,2024-01-01T00:00:00Z,US,education\n"
        "a2,2024-01-02T00:00:00Z,DE,self_serve\n"
        "a3,2024-01-03T00:00:00Z,,\n"
    ),
    "links": (
        "account_id,kind,value,first_seen,last_seen,count\n"
        "a1,payment_method,card-1,2024-01-05T00:00:00Z,2024-02-01T00:00:00Z,3\n"
        "a2,payment_method,card-1,2024-01-06T00:00:00Z,2024-02-02T00:00:00Z,4\n"
        "a1,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,10\n"
        "a2,prompt_fingerprint,tpl-1,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,7\n"
        "a3,device,dev-9,2024-01-05T00:00:00Z,2024-01-07T12:30:00Z,1\n"
    ),
    "usage": (
        "account_id,hour,model,requests,input_tokens,output_tokens\n"
        "a1,2024-01-05T10:00:00Z,m1,10,1000,5000\n"
        "a1,2024-01-05T11:00:00Z,m1,12,1100,5100\n"
        "a2,2024-01-05T10:00:00Z,m2,3,300,900\n"
    ),
    "ips": "ip,asn,is_proxy\n203.0.113.7,64500,true\n",
}
BASE_ROWS = {"accounts": 3, "links": 5, "usage": 3, "ips": 1}


def write_folder(folder: Path, tables: dict[str, str | bytes], *, suffix: str = ".csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in tables.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / f"{name}{suffix}").write_bytes(data)
    return folder


def with_row(table: str, line: str) -> dict[str, str | bytes]:
    tables: dict[str, str | bytes] = dict(BASE)
    tables[table] = BASE[table] + line + "\n"
    return tables


def counts(store: Store) -> dict[str, int]:
    return {name: len(frame) for name, frame in store.read_platform().tables().items()}


def content_hash(store: Store) -> str:
    digest = hashlib.sha256()
    for name, frame in store.read_platform(include_labels=True).tables().items():
        ordered = frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)
        digest.update(name.encode())
        digest.update(ordered.to_csv(index=False).encode())
    return digest.hexdigest()


def graph_shape(store: Store) -> dict[str, int]:
    if isinstance(store, Neo4jStore):
        return store.graph_counts()
    return counts(store)


# -- a clean folder --------------------------------------------------------------------


def test_clean_folder_loads_everything(store: Store, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", BASE)
    report = load_dir(folder, store, extra_kinds=KINDS, progress=False,
                      quarantine_dir=tmp_path / "q")
    assert report.exit_code == EXIT_CLEAN
    assert report.rows_loaded == BASE_ROWS
    assert report.rows_quarantined == dict.fromkeys(BASE_ROWS, 0)
    assert counts(store) == BASE_ROWS
    assert not list((tmp_path / "q").glob("*.csv"))
    assert report.summary_table().row_count == len(BASE_ROWS) + 1


# -- rows that go to quarantine ----------------------------------------------------------

BAD_ROWS = [
    ("links", "a1,ip,10.0.0.1,2024-01-05,2024-01-06,abc", "count", "not an integer: 'abc'"),
    ("links", "a1,ip,10.0.0.1,yesterday,2024-01-06,1", "first_seen", "not an ISO 8601"),
    ("links", "a1,fax,555-0100,2024-01-05,2024-01-06,1", "kind", "unknown kind 'fax'"),
    ("accounts", "a1,2024-03-01T00:00:00Z,FR,", "account_id", "duplicate key of row 1"),
    ("links", "zz,ip,10.0.0.1,2024-01-05,2024-01-06,1", "account_id", "not in accounts"),
    ("usage", "zz,2024-01-05T10:00:00Z,m1,1,1,1", "account_id", "not in accounts"),
    ("links", "a1,ip,10.0.0.1,2024-01-05,2024-01-06,-5", "count", "count -5 is below 1"),
    ("links", "a1,ip,10.0.0.1,2024-01-07,2024-01-06,1", "last_seen", "before first_seen"),
    ("links", "a1,ip,10.0.0.1,2024-01-05,2999-01-06,1", "last_seen", "in the future"),
    ("links", "a1,ip,10.0.0.1,1970-01-01,2024-01-06,1", "first_seen", "before 2000-01-01"),
    ("usage", "a3,2024-01-05T10:00:00Z,m1,1,-7,1", "input_tokens", "is below 0"),
    ("usage", "a3,2024-01-05T10:17:00Z,m1,1,1,1", "hour", "not the start of an hour"),
    ("accounts", "a9,,US,", "created_at", "missing value"),
    ("ips", "198.51.100.1,64501,maybe", "is_proxy", "not a boolean"),
    ("ips", "198.51.100.2,99999999999,false", "asn", "is above 4294967295"),
]


@pytest.mark.parametrize(("table", "line", "column", "reason"), BAD_ROWS,
                         ids=[f"{t}:{r}" for t, _, _, r in BAD_ROWS])
def test_bad_row_is_quarantined_and_the_rest_loads(
    store: Store, tmp_path: Path, table: str, line: str, column: str, reason: str
) -> None:
    folder = write_folder(tmp_path / "in", with_row(table, line))
    report = load_dir(folder, store, extra_kinds=KINDS, progress=False,
                      quarantine_dir=tmp_path / "q")
    assert report.exit_code == EXIT_QUARANTINED
    assert report.rows_quarantined[table] == 1
    assert report.rows_read[table] == BASE_ROWS[table] + 1
    assert report.rows_loaded == BASE_ROWS
    assert counts(store) == BASE_ROWS
    quarantined = pd.read_csv(tmp_path / "q" / f"{table}.csv", dtype=str, keep_default_na=False)
    assert len(quarantined) == 1
    rejected = quarantined.iloc[0]
    assert rejected["source_file"] == f"{table}.csv"
    assert int(rejected["row"]) == BASE_ROWS[table] + 1
    assert rejected["column"] == column
    assert reason in rejected["reason"]
    assert ",".join(rejected[c] for c in BASE[table].splitlines()[0].split(",")) == line


def test_every_problem_of_a_row_is_reported(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "in", with_row("links", "zz,fax,v,2024-01-07,2024-01-06,-1")
    )
    _, quarantine = read_dir(folder, extra_kinds=KINDS)
    row = quarantine.rows["links"].iloc[0]
    assert row["column"] == "count,last_seen,kind,account_id"
    assert row["reason"].count(";") == 3


# -- files that are refused as a whole ---------------------------------------------------

LATIN1 = BASE["accounts"].replace("a3,", "a3-Müller,").encode("latin-1")
BAD_FILES = [
    ("missing column", {"links": "account_id,kind,value,first_seen,last_seen\n"},
     "links.csv: missing required column(s) ['count']"),
    ("unknown column", {"ips": "ip,asn,is_proxy,colour\n1.2.3.4,1,true,red\n"},
     "ips.csv: unknown column(s) ['colour']"),
    ("repeated column", {"ips": "ip,asn,asn\n1.2.3.4,1,2\n"}, "appear more than once"),
    ("empty file", {"usage": ""}, "usage.csv: empty file"),
    ("header only accounts", {"accounts": "account_id,created_at\n"}, "no accounts"),
    ("wrong encoding", {"accounts": LATIN1}, "accounts.csv: not UTF-8 text (byte 0xfc on line 4)"),
    ("wrong field count", {"usage": BASE["usage"] + "a1,2024-01-05T12:00:00Z,m1,1,1,1,9\n"},
     "usage.csv: malformed CSV"),
    ("binary parquet", {}, "ips.parquet: not a readable Parquet file"),
    ("missing table", {}, "required table(s) missing: usage.csv"),
]


@pytest.mark.parametrize(("case", "tables", "message"), BAD_FILES,
                         ids=[c for c, _, _ in BAD_FILES])
def test_unreadable_file_is_refused_whole_and_nothing_loads(
    store: Store, tmp_path: Path, case: str, tables: dict[str, str | bytes], message: str
) -> None:
    folder = write_folder(tmp_path / "in", {**BASE, **tables})
    if case == "binary parquet":
        (folder / "ips.csv").unlink()
        (folder / "ips.parquet").write_bytes(b"PAR1 this is not parquet")
    if case == "missing table":
        (folder / "usage.csv").unlink()
    with pytest.raises(InputError, match=re.escape(message)):
        load_dir(folder, store, extra_kinds=KINDS, progress=False, quarantine_dir=tmp_path / "q")
    assert counts(store)["accounts"] == 0


def test_two_files_for_one_table_are_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", BASE)
    (folder / "ips.csv.gz").write_bytes(gzip.compress(BASE["ips"].encode()))
    with pytest.raises(InputError, match=re.escape("both ips.csv and ips.csv.gz")):
        read_dir(folder)


def test_broken_gzip_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", BASE)
    (folder / "usage.csv").unlink()
    (folder / "usage.csv.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    with pytest.raises(InputError, match=re.escape("usage.csv.gz: cannot be read")):
        read_dir(folder, extra_kinds=KINDS)


# -- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_csv_gzip_and_parquet_load_the_same_rows(
    store: Store, tmp_path: Path, suffix: str
) -> None:
    reference, _ = read_dir(write_folder(tmp_path / "csv", BASE), extra_kinds=KINDS)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, frame in reference.tables().items():
        if suffix == ".parquet":
            frame.to_parquet(folder / f"{name}.parquet")
        else:
            frame.to_csv(folder / f"{name}{suffix}", index=False)
    report = load_dir(folder, store, extra_kinds=KINDS, progress=False,
                      quarantine_dir=tmp_path / "q")
    assert report.exit_code == EXIT_CLEAN
    loaded = store.read_platform()
    for name, frame in reference.tables().items():
        expected = frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)
        pd.testing.assert_frame_equal(getattr(loaded, name), expected)


def test_parquet_quarantine_names_rows_and_shows_their_values(tmp_path: Path) -> None:
    """Parquet columns of their type are checked in Arrow; refused rows (here far from the
    first ones) still come out with their row, column, reason and raw values."""
    good = [("a1", "ip", f"10.0.{i // 250}.{i % 250}", 3) for i in range(600)]
    bad = [("zz", "ip", "10.9.9.9", 2), ("a1", "fax", "555", 4), ("a1", "ip", "10.0.0.1", 0),
           ("a1", "ip", "10.0.0.0", 5)]
    rows = good + bad
    stamp = pd.Timestamp("2024-01-05", tz="UTC")
    links = pd.DataFrame({
        "account_id": [r[0] for r in rows], "kind": [r[1] for r in rows],
        "value": [r[2] for r in rows], "first_seen": stamp, "last_seen": stamp,
        "count": [r[3] for r in rows],
    })
    folder = tmp_path / "in"
    folder.mkdir()
    pd.DataFrame({"account_id": ["a1"], "created_at": [stamp]}).to_parquet(
        folder / "accounts.parquet")
    links.to_parquet(folder / "links.parquet")
    pd.DataFrame(columns=list(TABLES["usage"].column_names)).to_csv(
        folder / "usage.csv", index=False)
    _, quarantine = read_dir(folder)
    refused = quarantine.rows["links"]
    assert refused["row"].tolist() == [601, 602, 603, 604]
    assert refused["column"].tolist() == ["account_id", "kind", "count", "account_id,kind,value"]
    assert refused["reason"].tolist() == [
        "account_id not in accounts",
        "unknown kind 'fax' (declare new kinds with extra_kinds / --kind)",
        "count 0 is below 1",
        "duplicate key of row 1",
    ]
    assert refused["value"].tolist() == ["10.9.9.9", "555", "10.0.0.1", "10.0.0.0"]
    assert refused["first_seen"].tolist() == ["2024-01-05 00:00:00+00:00"] * 4


# -- idempotency and merging -------------------------------------------------------------


def test_loading_the_same_folder_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", {**BASE, "labels": "account_id,ring_id,kind\n"
                                            "a1,r1,extraction\n"})
    load_dir(folder, store, extra_kinds=KINDS, progress=False, quarantine_dir=tmp_path / "q")
    shape, digest = graph_shape(store), content_hash(store)
    load_dir(folder, store, extra_kinds=KINDS, progress=False, quarantine_dir=tmp_path / "q")
    assert graph_shape(store) == shape
    assert content_hash(store) == digest


def test_newer_folder_adds_and_merges(store: Store, tmp_path: Path) -> None:
    load_dir(write_folder(tmp_path / "old", BASE), store, extra_kinds=KINDS, progress=False,
             quarantine_dir=tmp_path / "q")
    newer = {
        "accounts": BASE["accounts"] + "a4,2024-02-01T00:00:00Z,FR,startup_program\n",
        "links": (
            "account_id,kind,value,first_seen,last_seen,count\n"
            "a1,payment_method,card-1,2024-01-02T00:00:00Z,2024-03-01T00:00:00Z,9\n"
            "a1,ip,203.0.113.7,2024-01-06T00:00:00Z,2024-01-08T00:00:00Z,2\n"
            "a4,payment_method,card-1,2024-02-01T00:00:00Z,2024-02-02T00:00:00Z,1\n"
        ),
        "usage": (
            "account_id,hour,model,requests,input_tokens,output_tokens\n"
            "a1,2024-01-05T11:00:00Z,m1,99,1,1\n"
            "a1,2024-01-05T12:00:00Z,m1,5,5,5\n"
        ),
    }
    load_dir(write_folder(tmp_path / "new", newer), store, progress=False,
             quarantine_dir=tmp_path / "q")
    platform = store.read_platform()
    assert len(platform.accounts) == 4
    links = platform.links.set_index(["account_id", "kind", "value"])
    card = links.loc[("a1", "payment_method", "card-1")]
    assert card["first_seen"] == pd.Timestamp("2024-01-02", tz="UTC")  # min
    assert card["last_seen"] == pd.Timestamp("2024-03-01", tz="UTC")  # max
    assert card["count"] == 9  # max of cumulative counters
    ip = links.loc[("a1", "ip", "203.0.113.7")]
    assert (ip["first_seen"], ip["last_seen"], ip["count"]) == (
        pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-09", tz="UTC"), 10
    )
    assert len(platform.links) == 6
    usage = platform.usage.set_index(["account_id", "hour", "model"])["requests"]
    assert usage[("a1", pd.Timestamp("2024-01-05T10:00", tz="UTC"), "m1")] == 10  # kept
    assert usage[("a1", pd.Timestamp("2024-01-05T11:00", tz="UTC"), "m1")] == 99  # newer wins
    assert len(platform.usage) == 4


# -- parameters, never query text --------------------------------------------------------

HOSTILE = "x'}) DETACH DELETE n //"
HOSTILE_SQL = "x'); DROP TABLE accounts; --"


def test_hostile_values_are_stored_as_text_and_delete_nothing(
    store: Store, tmp_path: Path
) -> None:
    tables = dict(BASE)
    tables["accounts"] = BASE["accounts"] + f'"{HOSTILE}",2024-01-04T00:00:00Z,"{HOSTILE_SQL}",\n'
    tables["links"] = (
        BASE["links"]
        + f'"{HOSTILE}",ip,"{HOSTILE}",2024-01-05T00:00:00Z,2024-01-06T00:00:00Z,1\n'
        + f'a1,device,"{HOSTILE_SQL}",2024-01-05T00:00:00Z,2024-01-06T00:00:00Z,1\n'
    )
    report = load_dir(write_folder(tmp_path / "in", tables), store, extra_kinds=KINDS,
                      progress=False, quarantine_dir=tmp_path / "q")
    assert report.exit_code == EXIT_CLEAN
    platform = store.read_platform()
    assert len(platform.accounts) == 4
    assert len(platform.links) == 7
    assert HOSTILE in set(platform.accounts["account_id"])
    assert HOSTILE_SQL in set(platform.accounts["country"])
    assert {HOSTILE, HOSTILE_SQL} <= set(platform.links["value"])
    text = (
        "SELECT count(*) AS n FROM accounts WHERE account_id = $v"
        if store.backend == "embedded"
        else "MATCH (a:Account {id: $v}) RETURN count(a) AS n"
    )
    assert store.query(text, {"v": HOSTILE})["n"].item() == 1


# -- pseudonymisation --------------------------------------------------------------------


def test_pseudonymised_values_never_reach_the_store(store: Store, tmp_path: Path) -> None:
    key = b"a-test-key-of-32-bytes-length!!!"
    report = load_dir(write_folder(tmp_path / "in", BASE), store, extra_kinds=KINDS,
                      pseudonymise_key=key, progress=False, quarantine_dir=tmp_path / "q")
    assert report.pseudonymised
    platform = store.read_platform()
    assert platform.ips is not None
    values = set(platform.links["value"])
    assert not {"card-1", "203.0.113.7", "tpl-1", "dev-9"} & values
    assert all(len(v) == 64 for v in values)
    ip_link = platform.links.loc[platform.links["kind"] == "ip", "value"].item()
    assert platform.ips["ip"].item() == ip_link  # same pseudonym in links and attributes
    assert platform.links.loc[platform.links["kind"] == "payment_method", "value"].nunique() == 1


# -- the Neo4j load path -----------------------------------------------------------------


@pytest.mark.neo4j
def test_links_of_accounts_loaded_earlier_find_them_and_unknown_ones_are_refused(
    neo4j_driver: neo4j.Driver, tmp_path: Path
) -> None:
    store = Neo4jStore(neo4j_driver, batch_size=2, writers=2)
    load_dir(write_folder(tmp_path / "old", BASE), store, extra_kinds=KINDS, progress=False,
             quarantine_dir=tmp_path / "q")
    platform = store.read_platform()
    later = platform.links.iloc[:1].assign(value="card-2")
    no_accounts = platform.accounts.iloc[:0]
    stats = store.load(Platform(no_accounts, later, platform.usage.iloc[:0]), progress=False)
    assert stats.relationships == 1
    assert len(store.read_platform().links) == len(platform.links) + 1
    ghost = later.assign(account_id="ghost")
    with pytest.raises(StoreError, match="neither in the accounts table nor in the graph"):
        store.load(Platform(no_accounts, ghost, platform.usage.iloc[:0]), progress=False)


@pytest.mark.neo4j
def test_parallel_first_load_and_reload_match_the_embedded_store(
    neo4j_driver: neo4j.Driver, tmp_path: Path
) -> None:
    # One-row batches on two sessions exercise the parallel CREATE path, then the MERGE one.
    folder = write_folder(tmp_path / "in", BASE)
    quarantine = tmp_path / "q"
    with EmbeddedStore(tmp_path / "reference.duckdb") as reference:
        load_dir(folder, reference, extra_kinds=KINDS, progress=False, quarantine_dir=quarantine)
        expected = content_hash(reference)
    store = Neo4jStore(neo4j_driver, batch_size=1, writers=2)
    load_dir(folder, store, extra_kinds=KINDS, progress=False, quarantine_dir=quarantine)
    shape = graph_shape(store)
    assert content_hash(store) == expected
    load_dir(folder, store, extra_kinds=KINDS, progress=False, quarantine_dir=quarantine)
    assert (graph_shape(store), content_hash(store)) == (shape, expected)



def _stored_as_read(path: Path) -> dict[str, bool]:
    """Per input table with rows: does a plain scan give the rows in key order?"""
    same = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for name, spec in TABLES.items():
            order = ", ".join(f'"{c}"' for c in spec.key)
            plain = con.sql(f'SELECT * FROM "{name}"').fetchall()
            if plain:
                same[name] = plain == con.sql(f'SELECT * FROM "{name}" ORDER BY {order}').fetchall()
    return same


def test_rows_are_stored_in_key_order_so_reads_need_no_sort(tmp_path: Path) -> None:
    """A first load and a merging load both leave every table in key order, and record it;
    reads then scan as stored and return what a sorted read returns."""
    path = tmp_path / "g.duckdb"
    backwards = {name: "\n".join([text.splitlines()[0], *reversed(text.splitlines()[1:])]) + "\n"
                 for name, text in BASE.items()}
    with EmbeddedStore(path) as store:
        load_dir(write_folder(tmp_path / "day1", backwards), store, extra_kinds=KINDS,
                 progress=False, quarantine_dir=tmp_path / "q")
        assert store.read_meta()["rows_in_key_order"] == store.last_load().load_id
    assert set(_stored_as_read(path).values()) == {True}
    later = with_row("links", "a3,ip,198.51.100.1,2024-01-05T00:00:00Z,2024-01-06T00:00:00Z,2")
    later["accounts"] = BASE["accounts"] + "a0,2024-01-04T00:00:00Z,FR,education\n"
    with EmbeddedStore(path) as store:
        load_dir(write_folder(tmp_path / "day2", later), store, extra_kinds=KINDS,
                 progress=False, quarantine_dir=tmp_path / "q")
        links = store.read_platform().links
    assert set(_stored_as_read(path).values()) == {True}
    keys = list(zip(links["account_id"], links["kind"], links["value"], strict=True))
    assert keys == sorted(keys) and len(keys) == 6


def test_a_file_without_the_key_order_record_is_read_sorted_and_sorted_by_its_next_load(
    tmp_path: Path,
) -> None:
    """An older graphinv stored rows in any order: reads sort them, and the next load
    (which brings no usage) rewrites every table in key order before recording it."""
    path = tmp_path / "g.duckdb"
    with EmbeddedStore(path) as store:
        load_dir(write_folder(tmp_path / "day1", BASE), store, extra_kinds=KINDS,
                 progress=False, quarantine_dir=tmp_path / "q")
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM graphinv_meta WHERE key = 'rows_in_key_order'")
        con.execute("CREATE TEMP TABLE backwards AS SELECT * FROM usage")
        con.execute("DELETE FROM usage")
        con.execute("INSERT INTO usage SELECT * FROM backwards ORDER BY hour DESC, "
                    "account_id DESC")
    assert _stored_as_read(path)["usage"] is False
    with EmbeddedStore(path) as store:
        usage = store.read_platform().usage
        keys = list(zip(usage["account_id"], usage["hour"], strict=True))
        assert keys == sorted(keys)
        no_usage = dict(BASE, usage=BASE["usage"].splitlines()[0] + "\n")
        load_dir(write_folder(tmp_path / "day2", no_usage), store, extra_kinds=KINDS,
                 progress=False, quarantine_dir=tmp_path / "q")
        assert store.read_meta()["rows_in_key_order"] == store.last_load().load_id
    assert set(_stored_as_read(path).values()) == {True}
