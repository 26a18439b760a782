"""The input contract: which tables a platform export holds, and the columns of each.

One generic ``links`` table carries every identifier an account uses (card, IP, prompt
fingerprint, device, …), so a new identifier kind is a configuration change, not a code
change. Timestamps are UTC. The synthetic generator writes exactly these tables and the
loader validates against them.

Examples
--------
>>> from graphinv.schema import TABLES
>>> [c.name for c in TABLES["links"].columns]
['account_id', 'kind', 'value', 'first_seen', 'last_seen', 'count']
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graphinv.errors import ConfigError, InputError
from graphinv.output import private_dir, write_csv

ColumnType = Literal["string", "timestamp", "int", "float", "bool"]

# Kinds with their own node label and relationship type in Neo4j; any other kind declared
# in config becomes (:Identifier {kind}) through -[:USES]->.
CORE_LINK_KINDS = ("payment_method", "ip", "prompt_fingerprint")

# How a ring of one sweep relates to the sweep before (lineage; stored with every ring).
STATUSES = ("new", "continuing", "grown", "shrunk", "split", "merged", "respawned")


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    type: ColumnType
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One input table: its columns, the columns that identify a row, and whether it must exist."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    required: bool = True
    description: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            (
                Column("account_id", "string", description="unique account id"),
                Column("created_at", "timestamp", description="sign-up time, UTC"),
                Column("email_domain", "string", False),
                Column("country", "string", False, "ISO 3166-1 alpha-2"),
                Column("org_id", "string", False, "organisation the key belongs to"),
                Column(
                    "signup_path",
                    "string",
                    False,
                    "self_serve, education, startup_program, research_access, enterprise, …",
                ),
                Column("verification_tier", "string", False),
                Column("status", "string", False, "active, suspended, banned, …"),
            ),
            key=("account_id",),
            description="one row per account (API key holder)",
        ),
        TableSpec(
            "links",
            (
                Column("account_id", "string"),
                Column("kind", "string", description="payment_method, ip, prompt_fingerprint, …"),
                Column("value", "string", description="the identifier (card fingerprint, IP, …)"),
                Column("first_seen", "timestamp"),
                Column("last_seen", "timestamp"),
                Column("count", "int", description="times seen between first and last"),
            ),
            key=("account_id", "kind", "value"),
            description="account uses identifier",
        ),
        TableSpec(
            "usage",
            (
                Column("account_id", "string"),
                Column("hour", "timestamp", description="start of the hour, UTC"),
                Column("model", "string"),
                Column("requests", "int"),
                Column("input_tokens", "int"),
                Column("output_tokens", "int"),
            ),
            key=("account_id", "hour", "model"),
            description="hourly traffic aggregates; only active hours",
        ),
        TableSpec(
            "ips",
            (
                Column("ip", "string"),
                Column("asn", "int", False),
                Column("prefix", "string", False),
                Column("is_datacenter", "bool", False),
                Column("is_proxy", "bool", False),
                Column("country", "string", False),
            ),
            key=("ip",),
            required=False,
            description="attributes of IP values in links",
        ),
        TableSpec(
            "payment_methods",
            (
                Column("fingerprint", "string"),
                Column("type", "string", False, "card, paypal, …"),
                Column("bin", "string", False, "first 6 digits of a card"),
                Column("issuer_country", "string", False),
                Column("prepaid", "bool", False),
            ),
            key=("fingerprint",),
            required=False,
            description="attributes of payment_method values in links",
        ),
        TableSpec(
            "prompt_fingerprints",
            (
                Column("fingerprint", "string"),
                Column("category", "string", False, "coding, math, agentic, chat, …"),
                Column("elicits_reasoning", "bool", False),
                Column("template_tokens", "int", False),
            ),
            key=("fingerprint",),
            required=False,
            description="attributes of prompt_fingerprint values in links",
        ),
        TableSpec(
            "labels",
            (
                Column("account_id", "string"),
                Column("ring_id", "string", False, "true ring / benign structure id; empty: none"),
                Column(
                    "kind",
                    "string",
                    description="extraction, card_testing, free_tier_farming, household, …",
                ),
                Column("campaign_id", "string", False),
                Column(
                    "traits",
                    "string",
                    False,
                    "semicolon-separated traps the account sits in: cgnat, vpn, office_nat, "
                    "university_nat, camouflage, …",
                ),
            ),
            key=("account_id",),
            required=False,
            description="ground truth or past enforcement; never read by the detector",
        ),
    )
}


@dataclass(frozen=True)
class Platform:
    """A platform's tables in memory, as pandas DataFrames with the columns of ``TABLES``.

    Timestamps are tz-aware UTC, ids are strings. Optional tables are None when absent.
    """

    accounts: pd.DataFrame
    links: pd.DataFrame
    usage: pd.DataFrame
    ips: pd.DataFrame | None = None
    payment_methods: pd.DataFrame | None = None
    prompt_fingerprints: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables that are present, by name."""
        return {name: frame for name in TABLES if (frame := getattr(self, name)) is not None}

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name``; an :class:`InputError` naming it when the platform has none.

        Examples
        --------
        >>> empty = pd.DataFrame()
        >>> Platform(accounts=empty, links=empty, usage=empty).table("labels")
        Traceback (most recent call last):
        ...
        graphinv.errors.InputError: the platform has no labels table
        """
        frame: pd.DataFrame | None = getattr(self, name)
        if frame is None:
            raise InputError(f"the platform has no {name} table")
        return frame


# -- validation ---------------------------------------------------------------------------

# A kind becomes part of a Neo4j property value and a config key, so it is kept to a plain
# lower-case word; anything else in the `kind` column is a typo or an export bug.
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

# Timestamps before this come from zeroed or epoch-defaulted fields, not from real activity.
EARLIEST = pd.Timestamp("2000-01-01", tz="UTC")
# Clocks drift and exports cross midnight; more than a day ahead is an export bug.
FUTURE_SLACK = pd.Timedelta(days=1)

# Smallest allowed value of integer columns; a link seen zero times contradicts itself.
MINIMUM: dict[tuple[str, str], int] = {
    ("links", "count"): 1,
    ("usage", "requests"): 0,
    ("usage", "input_tokens"): 0,
    ("usage", "output_tokens"): 0,
    ("ips", "asn"): 0,
    ("prompt_fingerprints", "template_tokens"): 0,
}
MAXIMUM: dict[tuple[str, str], int] = {("ips", "asn"): 2**32 - 1}

_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})
_INT_LIMIT = 2**63
_HOUR_MICROSECONDS = 3_600_000_000

QUARANTINE_COLUMNS = ("source_file", "row", "column", "reason")

# One limit on text values for both stores. Neo4j refuses index keys above 8,167 bytes
# ("Property value is too large to index"); 2,000 characters take at most 8,000 bytes of
# UTF-8, which leaves room for the kind beside a value in the (kind, value) key. Real
# identifiers (ids, IPs, fingerprints, e-mail domains) are under 100 characters.
MAX_VALUE_CHARS = 2_000
# A table has at most 8 columns; a header far wider is a wrong or hostile file.
MAX_COLUMNS = 256

# The pandas dtypes validated columns have (a Literal so pandas-stubs can type astype).
Dtype = Literal["str", "datetime64[us, UTC]", "int64", "Int64", "float64", "bool", "boolean"]
_DTYPES: dict[ColumnType, tuple[Dtype, Dtype]] = {
    # (dtype when the column is required, dtype when it may hold missing values)
    "string": ("str", "str"),
    "timestamp": ("datetime64[us, UTC]", "datetime64[us, UTC]"),
    "int": ("int64", "Int64"),
    "float": ("float64", "float64"),
    "bool": ("bool", "boolean"),
}


def dtype_of(column: Column) -> Dtype:
    """The pandas dtype a validated column has (nullable variants for optional columns).

    Examples
    --------
    >>> dtype_of(TABLES["links"].columns[5]), dtype_of(TABLES["ips"].columns[1])
    ('int64', 'Int64')
    """
    required, optional = _DTYPES[column.type]
    return required if column.required else optional


def conform(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Return ``frame`` with exactly the columns of ``spec``, in order, cast to their dtypes.

    Absent optional columns are added as missing values. Use it on frames that are already
    valid (read back from a store, built in a test); it does not check values.

    Examples
    --------
    >>> f = conform(pd.DataFrame({"ip": ["10.0.0.1"], "asn": [64500]}), TABLES["ips"])
    >>> list(f.columns), str(f["asn"].dtype), str(f["is_proxy"].dtype)
    (['ip', 'asn', 'prefix', 'is_datacenter', 'is_proxy', 'country'], 'Int64', 'boolean')
    """
    out = {}
    for column in spec.columns:
        values = (
            frame[column.name]
            if column.name in frame
            else pd.Series(pd.NA, index=frame.index, dtype="object")
        )
        dtype = dtype_of(column)
        if str(values.dtype) != dtype:  # columns already of their dtype are kept as they are
            if column.type == "timestamp":
                values = pd.to_datetime(values, utc=True)
            values = values.astype(dtype)
        out[column.name] = values
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


def known_kinds(extra_kinds: Sequence[str] = ()) -> tuple[str, ...]:
    """The link kinds accepted: the core kinds plus ``extra_kinds``.

    Raises
    ------
    ConfigError
        An extra kind is not a lower-case word (``[a-z][a-z0-9_]*``, at most 40 characters).

    Examples
    --------
    >>> known_kinds(["device"])
    ('payment_method', 'ip', 'prompt_fingerprint', 'device')
    """
    bad = [k for k in extra_kinds if not KIND_PATTERN.fullmatch(k)]
    if bad:
        raise ConfigError(
            f"link kind(s) {bad} are not lower-case words ([a-z][a-z0-9_]*, ≤ 40 characters)"
        )
    return tuple(dict.fromkeys((*CORE_LINK_KINDS, *extra_kinds)))


@dataclass(frozen=True)
class Quarantine:
    """Rows refused by validation, per table.

    Each frame has ``source_file``, ``row`` (1-based data row; the CSV line is ``row + 1``),
    ``column`` and ``reason`` (several problems of one row joined by ``"; "``), then the
    row's original values as text.
    """

    rows: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    def count(self, table: str | None = None) -> int:
        """Rows quarantined in ``table``, or in all tables."""
        if table is not None:
            return len(self.rows[table]) if table in self.rows else 0
        return sum(len(frame) for frame in self.rows.values())

    def write(self, directory: Path) -> list[Path]:
        """Write ``directory/<table>.csv`` for each table with refused rows.

        Files of tables that are now clean are removed, so a folder never shows stale
        rejections from an earlier load. Files are owner-only, never written through a
        symbolic link, and cells a spreadsheet would run as formulas get a leading ``'``
        (:mod:`graphinv.output`).

        Raises
        ------
        UnsafePathError
            A quarantine file is a symbolic link (planted to redirect the write).
        """
        private_dir(directory)
        written = []
        for name in TABLES:
            target = directory / f"{name}.csv"
            frame = self.rows.get(name)
            if frame is None or frame.empty:
                target.unlink(missing_ok=True)
                continue
            written.append(write_csv(frame, target))
        return written


def validate(
    raw: Mapping[str, pd.DataFrame | pa.Table],
    *,
    sources: Mapping[str, str] | None = None,
    extra_kinds: Sequence[str] = (),
    now: pd.Timestamp | None = None,
) -> tuple[Platform, Quarantine]:
    """Check raw tables row by row; return the good rows as a typed Platform and the rest.

    ``raw`` holds the tables as read from files (text or native values, one pandas frame or
    Arrow table per table, only the columns of ``TABLES``). A row is quarantined when a
    required value is missing, a value has the wrong type, a timestamp is unparseable,
    before 2000 or more than a day in the future, a count is negative (links need ``count ≥
    1``), ``last_seen < first_seen``, a usage ``hour`` is not the start of an hour, a link
    ``kind`` is unknown, its key repeats an earlier row's (the first one stays), its
    ``account_id`` is not in the good ``accounts`` rows, or a text value is longer than
    :data:`MAX_VALUE_CHARS` characters (one limit for both stores; Neo4j cannot index longer
    keys). Surrounding whitespace is ignored; empty text is missing.

    Parameters
    ----------
    raw
        Frames or Arrow tables by table name; ``accounts``, ``links`` and ``usage`` are
        required. Arrow tables (Parquet as read) are checked without a copy in pandas.
    sources
        File names by table, for the quarantine's ``source_file`` column.
    extra_kinds
        Link kinds accepted beside ``payment_method``, ``ip`` and ``prompt_fingerprint``.
    now
        Reference time for "in the future" (default: the current time).

    Examples
    --------
    >>> accounts = pd.DataFrame({"account_id": ["a1", "a1"], "created_at": ["2024-01-01"] * 2})
    >>> links = pd.DataFrame({"account_id": ["a1", "zz"], "kind": ["ip", "ip"],
    ...     "value": ["10.0.0.1"] * 2, "first_seen": ["2024-01-02"] * 2,
    ...     "last_seen": ["2024-01-03"] * 2, "count": ["4", "-1"]})
    >>> usage = pd.DataFrame(columns=list(TABLES["usage"].column_names))
    >>> platform, quarantine = validate({"accounts": accounts, "links": links, "usage": usage})
    >>> len(platform.accounts), len(platform.links), quarantine.count()
    (1, 1, 2)
    >>> quarantine.rows["links"]["reason"].item()
    'count -1 is below 1; account_id not in accounts'
    """
    sources = dict(sources or {})
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    kinds = known_kinds(extra_kinds)
    for name, spec in TABLES.items():
        if name in raw:
            table = raw[name]
            columns = table.column_names if isinstance(table, pa.Table) else list(table.columns)
            check_columns(spec, columns, sources.get(name, name))
        elif spec.required:
            raise InputError(f"table {name!r} is required but was not given")

    def check(name: str, accounts: pa.ChunkedArray | None) -> tuple[pa.Table, pd.DataFrame]:
        checker = _TableCheck(TABLES[name], raw[name], now=now)
        if name == "links":
            checker.check_kinds(kinds)
        if accounts is not None:
            checker.check_accounts(accounts)
        checker.check_duplicates()
        return checker.result(sources.get(name, name))

    checked = {"accounts": check("accounts", None)}
    accounts = checked["accounts"][0].column("account_id")
    # The other tables need only the good accounts: two are checked at a time, as Arrow's
    # kernels and numpy's sorts let go of the interpreter while they run.
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = {
            name: pool.submit(
                check, name, accounts if name in ("links", "usage", "labels") else None
            )
            for name in TABLES
            if name in raw and name != "accounts"
        }
        checked.update({name: future.result() for name, future in running.items()})
    platform = Platform(
        **{name: _frame(checked[name][0], TABLES[name]) for name in TABLES if name in checked}
    )
    rejected = {name: checked[name][1] for name in TABLES if name in checked}
    return platform, Quarantine({k: v for k, v in rejected.items() if not v.empty})


def _frame(table: pa.Table, spec: TableSpec) -> pd.DataFrame:
    """A validated Arrow table as a frame of :func:`dtype_of` dtypes (text stays in Arrow's
    buffers: pandas' ``str`` columns wrap them without a copy)."""
    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    frame = table.to_pandas(types_mapper=nullable.get, split_blocks=True)
    return conform(frame, spec)


def duplicated_rows(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Per row, whether its values in ``columns`` repeat an earlier row's (missing values
    equal each other): ``frame.duplicated(subset=columns)``, answered fast when no key
    repeats, the usual case.

    DuckDB hashes each row's key and sorting the hashes shows whether any two might be
    equal. pandas' multi-column ``duplicated`` hashes Python-level group keys and took
    tens of seconds on a million accounts' usage; it now runs only when two hashes are
    equal (a repeat to report, or a rare collision).

    Examples
    --------
    >>> frame = pd.DataFrame({"a": ["x", "x", None, None], "b": [1, 1, 2, 2]})
    >>> duplicated_rows(frame, ["a", "b"]).tolist()
    [False, True, False, True]
    >>> duplicated_rows(frame.iloc[[0, 2]], ["a", "b"]).tolist()
    [False, False]
    """
    try:
        table = pa.table([_arrow_column(frame[name]) for name in columns], names=list(columns))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Values Arrow cannot type (mixed objects in a frame built in code): pandas decides.
        return frame.duplicated(subset=list(columns), keep="first").to_numpy()
    if not _may_repeat(table):
        return np.zeros(len(frame), dtype=bool)
    return frame.duplicated(subset=list(columns), keep="first").to_numpy()


def _may_repeat(table: pa.Table) -> bool:
    """Whether two rows of ``table`` might be equal: False only when no two rows' hashes
    are (DuckDB hashes the rows on every core, ten times faster than encoding the strings;
    equal hashes only send the caller to the exact check)."""
    import duckdb

    if table.num_rows < 2:
        return False
    listed = ", ".join(f'"{i}"' for i in range(table.num_columns))
    numbered = table.rename_columns([str(i) for i in range(table.num_columns)])
    with duckdb.connect() as con:
        con.register("keyed", numbered)
        found = con.sql(f"SELECT hash({listed}) AS h FROM keyed").to_arrow_table()
    hashes = np.sort(found.column("h").to_numpy())
    return bool(np.any(hashes[1:] == hashes[:-1]))


def _arrow_column(series: pd.Series) -> pa.ChunkedArray:
    """``series`` as Arrow (pandas' Arrow-backed columns convert to chunked arrays)."""
    values = pa.array(series, from_pandas=True)
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def check_columns(spec: TableSpec, columns: Sequence[str], source: str) -> None:
    """Refuse a header with missing required, unknown or repeated columns.

    Unknown columns are refused rather than ignored: a misspelt optional column would
    otherwise vanish without a trace.

    Raises
    ------
    InputError
        Naming ``source`` and the offending columns.

    Examples
    --------
    >>> check_columns(TABLES["ips"], ["ip", "asn"], "ips.csv")
    >>> check_columns(TABLES["ips"], ["ip", "ASN"], "ips.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    graphinv.errors.InputError: ips.csv: unknown column(s) ['ASN']; expected columns: ip, asn, ...
    """
    expected = ", ".join(spec.column_names)
    if len(columns) > MAX_COLUMNS:
        raise InputError(
            f"{source}: {len(columns):,} columns in the header, more than the {MAX_COLUMNS} "
            f"graphinv reads; expected columns: {expected}"
        )
    # Counting once keeps a wide header linear (list.count per column was quadratic).
    repeated = sorted(name for name, n in Counter(columns).items() if n > 1)
    if repeated:
        raise InputError(f"{source}: column(s) {repeated} appear more than once")
    missing = [c for c in spec.required_columns if c not in columns]
    if missing:
        raise InputError(
            f"{source}: missing required column(s) {missing}; expected columns: {expected}"
        )
    unknown = [c for c in columns if c not in spec.column_names]
    if unknown:
        raise InputError(f"{source}: unknown column(s) {unknown}; expected columns: {expected}")


class _TableCheck:
    """Vectorised row checks of one raw table; collects (mask, column, reason) problems.

    The checks run on Arrow arrays. A column that already holds its type (Parquet's text,
    timestamps in UTC, integers and booleans) is checked with ``pyarrow.compute`` alone;
    one that must be parsed (CSV text, a frame built in code) goes through pandas, whose
    parsing rules (ISO 8601 timestamps, ``"1.0"`` as an integer, ``yes``/``no``) are the
    contract. Reasons quote the raw values of the flagged rows only.
    """

    def __init__(
        self, spec: TableSpec, raw: pd.DataFrame | pa.Table, *, now: pd.Timestamp
    ) -> None:
        self.spec = spec
        self.raw = raw if isinstance(raw, pa.Table) else raw.reset_index(drop=True)
        self.size = len(self.raw)
        self.columns = list(
            self.raw.column_names if isinstance(self.raw, pa.Table) else self.raw.columns
        )
        # (rows flagged, column, reason: one text for all, or one per flagged row)
        self.problems: list[tuple[np.ndarray, str, str | list[str]]] = []
        self.values: dict[str, pa.ChunkedArray] = {}
        # Integer codes of a key column found while checking (account ids' positions in the
        # good accounts), so the duplicate check need not encode the strings again.
        self.codes: dict[str, np.ndarray] = {}
        for column in spec.columns:
            self._parse(column)
        self._check_table_rules(now)

    # -- the raw values (for parsing by pandas, and for reasons) ---------------------------

    def _arrow(self, name: str) -> pa.ChunkedArray | None:
        """The raw column as Arrow, or None when Arrow cannot type it (mixed objects)."""
        if isinstance(self.raw, pa.Table):
            return self.raw.column(name)
        try:
            return _arrow_column(self.raw[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None

    def _series(self, name: str, rows: np.ndarray | None = None) -> pd.Series:
        """The raw column (or its ``rows``) as pandas shows it, indexed by row position."""
        if not isinstance(self.raw, pa.Table):
            series = self.raw[name]
            return series if rows is None else series.iloc[rows]
        column = self.raw.column(name)
        if pa.types.is_integer(column.type) and column.null_count:
            # As the whole column reads in pandas: integers with gaps become floats.
            column = column.cast(pa.float64())
        if rows is not None:
            column = column.take(pa.array(rows))
        index = pd.RangeIndex(self.size) if rows is None else pd.Index(rows)
        return column.to_pandas().set_axis(index).rename(name)

    def _shown(self, column: str, mask: np.ndarray) -> list[str]:
        """The offending raw values, quoted, for reasons like ``not an integer: 'x'``."""
        return [repr(str(v)) for v in self._series(column, np.flatnonzero(mask))]

    # -- per column ---------------------------------------------------------------------

    def _flag(self, mask: np.ndarray, column: str, reason: str | list[str]) -> None:
        if mask.any():
            self.problems.append((mask, column, reason))

    def _parse(self, column: Column) -> None:
        target = _ARROW_TYPES[column.type]
        if column.name not in self.columns:
            self.values[column.name] = pa.chunked_array([pa.nulls(self.size, target)])
            return
        raw = self._arrow(column.name)
        if raw is not None and _holds(raw.type, column.type):
            values = _typed(raw, column.type)
            missing = _numpy(values.is_null())
            if column.required:
                self._flag(missing, column.name, "missing value")
            if column.type == "string":
                self._check_length(column.name, values)
            self.values[column.name] = values.cast(target)
            return
        self._parse_pandas(column)

    def _parse_pandas(self, column: Column) -> None:
        series = self._series(column.name)
        if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            # pandas-stubs allows only str replacements on str series; NaN marks missing here.
            stripped = series.astype("str").str.strip()
            series = stripped.replace("", np.nan)  # type: ignore[call-overload]
        missing = series.isna().to_numpy()
        if column.required:
            self._flag(missing, column.name, "missing value")
        present = ~missing
        target = _ARROW_TYPES[column.type]
        if column.type == "string":
            values = _arrow_of(series.astype("str"), target)
            self._check_length(column.name, values)
            self.values[column.name] = values
            return
        if column.type == "timestamp":
            parsed = _to_timestamp(series)
            bad = present & parsed.isna().to_numpy()
        elif column.type in ("int", "float"):
            parsed = pd.Series(pd.to_numeric(series, errors="coerce"), index=series.index)
            parsed = parsed.astype("float64")
            bad = present & parsed.isna().to_numpy()
            if column.type == "int":
                finite = parsed.fillna(0).to_numpy()
                bad |= present & ((finite != np.floor(finite)) | (np.abs(finite) >= _INT_LIMIT))
        else:
            parsed = _to_bool(series)
            bad = present & parsed.isna().to_numpy()
        prefix = f"not {_ARTICLE[column.type]}: "
        self._flag(bad, column.name, [prefix + shown for shown in self._shown(column.name, bad)])
        kept = parsed.where(~bad)
        if column.type == "int":
            kept = kept.astype("Int64")
        self.values[column.name] = _arrow_of(kept, target)

    def _check_length(self, name: str, values: pa.ChunkedArray) -> None:
        """Flag text longer than :data:`MAX_VALUE_CHARS` (the value itself is not repeated)."""
        lengths = pc.utf8_length(values)
        long = _numpy(pc.greater(lengths, MAX_VALUE_CHARS))
        if not long.any():
            return
        counts = lengths.filter(pa.array(long)).to_pylist()
        self._flag(long, name, [
            f"value too long: {n:,} characters, at most {MAX_VALUE_CHARS:,}" for n in counts
        ])

    def _check_table_rules(self, now: pd.Timestamp) -> None:
        name = self.spec.name
        for column in self.spec.columns:
            if column.name not in self.columns:
                continue
            values = self.values[column.name]
            if column.type == "timestamp":
                early = _numpy(pc.less(values, _instant(EARLIEST)))
                self._flag(early, column.name, [
                    "before 2000-01-01: " + shown for shown in self._shown(column.name, early)
                ])
                late = _numpy(pc.greater(values, _instant(now + FUTURE_SLACK)))
                self._flag(late, column.name, [
                    "in the future: " + shown for shown in self._shown(column.name, late)
                ])
            low = MINIMUM.get((name, column.name))
            if low is not None:
                below = _numpy(pc.less(values, low))
                self._flag(below, column.name, self._bound(column.name, below, "below", low))
            high = MAXIMUM.get((name, column.name))
            if high is not None:
                above = _numpy(pc.greater(values, high))
                self._flag(above, column.name, self._bound(column.name, above, "above", high))
        if name == "links":
            backwards = _numpy(pc.less(self.values["last_seen"], self.values["first_seen"]))
            self._flag(backwards, "last_seen", "last_seen is before first_seen")
        if name == "usage":
            # Whole hours since the epoch, in UTC: no offsets, so plain arithmetic.
            micros = self.values["hour"].cast(pa.int64()).fill_null(0).to_numpy()
            off = micros % _HOUR_MICROSECONDS != 0
            self._flag(off, "hour", [
                "not the start of an hour: " + shown for shown in self._shown("hour", off)
            ])

    def _bound(self, column: str, mask: np.ndarray, word: str, limit: int) -> list[str]:
        shown = self._series(column, np.flatnonzero(mask)).astype("str").str.strip()
        return [f"{column} {value} is {word} {limit}" for value in shown]

    # -- across rows and tables ----------------------------------------------------------

    def check_kinds(self, kinds: Sequence[str]) -> None:
        kind = self.values["kind"]
        unknown = _numpy(pc.invert(pc.is_in(kind, value_set=pa.array(kinds, kind.type))))
        unknown &= _numpy(kind.is_valid())
        self._flag(unknown, "kind", [
            f"unknown kind {shown} (declare new kinds with extra_kinds / --kind)"
            for shown in self._shown("kind", unknown)
        ])

    def check_accounts(self, account_ids: pa.ChunkedArray) -> None:
        """Flag rows whose account is not among ``account_ids`` (the good accounts, unique)."""
        ids = self.values["account_id"]
        # In Arrow's hash table: pandas' isin on Arrow strings goes one Python object at a
        # time (20 s for a million accounts' links and usage). The positions found are the
        # accounts' codes, which the duplicate check reuses.
        found = pc.index_in(ids, value_set=account_ids.combine_chunks().cast(ids.type))
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        dangling = (codes < 0) & _numpy(ids.is_valid())
        self._flag(dangling, "account_id", "account_id not in accounts")
        self.codes["account_id"] = codes

    def check_duplicates(self) -> None:
        """Flag later rows whose key repeats an earlier good row; the first one stays."""
        names = list(self.spec.key)
        rejected = self._rejected()
        good = np.flatnonzero(~rejected)
        columns = [self.values[c] for c in names]
        if rejected.any():
            keep = pa.array(~rejected)
            columns = [column.filter(keep) for column in columns]
        if not _may_repeat(pa.table(columns, names=names)):
            return
        parts = [self.codes[c][good] if c in self.codes else columns[i]
                 for i, c in enumerate(names)]
        key = _folded_key(parts)
        order = np.argsort(key, kind="stable")
        starts = np.r_[True, key[order][1:] != key[order][:-1]]
        # Each row's group's first row (in input order, the sort being stable).
        first = np.empty(len(key), dtype=np.int64)
        first[order] = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
        repeat = np.zeros(len(key), dtype=bool)
        repeat[order] = ~starts
        mask = np.zeros(self.size, dtype=bool)
        mask[good[repeat]] = True
        firsts = good[first[repeat]] + 1
        self._flag(mask, ",".join(names), [f"duplicate key of row {row}" for row in firsts])

    def _rejected(self) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        for flagged, _, _ in self.problems:
            mask |= flagged
        return mask

    def result(self, source: str) -> tuple[pa.Table, pd.DataFrame]:
        """The good rows (Arrow, typed as :data:`_ARROW_TYPES`) and the quarantined rows."""
        bad = self._rejected()
        names = list(self.spec.column_names)
        good = pa.table([self.values[c] for c in names], names=names)
        if not self.problems:
            return good, _empty_quarantine(self.columns)
        good = good.filter(pa.array(~bad))
        rows = np.concatenate([np.flatnonzero(mask) for mask, _, _ in self.problems])
        columns = np.concatenate(
            [np.full(int(mask.sum()), column, dtype=object) for mask, column, _ in self.problems]
        )
        reasons = np.concatenate([
            np.full(int(mask.sum()), reason, dtype=object)
            if isinstance(reason, str) else np.array(reason, dtype=object)
            for mask, _, reason in self.problems
        ])
        # A row's problems in the order they were found (a stable sort keeps it).
        order = np.argsort(rows, kind="stable")
        rows, columns, reasons = rows[order], columns[order], reasons[order]
        flagged, starts, counts = np.unique(rows, return_index=True, return_counts=True)
        column_text, reason_text = columns[starts], reasons[starts]
        for i in np.flatnonzero(counts > 1):
            span = slice(starts[i], starts[i] + counts[i])
            column_text[i] = _join_distinct(columns[span])
            reason_text[i] = "; ".join(reasons[span])
        if isinstance(self.raw, pa.Table):
            original = pd.DataFrame(
                {c: self._series(c, flagged) for c in self.columns}, index=flagged
            )
        else:
            original = self.raw.iloc[flagged]
        original = original.astype("str").where(original.notna(), "")
        quarantined = pd.concat(
            [
                pd.DataFrame(
                    {
                        "source_file": source,
                        "row": flagged + 1,
                        "column": column_text,
                        "reason": reason_text,
                    },
                    index=original.index,
                ),
                original,
            ],
            axis=1,
        ).reset_index(drop=True)
        return good, quarantined


# The Arrow types of validated columns (what :class:`_TableCheck` hands on).
_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.large_string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


def _holds(kind: pa.DataType, column_type: ColumnType) -> bool:
    """Whether raw values of Arrow type ``kind`` already are ``column_type`` (no parsing).

    Timestamps qualify in UTC at most microsecond precision (finer ones pandas truncates);
    integers when int64 holds them; floats never (pandas decides what a NaN means).
    """
    if column_type == "string":
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if column_type == "timestamp":
        return (pa.types.is_timestamp(kind) and kind.tz == "UTC"
                and kind.unit in ("s", "ms", "us"))
    if column_type == "int":
        return pa.types.is_integer(kind) and kind != pa.uint64()
    return column_type == "bool" and pa.types.is_boolean(kind)


def _typed(raw: pa.ChunkedArray, column_type: ColumnType) -> pa.ChunkedArray:
    """Values of a column :func:`_holds` approves: text stripped, empty text missing."""
    if column_type != "string":
        return raw.cast(_ARROW_TYPES[column_type])
    # The same trimming as pandas' str.strip on Arrow strings (utf8_trim_whitespace, the
    # whitespace utf8_is_space knows), done only when a value starts or ends with a space:
    # trimming copies every string, looking at both ends does not.
    spaced = pc.or_(
        pc.utf8_is_space(pc.utf8_slice_codeunits(raw, 0, 1)),
        pc.utf8_is_space(pc.utf8_slice_codeunits(raw, -1)),
    )
    values = pc.utf8_trim_whitespace(raw) if pc.any(spaced).as_py() else raw
    empty = pc.equal(values, "")
    if pc.any(empty).as_py():
        values = pc.if_else(empty, pa.scalar(None, values.type), values)
    return values


def _numpy(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow mask as numpy, missing counting as False."""
    if not pc.any(mask).as_py():  # the usual answer, without unpacking millions of bits
        return np.zeros(len(mask), dtype=bool)
    return np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _instant(moment: pd.Timestamp) -> pa.Scalar:
    """``moment`` as an Arrow timestamp in microseconds; flooring keeps ``<`` and ``>`` on
    whole microseconds exact."""
    return pa.scalar(moment.floor("us").to_pydatetime(), type=_ARROW_TYPES["timestamp"])


def _arrow_of(series: pd.Series, target: pa.DataType) -> pa.ChunkedArray:
    return _arrow_column(series).cast(target)


def _folded_key(parts: Sequence[np.ndarray | pa.ChunkedArray]) -> np.ndarray:
    """One integer per row that is equal exactly where all ``parts`` are (missing values
    equal each other): integer codes as they are, Arrow columns dictionary-encoded."""
    size = len(parts[0]) if parts else 0
    key = np.zeros(size, dtype=np.int64)
    span = 1
    for part in parts:
        if isinstance(part, np.ndarray):
            codes = part - min(int(part.min(initial=0)), 0)
            count = int(codes.max(initial=0)) + 1
        else:
            encoded = pc.dictionary_encode(part.combine_chunks(), null_encoding="encode")
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            count = max(len(encoded.dictionary), 1)
        if span * count >= 2**62:
            # Renumber the distinct keys so far, so the folded key cannot overflow.
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max(initial=0)) + 1
        key = key * count + codes
        span *= count
    return key


_ARTICLE: dict[ColumnType, str] = {
    "timestamp": "an ISO 8601 timestamp",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (true/false)",
    "string": "text",
}


def _to_timestamp(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
        return pd.to_datetime(series, utc=True).astype("datetime64[us, UTC]")
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    return pd.Series(parsed, index=series.index).astype("datetime64[us, UTC]")


def _to_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean")
    text = series.astype("str").str.lower()
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def _join_distinct(values: Iterable[str]) -> str:
    """The distinct values, comma-joined in the order first seen."""
    return ",".join(dict.fromkeys(values))


def _empty_quarantine(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=[*QUARANTINE_COLUMNS, *columns])


_JSON_TYPES: dict[ColumnType, dict[str, object]] = {
    "string": {"type": "string", "minLength": 1},
    "timestamp": {"type": "string", "format": "date-time"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
}


def json_schema(table: str) -> dict[str, object]:
    """A JSON Schema (2020-12) for one row of ``table``, as published in ``schemas/``.

    Examples
    --------
    >>> json_schema("links")["required"]
    ['account_id', 'kind', 'value', 'first_seen', 'last_seen', 'count']
    """
    spec = TABLES[table]
    properties: dict[str, object] = {}
    for column in spec.columns:
        prop: dict[str, object] = dict(_JSON_TYPES[column.type])
        if column.description:
            prop["description"] = column.description
        if (table, column.name) in MINIMUM:
            prop["minimum"] = MINIMUM[(table, column.name)]
        if (table, column.name) in MAXIMUM:
            prop["maximum"] = MAXIMUM[(table, column.name)]
        if column.type == "timestamp":
            prop["description"] = (
                f"{column.description + '; ' if column.description else ''}ISO 8601, UTC when "
                "no offset is given; not before 2000-01-01, not more than a day in the future"
            )
        if not column.required:
            prop = {"anyOf": [prop, {"type": "null"}]}
        properties[column.name] = prop
    if table == "links":
        properties["kind"] = {
            "type": "string",
            "anyOf": [
                {"enum": list(CORE_LINK_KINDS)},
                {"pattern": f"^{KIND_PATTERN.pattern}$"},
            ],
            "description": (
                "payment_method, ip, prompt_fingerprint; any other kind (device, api_client, "
                "email, referral, …) must be declared to the loader (extra_kinds / --kind), "
                "else its rows are quarantined"
            ),
        }
        properties["last_seen"] = {
            **properties["last_seen"],  # type: ignore[dict-item]
            "description": "not before first_seen (checked by the loader)",
        }
    if table == "usage":
        properties["hour"] = {**properties["hour"], "description": "start of an hour, UTC"}  # type: ignore[dict-item]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://graphinv.example/schemas/{table}.schema.json",
        "title": table,
        "description": spec.description,
        "type": "object",
        "properties": properties,
        "required": list(spec.required_columns),
        "additionalProperties": False,
        "x-key": list(spec.key),
        "x-table-required": spec.required,
    }
