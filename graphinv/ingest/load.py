"""Load a folder of platform exports into a store: read, validate, quarantine, pseudonymise, write.

Files are found by table name: ``accounts.csv``, ``accounts.csv.gz`` or
``accounts.parquet`` (one per table). A file is refused as a whole (:class:`InputError`
naming the file, and the line where there is one) only when it cannot be read: missing,
empty, not UTF-8, not CSV/Parquet, a header with missing, unknown or repeated columns, or
a line with the wrong number of fields (a broken quote makes every later row suspect).
Every other problem is a row problem: the row goes to ``quarantine/<table>.csv`` and the
rest loads (see :func:`graphinv.schema.validate`).

Examples
--------
>>> import tempfile
>>> from graphinv.stores import open_store
>>> from graphinv.synth import generate, write_platform
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = write_platform(generate(preset="small", seed=1, n_accounts=500), Path(tmp) / "in")
...     store = open_store(path=Path(tmp) / "g.duckdb", use_env=False)
...     report = load_dir(Path(tmp) / "in", store, extra_kinds=["api_client"], progress=False)
...     store.close()
>>> report.exit_code
0
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from graphinv.errors import InputError, StoreError
from graphinv.ingest.files import GuardedStream, ReadLimits
from graphinv.ingest.pseudonymise import ENV_KEY, key_id, pseudonymise, pseudonymise_quarantine
from graphinv.output import terminal_text
from graphinv.schema import TABLES, Platform, Quarantine, TableSpec, check_columns, validate
from graphinv.stores.base import InputFile, LoadTarget

SUFFIXES = (".csv", ".csv.gz", ".parquet")
# The store metadata key recording how identifier values were written.
PSEUDONYMISATION = "pseudonymisation"
EXIT_CLEAN = 0
EXIT_QUARANTINED = 3


@dataclass(frozen=True)
class LoadReport:
    """What a load read, wrote and refused, per table, and how long it took.

    ``exit_code`` is 0 when every row loaded and 3 when some were quarantined, for
    pipelines that must notice partial loads.
    """

    source: Path
    store: str
    files: dict[str, Path]
    rows_read: dict[str, int]
    rows_loaded: dict[str, int]
    rows_quarantined: dict[str, int]
    relationships: int
    seconds: float
    quarantine_files: list[Path] = field(default_factory=list)
    ignored_files: list[Path] = field(default_factory=list)
    pseudonymised: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_QUARANTINED if sum(self.rows_quarantined.values()) else EXIT_CLEAN

    @property
    def rate(self) -> float:
        """Rows loaded per second of the whole load (reading and validation included)."""
        return sum(self.rows_loaded.values()) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-able summary for pipeline reports."""
        return {
            "source": str(self.source),
            "store": self.store,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "relationships": self.relationships,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rate, 1),
            "quarantine_files": [str(p) for p in self.quarantine_files],
            "ignored_files": [str(p) for p in self.ignored_files],
            "pseudonymised": self.pseudonymised,
            "exit_code": self.exit_code,
        }

    def summary_table(self) -> Table:
        """A rich table: rows read, loaded and quarantined per table, then totals and rate."""
        # Paths are the user's to choose and may hold markup or control characters.
        table = Table(title=f"graphinv load {terminal_text(self.source)} → {self.store}")
        for heading in ("table", "file", "read", "loaded", "quarantined"):
            table.add_column(heading, justify="left" if heading in ("table", "file") else "right")
        for name in self.rows_read:
            quarantined = self.rows_quarantined.get(name, 0)
            table.add_row(
                name,
                terminal_text(self.files[name].name),
                f"{self.rows_read[name]:,}",
                f"{self.rows_loaded.get(name, 0):,}",
                f"[red]{quarantined:,}[/red]" if quarantined else "0",
            )
        table.add_section()
        table.add_row(
            "total",
            f"{self.seconds:.1f} s, {self.rate:,.0f} rows/s",
            f"{sum(self.rows_read.values()):,}",
            f"{sum(self.rows_loaded.values()):,}",
            f"{sum(self.rows_quarantined.values()):,}",
        )
        notes = [f"quarantine: {terminal_text(p)}" for p in self.quarantine_files]
        notes += [
            f"ignored (not a table name): {terminal_text(p.name)}" for p in self.ignored_files
        ]
        if self.pseudonymised:
            notes.append("identifier values pseudonymised (keyed HMAC), quarantine files too")
        if notes:
            table.caption = "\n".join(notes)
        return table


def find_files(path: Path) -> tuple[dict[str, Path], list[Path]]:
    """The file of each table in ``path``, and the data-looking files that match no table.

    Raises
    ------
    InputError
        ``path`` is not a folder, a table has two files, a table's name is taken by a
        folder (or another non-file), or a required table has none.
    """
    if not path.is_dir():
        raise InputError(f"{path} is not a folder")
    found: dict[str, Path] = {}
    ignored = []
    for file in sorted(path.iterdir()):
        suffix = next((s for s in SUFFIXES if file.name.endswith(s)), None)
        if suffix is None:
            continue
        name = file.name[: -len(suffix)]
        if name in TABLES and not file.is_file():
            what = "a folder" if file.is_dir() else "not a regular file"
            raise InputError(f"{file} is {what}; the {name} table must be a {suffix} file")
        if not file.is_file():
            continue
        if name not in TABLES:
            ignored.append(file)
            continue
        if name in found:
            raise InputError(f"{path}: both {found[name].name} and {file.name} hold {name}")
        found[name] = file
    missing = [n for n, spec in TABLES.items() if spec.required and n not in found]
    if missing:
        expected = ", ".join(f"{n}.csv" for n in missing)
        raise InputError(f"{path}: required table(s) missing: {expected} (or .csv.gz/.parquet)")
    return found, ignored


def read_table(file: Path, table: str, *, limits: ReadLimits | None = None) -> pd.DataFrame:
    """One table file as a raw frame: CSV values as text, Parquet values as stored.

    CSV (and gzip) files are streamed through :class:`~graphinv.ingest.files.GuardedStream`,
    so a file is never held whole in memory and a hostile one (a decompression bomb, an
    endless line, a huge header) stops early with a clear error.

    Raises
    ------
    InputError
        The file cannot be read (see the module docstring); the message names the file.
    """
    raw = _read_raw(file, table, limits=limits)
    return raw.to_pandas() if isinstance(raw, pa.Table) else raw


def _read_raw(
    file: Path, table: str, *, limits: ReadLimits | None = None
) -> pd.DataFrame | pa.Table:
    """A table file as :func:`read_table` reads it, but Parquet as the Arrow table itself
    (validation works on Arrow; a detour through pandas would copy every column)."""
    spec = TABLES[table]
    limits = limits or ReadLimits()
    if file.name.endswith(".parquet"):
        return _read_parquet(file, spec, limits)
    try:
        with _open_guarded(file, limits) as stream:
            first = stream.first_line()
            if first is None:
                raise InputError(f"{file}: empty file (no header)")
            header = _header(first, file, spec)
            try:
                frame = pd.read_csv(
                    io.BufferedReader(stream, buffer_size=limits.block_bytes),
                    dtype=str,
                    keep_default_na=False,
                    na_values=[""],
                    skipinitialspace=False,
                    encoding="utf-8",
                )
            except pd.errors.ParserError as exc:
                raise InputError(f"{file}: malformed CSV: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{file}: cannot be read ({exc})") from exc
    frame.columns = header
    return frame


def _open_guarded(file: Path, limits: ReadLimits) -> GuardedStream:
    if file.name.endswith(".gz"):
        compressed = file.stat().st_size
        return GuardedStream(
            gzip.open(file, "rb"), file, compressed_bytes=compressed, limits=limits
        )
    return GuardedStream(file.open("rb"), file, limits=limits)


def _header(line: bytes, file: Path, spec: TableSpec) -> list[str]:
    """The column names of a CSV header line, checked against the table's columns."""
    text = line.decode("utf-8")
    if not text.strip():
        raise InputError(
            f"{file}: line 1 is blank; the first line must be the header "
            f"({', '.join(spec.column_names)})"
        )
    header = [h.strip() for h in next(csv.reader([text]))]
    check_columns(spec, header, str(file))
    return header


def _read_parquet(file: Path, spec: TableSpec, limits: ReadLimits) -> pa.Table:
    """A Parquet table, after its metadata passed the column and size caps."""
    try:
        metadata = pq.read_metadata(file)
        check_columns(spec, metadata.schema.names, str(file))
        inflated = sum(
            metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
        )
        if inflated > limits.max_text_bytes:
            raise InputError(
                f"{file}: {inflated:,} bytes uncompressed, more than "
                f"{limits.max_text_bytes:,}; graphinv refuses files this large"
            )
        data = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{file}: not a readable Parquet file ({exc})") from exc
    return data


def read_dir(
    path: Path,
    *,
    extra_kinds: Sequence[str] = (),
    now: pd.Timestamp | None = None,
    limits: ReadLimits | None = None,
) -> tuple[Platform, Quarantine]:
    """Read and validate every table file in ``path``.

    Parameters
    ----------
    path
        Folder of table files.
    extra_kinds
        Link kinds accepted beside the core ones.
    now
        Reference time for "in the future" checks (default: now).
    limits
        Caps on hostile files (default :class:`~graphinv.ingest.files.ReadLimits`).

    Raises
    ------
    InputError
        A file cannot be read, or a required table is missing or has no rows.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = Path(tmp)
    ...     _ = (folder / "accounts.csv").write_text("account_id,created_at\\na1,2024-01-01\\n")
    ...     _ = (folder / "links.csv").write_text(
    ...         "account_id,kind,value,first_seen,last_seen,count\\n"
    ...         "a1,ip,10.0.0.1,2024-01-02,2024-01-03,2\\na1,fax,555,2024-01-02,2024-01-03,1\\n")
    ...     _ = (folder / "usage.csv").write_text(
    ...         "account_id,hour,model,requests,input_tokens,output_tokens\\n")
    ...     platform, quarantine = read_dir(folder)
    >>> len(platform.links), quarantine.rows["links"]["row"].tolist()
    (1, [2])
    """
    files, _ = find_files(path)
    return _read_files(files, extra_kinds=extra_kinds, now=now, limits=limits)


def _read_files(
    files: Mapping[str, Path],
    *,
    extra_kinds: Sequence[str],
    now: pd.Timestamp | None = None,
    limits: ReadLimits | None = None,
) -> tuple[Platform, Quarantine]:
    raw = {name: _read_raw(file, name, limits=limits) for name, file in files.items()}
    if len(raw["accounts"]) == 0:
        raise InputError(f"{files['accounts']}: no accounts (header only)")
    sources = {name: file.name for name, file in files.items()}
    return validate(raw, sources=sources, extra_kinds=extra_kinds, now=now)


@dataclass(frozen=True)
class _Prepared:
    """A folder found, read, validated and (optionally) pseudonymised, ready to load."""

    files: dict[str, Path]
    ignored: list[Path]
    platform: Platform
    quarantine: Quarantine

    def report(
        self,
        *,
        source: Path,
        store: str,
        relationships: int,
        started: float,
        quarantine_files: list[Path],
        pseudonymised: bool,
    ) -> LoadReport:
        loaded = {name: len(frame) for name, frame in self.platform.tables().items()}
        counts = {name: self.quarantine.count(name) for name in self.files}
        return LoadReport(
            source=source,
            store=store,
            files=self.files,
            rows_read={name: loaded.get(name, 0) + counts[name] for name in self.files},
            rows_loaded={name: loaded.get(name, 0) for name in self.files},
            rows_quarantined=counts,
            relationships=relationships,
            seconds=time.perf_counter() - started,
            quarantine_files=quarantine_files,
            ignored_files=self.ignored,
            pseudonymised=pseudonymised,
        )


def _prepare(
    path: Path,
    *,
    extra_kinds: Sequence[str],
    pseudonymise_key: bytes | None,
    limits: ReadLimits | None,
) -> _Prepared:
    files, ignored = find_files(path)
    platform, quarantine = _read_files(files, extra_kinds=extra_kinds, limits=limits)
    if pseudonymise_key is not None:
        platform = pseudonymise(platform, key=pseudonymise_key)
    return _Prepared(files, ignored, platform, quarantine)


def pseudonymisation_marker(key: bytes | None) -> str:
    """How a store's identifier values are written: ``raw`` or ``hmac-sha256 key <id>``."""
    return "raw" if key is None else f"hmac-sha256 key {key_id(key)}"


def record_pseudonymisation(store: LoadTarget, key: bytes | None) -> None:
    """Refuse a load that would mix raw and pseudonymised values (or two keys) in ``store``.

    The first load records its marker (:func:`pseudonymisation_marker`) in the store's
    metadata, before any data, so even an interrupted load leaves it; later loads must
    match it.

    Raises
    ------
    StoreError
        The store's marker differs from this load's.

    Examples
    --------
    >>> import tempfile
    >>> from graphinv.stores import open_store
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = open_store(path=Path(tmp) / "g.duckdb", use_env=False)
    ...     record_pseudonymisation(store, b"0123456789abcdef")
    ...     try:
    ...         record_pseudonymisation(store, None)
    ...     except StoreError as error:
    ...         print(str(error)[:60])
    ...     store.close()
    the embedded store holds identifiers pseudonymised (hmac-sha
    """
    wanted = pseudonymisation_marker(key)
    recorded = store.read_meta().get(PSEUDONYMISATION)
    if recorded is None:
        store.write_meta({PSEUDONYMISATION: wanted})
        return
    if recorded != wanted:
        held = "raw identifiers" if recorded == "raw" else f"identifiers pseudonymised ({recorded})"
        this = "raw identifiers" if key is None else f"identifiers pseudonymised ({wanted})"
        raise StoreError(
            f"the {store.backend} store holds {held}; this load would add {this}, and the two "
            "never match. Load with the store's setting (--pseudonymise and the same "
            f"{ENV_KEY}, or without), or into a new store. Nothing was loaded."
        )


def input_files(files: Iterable[Path], *, folder: Path) -> tuple[InputFile, ...]:
    """SHA-256 and size of each file a load read, named relative to the input ``folder``.

    The load record keeps them, so a case file can say exactly which exports it rests on.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "accounts.csv").write_text("account_id\\n")
    ...     input_files([Path(tmp) / "accounts.csv"], folder=Path(tmp))[0].sha256[:12]
    '334f8cc209cc'
    """
    digests = []
    for file in sorted(files):
        with file.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        name = file.relative_to(folder).as_posix() if file.is_relative_to(folder) else str(file)
        digests.append(InputFile(name=name, sha256=digest, bytes=file.stat().st_size))
    return tuple(digests)


def load_dir(
    path: Path,
    store: LoadTarget,
    *,
    extra_kinds: Sequence[str] = (),
    quarantine_dir: Path | None = None,
    pseudonymise_key: bytes | None = None,
    progress: bool = True,
    limits: ReadLimits | None = None,
) -> LoadReport:
    """Read, validate and load a folder of exports into ``store``.

    Parameters
    ----------
    path
        Folder with ``accounts``, ``links``, ``usage`` and optional tables.
    store
        Where the rows go: any :class:`~graphinv.stores.base.LoadTarget` (a store from
        :func:`graphinv.stores.open_store`, or the offline Neo4j importer).
    extra_kinds
        Link kinds accepted beside ``payment_method``, ``ip``, ``prompt_fingerprint``.
    quarantine_dir
        Where refused rows go; default the store's own (``quarantine/`` beside the DuckDB
        file, else ``./quarantine``). Written on every load (stale files of now-clean
        tables are removed).
    pseudonymise_key
        When given, identifier values are replaced by keyed HMAC-SHA256 pseudonyms before
        they reach the store (see :mod:`graphinv.ingest.pseudonymise`; the CLI reads the key
        from ``GRAPHINV_PSEUDONYMISE_KEY``).
    progress
        Show progress bars.
    limits
        Caps on hostile files (line length, size, gzip inflation; see
        :class:`~graphinv.ingest.files.ReadLimits`); raise them for an unusual export.

    Returns
    -------
    LoadReport
        Counts per table, timing, and ``exit_code`` (0 clean, 3 when rows were quarantined).

    Raises
    ------
    InputError
        A file cannot be read at all; nothing is loaded then.
    StoreError
        The store holds values pseudonymised otherwise (raw vs keyed, or another key);
        nothing is loaded then.
    """
    started = time.perf_counter()
    prepared = _prepare(
        path, extra_kinds=extra_kinds, pseudonymise_key=pseudonymise_key, limits=limits
    )
    record_pseudonymisation(store, pseudonymise_key)
    quarantine = prepared.quarantine
    if pseudonymise_key is not None:
        quarantine = pseudonymise_quarantine(quarantine, key=pseudonymise_key)
    quarantine_dir = quarantine_dir or store.default_quarantine_dir()
    quarantine_files = quarantine.write(quarantine_dir)
    stats = store.load(
        prepared.platform,
        progress=progress,
        source=str(path.resolve()),
        files=input_files(prepared.files.values(), folder=path),
        # Validation quarantined every repeated key (and keyed pseudonyms keep values apart).
        keys_checked=True,
    )
    return prepared.report(
        source=path,
        store=store.backend,
        relationships=stats.relationships,
        started=started,
        quarantine_files=quarantine_files,
        pseudonymised=pseudonymise_key is not None,
    )
