"""Hostile input and unsafe defaults: each test is one finding of the security audit.

Pseudonymisation fails closed and a store remembers how it was pseudonymised; exported
CSV cells cannot run as formulas; data printed to the terminal cannot inject markup or
escape sequences; output files are owner-only and never written through planted links;
an explicit ``--db`` beats ``NEO4J_URI``; values have one length limit for both stores;
hostile files (huge headers, decompression bombs, endless lines, a blank first line, a
folder named like a table) fail fast with a clear error.
"""

from __future__ import annotations

import gzip
import importlib
import io
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.context import Context
from graphinv.errors import ConfigError, InputError, StoreError
from graphinv.ingest.files import MiB, ReadLimits
from graphinv.ingest.load import PSEUDONYMISATION, load_dir, read_dir, read_table
from graphinv.ingest.pseudonymise import ENV_KEY, key_id, pseudonym
from graphinv.output import UnsafePathError, csv_text, neutralise_cells
from graphinv.schema import MAX_COLUMNS, MAX_VALUE_CHARS, TABLES, check_columns
from graphinv.stores.base import Store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.store import Neo4jStore
from graphinv.synth import generate, write_platform

ROOT = Path(__file__).resolve().parents[1]
KEY = "a-secret-key-of-32-bytes-length!"
OTHER_KEY = "another-secret-key-of-32-bytes!!"

TABLES_TEXT = {
    "accounts": (
        "account_id,created_at\n"
        "a1,2024-01-01T00:00:00Z\n"
        "a2,2024-01-02T00:00:00Z\n"
    ),
    "links": (
        "account_id,kind,value,first_seen,last_seen,count\n"
        "a1,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,10\n"
        "a2,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,3\n"
        # Refused (count 0): its raw IP must not reach the quarantine file when pseudonymised.
        "a2,ip,198.51.100.99,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,0\n"
    ),
    "usage": "account_id,hour,model,requests,input_tokens,output_tokens\n",
    # Refused (asn not a number): its raw IP must not reach quarantine either.
    "ips": "ip,asn,prefix\n203.0.113.7,64500,203.0.113.0/24\n198.51.100.99,x,198.51.100.0/24\n",
}


@pytest.fixture(params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each test runs once on a fresh DuckDB file and once on the emptied Neo4j."""
    if request.param == "embedded":
        opened: Store = EmbeddedStore(tmp_path / "graphinv.duckdb")
    else:
        driver: neo4j.Driver = request.getfixturevalue("neo4j_driver")
        opened = Neo4jStore(driver)
    yield opened
    opened.close()


def write_folder(folder: Path, tables: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in tables.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / f"{name}.csv").write_bytes(data)
    return folder


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


# -- 1. pseudonymisation fails closed and is recorded ------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_pseudonymise_without_a_key_refuses_to_load(tmp_path: Path, value: str | None) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    db = tmp_path / "g.duckdb"
    code, output = run("--db", str(db), "--quiet", "load", str(folder), "--pseudonymise",
                       env={ENV_KEY: value})
    assert code == 1, output
    assert f"Error: pseudonymisation was asked for but {ENV_KEY} is" in output
    assert "Traceback" not in output
    assert not db.exists()  # refused before the store was even opened


def test_store_records_its_key_id_and_refuses_a_mixed_load(store: Store, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    options = {"progress": False, "quarantine_dir": tmp_path / "q"}
    load_dir(folder, store, pseudonymise_key=KEY.encode(), **options)
    meta = store.read_meta()
    assert meta[PSEUDONYMISATION] == f"hmac-sha256 key {key_id(KEY.encode())}"
    assert KEY not in str(meta)
    loaded = store.read_platform()
    for key, words in ((None, "this load would add raw identifiers"),
                       (OTHER_KEY.encode(), key_id(OTHER_KEY.encode()))):
        with pytest.raises(StoreError, match=re.escape(words)):
            load_dir(folder, store, pseudonymise_key=key, **options)
    pd.testing.assert_frame_equal(store.read_platform().links, loaded.links)
    # The same key again is fine (a daily load).
    assert load_dir(folder, store, pseudonymise_key=KEY.encode(), **options).exit_code == 3


def test_a_raw_store_refuses_pseudonymised_values(store: Store, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    load_dir(folder, store, progress=False, quarantine_dir=tmp_path / "q")
    assert store.read_meta()[PSEUDONYMISATION] == "raw"
    with pytest.raises(StoreError, match="holds raw identifiers"):
        load_dir(folder, store, pseudonymise_key=KEY.encode(), progress=False,
                 quarantine_dir=tmp_path / "q")
    assert set(store.read_platform().links["value"]) == {"203.0.113.7"}


def test_quarantine_files_are_pseudonymised_too(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    with EmbeddedStore(tmp_path / "g.duckdb") as store:
        report = load_dir(folder, store, pseudonymise_key=KEY.encode(), progress=False,
                          quarantine_dir=tmp_path / "q")
    assert report.rows_quarantined == {"accounts": 0, "links": 1, "usage": 0, "ips": 1}
    text = "".join(p.read_text() for p in report.quarantine_files)
    for raw in ("198.51.100.99", "198.51.100.0/24", "203.0.113"):
        assert raw not in text
    links = pd.read_csv(tmp_path / "q" / "links.csv", dtype=str)
    assert links["value"].item() == pseudonym("198.51.100.99", kind="ip", key=KEY.encode())
    ips = pd.read_csv(tmp_path / "q" / "ips.csv", dtype=str)
    assert ips["prefix"].item() == pseudonym("198.51.100.0/24", kind="ip_prefix",
                                             key=KEY.encode())


# -- 3. formula injection ---------------------------------------------------------------


HOSTILE_IDS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "@SUM(1+1)*cmd|' /C calc'!A0",
               "+1+cmd", "-2+3", "\tTAB", "\rCR"]


def test_exported_cells_cannot_run_as_formulas() -> None:
    frame = pd.DataFrame({"account_id": [*HOSTILE_IDS, "-5", "acct_1"], "n": range(8)})
    cells = pd.read_csv(io.StringIO(csv_text(frame)), dtype=str,
                        keep_default_na=False)["account_id"]
    assert all(c.startswith("'") for c in cells[: len(HOSTILE_IDS)])
    assert cells.tolist()[-2:] == ["-5", "acct_1"]  # a plain number runs nothing
    assert neutralise_cells(frame)["n"].tolist() == list(range(8))


def test_quarantine_csv_neutralises_formulas(tmp_path: Path) -> None:
    links = TABLES_TEXT["links"] + "".join(
        f'"{v.replace(chr(34), chr(34) * 2)}",ip,1.2.3.4,2024-01-05T00:00:00Z,'
        "2024-01-09T00:00:00Z,1\n"
        for v in HOSTILE_IDS
    )
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT, "links": links})
    with EmbeddedStore(tmp_path / "g.duckdb") as store:
        load_dir(folder, store, progress=False, quarantine_dir=tmp_path / "q")
    rows = pd.read_csv(tmp_path / "q" / "links.csv", dtype=str, keep_default_na=False)
    hostile = rows.loc[rows["reason"] == "account_id not in accounts", "account_id"]
    assert hostile.tolist() == ["'" + v for v in HOSTILE_IDS]


# -- 3, 4, 5. a platform whose account ids are hostile -----------------------------------

MARKUP_IDS = ("[/x]", "[link=http://evil.example]", "\x1b]8;;http://evil.example\x07", "=cmd|")


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A swept embedded store whose account ids carry markup, escapes and formulas."""
    folder = tmp_path_factory.mktemp("hostile")
    platform = generate(preset="small", seed=7, n_accounts=1500)
    ids = platform.accounts["account_id"]
    renamed = {a: MARKUP_IDS[i % len(MARKUP_IDS)] + a + ("[/link]" if i % 4 == 1 else "")
               for i, a in enumerate(ids)}
    tables = {}
    for name, frame in platform.tables().items():
        if "account_id" in frame:
            frame = frame.assign(account_id=frame["account_id"].map(renamed))
        tables[name] = frame
    write_platform(type(platform)(**tables), folder / "in", fmt="csv")
    db = folder / "g.duckdb"
    code, output = run("--db", str(db), "--quiet", "load", str(folder / "in"))
    assert code == 0, output
    with Context(db_path=db, use_env=False, progress=False) as ctx:
        ctx.sweep()
        top = str(ctx.rings()["ring_id"].iloc[0])
    # Closed first: DuckDB refuses the commands' read-only open beside a writable one.
    yield db, top


@pytest.fixture
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide consoles, so table cells are not folded across lines."""
    for name in ("graphinv.cli.investigate", "graphinv.cli.main"):
        console = importlib.import_module(name).console
        monkeypatch.setattr(console, "_width", 1000)


@pytest.mark.usefixtures("wide_terminal")
def test_ring_prints_hostile_ids_literally(hostile_store: tuple[Path, str]) -> None:
    db, ring_id = hostile_store
    code, output = run("--db", str(db), "--quiet", "ring", ring_id, "--limit", "1000")
    assert code == 0, output  # `[/x]` used to raise MarkupError
    assert "[/x]" in output
    assert "[link=http://evil.example]acct_" in output  # shown, not made a hyperlink
    assert "[/link]" in output
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b]8;;http://evil.example\\x07" in output  # visible, not executed


def test_rings_members_listing_and_csv_are_safe(hostile_store: tuple[Path, str]) -> None:
    db, _ = hostile_store
    code, listing = run("--db", str(db), "--quiet", "rings", "--members")
    assert code == 0, listing
    assert "\x1b" not in listing and "[link=http://evil.example]" in listing
    result = CliRunner().invoke(cli, ["--db", str(db), "rings", "--members", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("store: embedded DuckDB file")  # not in the CSV
    rows = pd.read_csv(io.StringIO(result.stdout), dtype=str)
    assert rows["account_id"].str.startswith("=cmd|").sum() == 0
    assert rows["account_id"].str.startswith("'=cmd|").sum() > 0


def test_case_exports_are_neutralised_and_owner_only(
    hostile_store: tuple[Path, str], tmp_path: Path
) -> None:
    db, ring_id = hostile_store
    out = tmp_path / "exports"
    code, output = run("--db", str(db), "--quiet", "case", ring_id,
                       "--csv", str(out / "accounts.csv"), "--html", str(out / "case.html"))
    assert code == 0, output
    rows = pd.read_csv(out / "accounts.csv", dtype=str)
    assert not rows["account_id"].str.startswith(("=", "@", "+", "\t", "\r")).any()
    assert rows["account_id"].str.startswith("'=cmd|").any()
    for path in (out / "accounts.csv", out / "case.html"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


@pytest.mark.usefixtures("wide_terminal")
def test_summary_and_error_lines_print_markup_literally(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "[/x][link=https:evil.example]in", TABLES_TEXT)
    code, output = run("--db", str(tmp_path / "g.duckdb"), "--quiet", "load", str(folder))
    assert code == 3, output  # one quarantined row each in links and ips
    assert "[/x][link=https:evil.example]in" in output
    bad = write_folder(tmp_path / "bad", {**TABLES_TEXT, "ips": "ip,[/x]\x1b[2J\n1.2.3.4,1\n"})
    code, output = run("--db", str(tmp_path / "g.duckdb"), "--quiet", "load", str(bad))
    assert code == 1 and "MarkupError" not in output and "Traceback" not in output
    assert "unknown column(s) ['[/x]\\x1b[2J']" in output.replace("\\\\", "\\")
    assert "\x1b" not in output


# -- 5. symbolic links and permissions ---------------------------------------------------


def test_planted_quarantine_link_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    (quarantine / "links.csv").symlink_to(victim)
    with EmbeddedStore(tmp_path / "g.duckdb") as store, pytest.raises(
        UnsafePathError, match=r"links\.csv is a symbolic link"
    ):
        load_dir(folder, store, progress=False, quarantine_dir=quarantine)
    assert victim.read_text() == "precious\n"


def test_store_and_quarantine_are_owner_only(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    db = tmp_path / "store" / "g.duckdb"
    db.parent.mkdir()
    code, output = run("--db", str(db), "--quiet", "load", str(folder))
    assert code == 3, output
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    quarantine = db.parent / "quarantine"
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    for name in ("links.csv", "ips.csv"):
        assert stat.S_IMODE((quarantine / name).stat().st_mode) == 0o600


# -- 6. an explicit --db beats NEO4J_URI -------------------------------------------------


def test_explicit_db_wins_over_neo4j_uri_and_the_store_is_named(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    db = tmp_path / "g.duckdb"
    nowhere = {"NEO4J_URI": "bolt://127.0.0.1:9"}  # nothing answers there
    code, output = run("--db", str(db), "--quiet", "load", str(folder), env=nowhere)
    assert code == 3, output
    assert f"store: embedded DuckDB file {db}" in output
    with EmbeddedStore(db, read_only=True) as store:
        assert len(store.read_platform().accounts) == 2
    # Without --db the environment chooses, and says so.
    code, output = run("--quiet", "rings", env=nowhere)
    assert code == 1
    assert "store: Neo4j at bolt://127.0.0.1:9 (from NEO4J_URI)" in output
    code, output = run("--db", str(db), "--neo4j", "bolt://127.0.0.1:9", "rings")
    assert code == 2 and "--db and --neo4j name two different stores" in output


# -- 10. one value-length limit ----------------------------------------------------------


def test_overlong_values_are_quarantined_on_both_stores(store: Store, tmp_path: Path) -> None:
    long_value = "v" * 100_000
    links = TABLES_TEXT["links"] + (
        f"a1,payment_method,{long_value},2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,1\n"
        f"a1,payment_method,{'w' * MAX_VALUE_CHARS},2024-01-05T00:00:00Z,"
        "2024-01-09T00:00:00Z,1\n"
    )
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT, "links": links})
    report = load_dir(folder, store, progress=False, quarantine_dir=tmp_path / "q")
    assert report.rows_quarantined["links"] == 2  # count 0 and the long value
    rows = pd.read_csv(tmp_path / "q" / "links.csv", dtype=str)
    reason = rows.loc[rows["value"].str.len() == 100_000, "reason"].item()
    assert reason == f"value too long: 100,000 characters, at most {MAX_VALUE_CHARS:,}"
    # A value at the limit loads, on Neo4j too (its index key limit is 8,167 bytes).
    assert "w" * MAX_VALUE_CHARS in set(store.read_platform().links["value"])


# -- 11-14. hostile files ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_million_column_header_fails_fast(tmp_path: Path) -> None:
    wide = ",".join(f"c{i}" for i in range(1_000_000)) + "\n"
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT, "accounts": wide})
    with pytest.raises(InputError, match=r"accounts.csv: line 1 is longer than 1,048,576 bytes"):
        read_dir(folder)
    # Under the line cap, the column cap answers; and the check itself is linear.
    narrow = ",".join(["a"] * 100_000) + "\n"
    write_folder(folder, {"accounts": narrow})
    with pytest.raises(InputError, match=f"100,000 columns in the header, more than the "
                                         f"{MAX_COLUMNS}"):
        read_dir(folder)
    with pytest.raises(InputError, match="1,000,000 columns"):
        check_columns(TABLES["accounts"], [f"c{i}" for i in range(1_000_000)], "x.csv")


def test_a_gzip_bomb_is_refused_while_streaming(tmp_path: Path) -> None:
    row = b"a1,ip,203.0.113.7,2024-01-05T00:00:00Z,2024-01-09T00:00:00Z,10\n"
    header = TABLES_TEXT["links"].split("\n", 1)[0].encode() + b"\n"
    bomb = gzip.compress(header + row * (64 * MiB // len(row)), compresslevel=9)
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    (folder / "links.csv").unlink()
    (folder / "links.csv.gz").write_bytes(bomb)
    limits = ReadLimits(inflation_floor=4 * MiB)
    with pytest.raises(InputError, match=r"links.csv.gz: inflates more than 20-fold .* "
                                         r"refused as a decompression bomb"):
        read_table(folder / "links.csv.gz", "links", limits=limits)
    with pytest.raises(InputError, match=r"links.csv.gz: more than 8,388,608 bytes of text"):
        read_table(folder / "links.csv.gz", "links",
                   limits=ReadLimits(max_text_bytes=8 * MiB, max_inflation=10**6))


def test_an_endless_line_names_file_and_line(tmp_path: Path) -> None:
    text = TABLES_TEXT["accounts"] + "a3," + "x" * (2 * MiB) + "\n"
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT, "accounts": text})
    with pytest.raises(InputError, match=r"accounts.csv: line 4 is longer than 1,048,576"):
        read_dir(folder)


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_streaming_block_size_changes_nothing(tmp_path: Path, block: int) -> None:
    text = TABLES_TEXT["accounts"] + "a3-Müller,2024-01-03T00:00:00Z\n"
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT, "accounts": "\ufeff" + text})
    small = ReadLimits(block_bytes=block, max_line_bytes=64)
    frame = read_table(folder / "accounts.csv", "accounts", limits=small)
    assert frame["account_id"].tolist() == ["a1", "a2", "a3-Müller"]
    pd.testing.assert_frame_equal(frame, read_table(folder / "accounts.csv", "accounts"))
    latin = text.replace("Müller", "M\xfcller").encode("latin-1")
    (folder / "accounts.csv").write_bytes(latin)
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xfc on line 4\)"):
        read_table(folder / "accounts.csv", "accounts", limits=small)
    (folder / "accounts.csv").write_bytes(b"account_id,created_at\n" + b"y" * 70 + b"\n")
    with pytest.raises(InputError, match="line 2 is longer than 64 bytes"):
        read_table(folder / "accounts.csv", "accounts", limits=small)


def test_blank_first_line_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", {**TABLES_TEXT,
                                            "accounts": "\n" + TABLES_TEXT["accounts"]})
    with pytest.raises(InputError, match=r"accounts\.csv: line 1 is blank; the first line must "
                                         r"be the header"):
        read_dir(folder)


def test_a_folder_named_like_a_table_says_what_it_is(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "in", TABLES_TEXT)
    (folder / "accounts.csv").unlink()
    (folder / "accounts.csv").mkdir()
    with pytest.raises(InputError, match=r"accounts\.csv is a folder; the accounts table must be "
                                         r"a \.csv file"):
        read_dir(folder)


# -- 15. dependencies --------------------------------------------------------------------


def test_dependencies_have_tested_ranges_and_a_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"],
                *(d for group in project["optional-dependencies"].values() for d in group)]
    unbounded = [d for d in declared if "<" not in d]
    assert not unbounded, f"no upper bound: {unbounded}"
    for lock, wanted in (("requirements-lock.txt", project["dependencies"]),
                         ("requirements-dev-lock.txt", declared)):
        pinned = {
            line.split("==")[0].strip().lower().replace("_", "-")
            for line in (ROOT / lock).read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")
        }
        names = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in wanted}
        assert names <= pinned, f"{lock} misses {sorted(names - pinned)}"


def test_config_error_is_what_a_missing_key_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphinv.ingest.pseudonymise import key_from_env

    monkeypatch.delenv(ENV_KEY, raising=False)
    with pytest.raises(ConfigError, match="is unset"):
        key_from_env()
    monkeypatch.setenv(ENV_KEY, KEY)
    assert key_from_env() == KEY.encode()
