"""From raw API request logs to the input contract: usage, links and prompt fingerprints.

A platform team has request logs, one row per request (time, account, API key, model, IP,
user agent, prompt or chat messages, token counts; ``schemas/request_log.schema.json``,
docs/request-logs.md). :func:`ingest_logs` reads them in chunks (JSONL, JSONL.gz or
Parquet; memory bounded by the chunk size and the aggregates, not by the log size),
validates every row, and writes a folder ``graphinv load`` reads:

* ``usage``: requests and tokens per account, hour and model;
* ``links``: ``ip``, ``api_client`` (user agent) and ``prompt_fingerprint`` per account
  (first/last seen, cumulative count), plus the base export's links (cards, sign-up IPs);
* ``prompt_fingerprints``: ``category``, ``elicits_reasoning``, ``template_tokens`` from
  transparent rules (:mod:`graphinv.ingest.prompt_rules`); which rules fired
  (``category_rule``, ``reasoning_rules``) sits in ``ingest_state/template_rules.parquet``
  under the same fingerprint ids, for score explanations;
* ``accounts`` (and ``ips``, ``payment_methods``, ``labels``) from ``base`` when given,
  else accounts derived from the logs (``created_at`` = first request seen).

Prompt text never reaches any output: only fingerprint ids, categories and rule names.
A rejected row goes to ``quarantine/request_logs.csv`` (file, line, column, reason, and its
values with the prompt withheld); the rest is ingested. Running again with newer log files
appends: files already ingested (same SHA-256) are skipped, so a delta is idempotent, and
the persisted template index gives the same template the same fingerprint every day.

Examples
--------
>>> import tempfile
>>> from graphinv.synth.logs import write_logs
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = write_logs(Path(tmp) / "synth", seed=0, n_accounts=300)
...     report = ingest_logs(Path(tmp) / "synth" / "logs", Path(tmp) / "out",
...                          base=Path(tmp) / "synth" / "base")
>>> report.exit_code, report.requests_quarantined, report.templates > 100
(0, 0, True)
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from graphinv.errors import ConfigError, InputError
from graphinv.ingest.fingerprint import (
    FingerprintParams,
    PreparedTexts,
    TemplateClusterer,
    TemplateIndex,
    prepare,
)
from graphinv.ingest.load import read_dir
from graphinv.ingest.pseudonymise import pseudonymise
from graphinv.schema import EARLIEST, FUTURE_SLACK, TABLES, Platform, conform

LOG_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
LOG_KINDS = ("ip", "prompt_fingerprint", "api_client")
STATE = "ingest_state"
EXIT_CLEAN, EXIT_QUARANTINED = 0, 3
# JSON read per chunk. Clustering walks the pending pool once per chunk, so once the pool
# is full fewer, larger chunks cost less: 10M requests with two forked workers took 290 CPU s
# in 64 MiB chunks against 356 in 32 MiB ones, the process tree staying under 4 GB.
CHUNK_BYTES = 64 << 20

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("time", pa.string()),
    ("account_id", pa.string()),
    ("api_key_id", pa.string()),
    ("model", pa.string()),
    ("ip", pa.string()),
    ("user_agent", pa.string()),
    ("prompt", pa.string()),
    ("messages", pa.list_(_MESSAGE)),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
])
REQUIRED = ("time", "account_id", "model", "input_tokens", "output_tokens")
_TEXT_FIELDS = ("prompt", "messages")


@dataclass(frozen=True)
class IngestReport:
    """What one ingest read, kept, refused and found."""

    out: Path
    files: list[Path]
    skipped_files: list[Path]
    requests_read: int
    requests_ingested: int
    requests_quarantined: int
    blank_lines: int
    free_form_requests: int
    templates: int
    new_templates: int
    rows_written: dict[str, int]
    seconds: float
    quarantine_file: Path | None = None
    pseudonymised: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_QUARANTINED if self.requests_quarantined else EXIT_CLEAN

    @property
    def rate(self) -> float:
        """Requests read per second of the whole ingest."""
        return self.requests_read / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "files": [str(p) for p in self.files],
            "skipped_files": [str(p) for p in self.skipped_files],
            "requests_read": self.requests_read,
            "requests_ingested": self.requests_ingested,
            "requests_quarantined": self.requests_quarantined,
            "blank_lines": self.blank_lines,
            "free_form_requests": self.free_form_requests,
            "templates": self.templates,
            "new_templates": self.new_templates,
            "rows_written": self.rows_written,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.rate, 1),
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
            "pseudonymised": self.pseudonymised,
            "exit_code": self.exit_code,
        }


# -- reading ------------------------------------------------------------------------------


def log_files(paths: Path | Sequence[Path]) -> list[Path]:
    """Log files in ``paths`` (files, or folders scanned for *.jsonl[.gz] / *.parquet), sorted.

    Raises
    ------
    InputError
        A path does not exist, a file has another suffix, or nothing was found.
    """
    found: list[Path] = []
    for path in [paths] if isinstance(paths, Path) else list(paths):
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.name.endswith(LOG_SUFFIXES))
        elif path.is_file():
            if not path.name.endswith(LOG_SUFFIXES):
                raise InputError(f"{path}: not a request log (.jsonl, .jsonl.gz or .parquet)")
            found.append(path)
        else:
            raise InputError(f"{path} does not exist")
    if not found:
        raise InputError(f"no request logs (.jsonl, .jsonl.gz, .parquet) in {paths}")
    return found


@dataclass
class _Chunk:
    """Parsed rows of one chunk (``SCHEMA``), their line numbers, and rows refused so far."""

    table: pa.Table
    lines: np.ndarray
    refused: list[dict[str, object]] = field(default_factory=list)
    blank: int = 0


# A chunk to read: a function giving its :class:`_Chunk` and that function's arguments.
_Task = tuple[Callable[..., _Chunk], tuple]


def _read_jsonl(path: Path, *, chunk_bytes: int, max_request_bytes: int) -> Iterator[_Task]:
    """Blocks of whole lines (about ``chunk_bytes`` each) to parse; line numbers kept."""
    opener = gzip.open if path.name.endswith(".gz") else open
    line_no = 0
    rest = b""
    with opener(path, "rb") as handle:
        while True:
            try:
                block = handle.read(chunk_bytes)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise InputError(f"{path}: cannot be read after line {line_no} ({exc})") from exc
            data = rest + block
            if not block:
                if data:
                    yield _parse_block, (data + b"\n", line_no, path, max_request_bytes)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: read on
                rest = data
                continue
            data, rest = data[:cut], data[cut:]
            yield _parse_block, (data, line_no, path, max_request_bytes)
            line_no += data.count(b"\n")


def _parse_block(data: bytes, first: int, path: Path, limit: int) -> _Chunk:
    """Parse a block of complete lines; blank and oversized lines are set aside first."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    starts = np.r_[0, ends[:-1] + 1]
    length = ends - starts
    numbers = first + 1 + np.arange(len(ends))
    short = length <= 2
    blank = np.zeros(len(ends), dtype=bool)
    if short.any():
        blank[short] = [not data[a:b].strip() for a, b in zip(starts[short], ends[short],
                                                              strict=True)]
    big = length > limit
    refused = [
        _refusal(path, int(numbers[i]), "prompt",
                 f"request of {int(length[i]):,} bytes exceeds the limit of {limit:,} bytes", {})
        for i in np.flatnonzero(big)
    ]
    keep = ~(blank | big)
    if not keep.all():
        data = b"".join(data[a : b + 1] for a, b in zip(starts[keep], ends[keep], strict=True))
    lines = numbers[keep]
    if not len(lines):
        return _Chunk(SCHEMA.empty_table(), lines, refused, int(blank.sum()))
    try:
        table = pj.read_json(
            io.BytesIO(data),
            # Blocks of a few MB are parsed on Arrow's threads; every kept line (at most
            # ``limit`` bytes) fits in one.
            read_options=pj.ReadOptions(
                block_size=min(len(data) + 1, max(4 << 20, 2 * limit + 2)), use_threads=True),
            parse_options=pj.ParseOptions(explicit_schema=SCHEMA,
                                          unexpected_field_behavior="ignore"),
        )
        if table.num_rows == len(lines):
            return _Chunk(table.select(SCHEMA.names), lines, refused, int(blank.sum()))
    except pa.ArrowInvalid:
        pass
    # Some line is broken or mistyped: parse line by line to find and refuse just those.
    rows, good = [], []
    for line, number in zip(data.splitlines(), lines, strict=True):
        row, problems = _parse_one(line)
        if problems:
            refused.append(_refusal(path, int(number), ",".join(p[0] for p in problems),
                                    "; ".join(p[1] for p in problems), row or {}))
        else:
            rows.append(row)
            good.append(number)
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    return _Chunk(table, np.array(good, dtype=np.int64), refused, int(blank.sum()))


def _parse_one(line: bytes) -> tuple[dict | None, list[tuple[str, str]]]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [("", f"not valid JSON ({exc.__class__.__name__}: {exc})")]
    if not isinstance(value, dict):
        return None, [("", f"not a JSON object but {type(value).__name__}")]
    problems = []
    row: dict[str, Any] = {}
    for name in SCHEMA.names:
        v = value.get(name)
        kind = SCHEMA.field(name).type
        if v is None:
            row[name] = None
        elif kind == pa.int64():
            if isinstance(v, bool) or not isinstance(v, int):
                problems.append((name, f"{name} is not an integer: {_short(v)}"))
            elif not -(2**63) <= v < 2**63:
                problems.append((name, f"{name} is out of range: {v}"))
            row[name] = v
        elif kind == pa.string():
            if not isinstance(v, str):
                problems.append((name, f"{name} is not text: {_short(v)}"))
            row[name] = v
        else:
            ok = isinstance(v, list) and all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str | None) for m in v
            )
            if not ok:
                problems.append((name, "messages is not a list of {role, content} text objects"))
            row[name] = ([{"role": m.get("role"), "content": m.get("content")} for m in v]
                         if ok else v)
    return row, problems


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refusal(path: Path, line: int, column: str, reason: str, row: dict) -> dict[str, object]:
    shown = {
        name: (f"<{len(str(row[name])):,} characters withheld>" if name in _TEXT_FIELDS
               else row[name])
        for name in SCHEMA.names if row.get(name) is not None
    }
    return {"source_file": path.name, "row": line, "column": column, "reason": reason, **shown}


def _read_parquet(path: Path, *, chunk_rows: int, max_request_bytes: int) -> Iterator[_Task]:
    """Batches of ``chunk_rows`` rows to coerce to ``SCHEMA``; row numbers kept."""
    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = reader.schema_arrow.names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}")
    row = 0
    for batch in reader.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        lines = np.arange(row + 1, row + table.num_rows + 1)
        row += table.num_rows
        yield _coerce_parquet, (table, lines, path, max_request_bytes)


def _coerce_parquet(table: pa.Table, lines: np.ndarray, path: Path, limit: int) -> _Chunk:
    """Columns cast to ``SCHEMA``; rows whose values cannot be cast are refused."""
    reasons: list[tuple[np.ndarray, str, str]] = []
    columns = {}
    for f in SCHEMA:
        if f.name not in table.column_names:
            columns[f.name] = pa.nulls(table.num_rows, f.type)
            continue
        col = table[f.name].combine_chunks()
        if col.type == f.type:
            columns[f.name] = col
            continue
        if f.name == "time" and pa.types.is_timestamp(col.type):
            columns[f.name] = pc.strftime(pc.cast(col, pa.timestamp("s", "UTC")),
                                          "%Y-%m-%dT%H:%M:%SZ")
            continue
        if f.type == pa.int64():
            values = pd.to_numeric(col.to_pandas(), errors="coerce")
            valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False))
            filled = values.fillna(0).to_numpy(dtype=float)
            wrong = (values.isna().to_numpy() & valid) | (filled != np.floor(filled))
            reasons.append((wrong, f.name, f"{f.name} is not an integer"))
            columns[f.name] = pa.array(values.where(~wrong).astype("Int64"), pa.int64())
        else:
            try:
                columns[f.name] = pc.cast(col, f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(f"{path}: column {f.name} of type {col.type} cannot be "
                                 f"read as {f.type}") from exc
    out = pa.table(columns, schema=SCHEMA)
    text_bytes = pc.fill_null(pc.binary_length(out["prompt"]), 0).to_numpy()
    flat = pc.list_flatten(out["messages"])
    if len(flat):
        parent = pc.list_parent_indices(out["messages"]).to_numpy()
        size = pc.fill_null(pc.binary_length(pc.struct_field(flat, "content")), 0).to_numpy()
        text_bytes = text_bytes + np.bincount(parent, weights=size, minlength=len(out))
    big = text_bytes > limit
    reasons.append((big, "prompt", f"request text exceeds the limit of {limit:,} bytes"))
    refused = []
    mask = np.zeros(len(out), dtype=bool)
    for wrong, _, _ in reasons:
        mask |= wrong
    if mask.any():
        rows = out.filter(pa.array(mask)).to_pylist()
        for i, r in zip(np.flatnonzero(mask), rows, strict=True):
            why = [(c, msg) for wrong, c, msg in reasons if wrong[i]]
            refused.append(_refusal(path, int(lines[i]), ",".join(c for c, _ in why),
                                    "; ".join(m for _, m in why), r))
    return _Chunk(out.filter(pa.array(~mask)), lines[~mask], refused)


# -- validating ---------------------------------------------------------------------------


@dataclass
class _Coded:
    """A string column of one chunk as codes into its distinct values (-1: absent), so no
    Python string per request is made and only the distinct values cross processes."""

    codes: np.ndarray  # int32
    names: np.ndarray  # object (str), distinct values

    @classmethod
    def of(cls, column: pa.Array) -> _Coded:
        encoded = pc.dictionary_encode(column)
        return cls(pc.fill_null(encoded.indices, -1).to_numpy(),
                   encoded.dictionary.to_numpy(zero_copy_only=False))

    def filter(self, keep: np.ndarray) -> _Coded:
        return _Coded(self.codes[keep], self.names)


@dataclass
class _Valid:
    account: _Coded
    seconds: np.ndarray  # int64, UTC epoch
    model: _Coded
    ip: _Coded
    client: _Coded
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    request_id: pa.Array
    user: pa.Array  # first user message or the prompt
    system: pa.Array  # first system message


_ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
_EARLIEST_S = EARLIEST.value // 10**9


def _epoch_seconds(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTC epoch seconds of ISO 8601 times (0 where absent or unparsed) and which texts did
    not parse. The common ``…T…Z`` form is parsed by Arrow; any other (offsets, fractions)
    by pandas, as before."""
    fast = pc.strptime(text, format=_ISO_SECONDS, unit="s", error_is_null=True)
    # Arrow's strptime rolls impossible dates over (30 February): only a time that prints
    # back as the same text is taken; pandas judges the rest.
    same = pc.fill_null(pc.equal(pc.strftime(fast, format=_ISO_SECONDS), text), False)
    fast = pc.if_else(same, fast, pa.scalar(None, fast.type))
    seconds = pc.fill_null(fast.cast(pa.int64()), 0).to_numpy().copy()
    rest = np.flatnonzero(np.asarray(fast.is_null().to_numpy(zero_copy_only=False))
                          & np.asarray(text.is_valid().to_numpy(zero_copy_only=False)))
    unparsed = np.zeros(len(text), dtype=bool)
    if len(rest):
        when = pd.to_datetime(text.take(pa.array(rest)).to_pandas(), utc=True,
                              errors="coerce", format="ISO8601")
        bad = when.isna().to_numpy()
        unparsed[rest[bad]] = True
        ok = rest[~bad]
        seconds[ok] = (when[~bad].to_numpy(dtype="datetime64[ns]").astype("datetime64[s]")
                       .astype(np.int64))
    return seconds, unparsed


def _validate(chunk: _Chunk, path: Path, *, now: pd.Timestamp,
              accounts: pd.Index | None) -> tuple[_Valid, list[dict[str, object]]]:
    t = chunk.table
    n = t.num_rows
    problems: list[tuple[np.ndarray, str, str | np.ndarray]] = []

    def flag(mask: np.ndarray, column: str, reason: str | np.ndarray) -> None:
        if mask.any():
            problems.append((mask, column, reason))

    strings = {}
    for name in ("account_id", "model", "request_id", "ip", "user_agent"):
        col = pc.utf8_trim_whitespace(t[name].combine_chunks())
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        strings[name] = col
    for name in REQUIRED:
        col = strings.get(name, t[name])
        flag(np.asarray(col.is_null().to_numpy(zero_copy_only=False)), name, f"missing {name}")
    text = t["time"].combine_chunks()
    seconds, unparsed = _epoch_seconds(text)
    shown = np.full(n, "", dtype=object)
    shown[unparsed] = [f"time is not an ISO 8601 timestamp: {_short(v)}"
                       for v in text.filter(pa.array(unparsed)).to_pylist()]
    flag(unparsed, "time", shown)
    parsed = ~unparsed & np.asarray(text.is_valid().to_numpy(zero_copy_only=False))
    flag(parsed & (seconds < _EARLIEST_S), "time", "time is before 2000-01-01")
    flag(parsed & (seconds > (now + FUTURE_SLACK).value // 10**9), "time",
         "time is in the future")
    for name in ("input_tokens", "output_tokens"):
        values = t[name].combine_chunks().to_numpy(zero_copy_only=False)
        flag(np.nan_to_num(values.astype(float), nan=0) < 0, name, f"{name} is negative")
    coded = {name: _Coded.of(strings[name]) for name in ("account_id", "model", "ip",
                                                        "user_agent")}
    if accounts is not None:
        acc = coded["account_id"]
        known = np.r_[pd.Index(acc.names).isin(accounts), True]
        flag(~known[acc.codes], "account_id", "account_id not in the base accounts")

    # The text: the prompt, or the first user and first system message.
    user = t["prompt"].combine_chunks()
    system = pa.nulls(n, pa.string())
    messages = t["messages"].combine_chunks()
    has_messages = np.asarray(messages.is_valid().to_numpy(zero_copy_only=False))
    has_prompt = np.asarray(user.is_valid().to_numpy(zero_copy_only=False))
    flag(has_messages & has_prompt, "prompt,messages", "both prompt and messages given")
    if has_messages.any():
        flat = pc.list_flatten(messages)
        parent = pc.list_parent_indices(messages).to_numpy()
        role = pc.utf8_lower(pc.struct_field(flat, "role")).to_numpy(zero_copy_only=False)
        content = pc.struct_field(flat, "content")
        firsts = {}
        for wanted in ("user", "system"):
            hit = np.flatnonzero(role == wanted)
            rows, first_hit = np.unique(parent[hit], return_index=True)
            pick = np.full(n, -1, dtype=np.int64)
            pick[rows] = hit[first_hit]
            firsts[wanted] = pick
            texts = content.take(pa.array(np.maximum(pick, 0)))
            column = pc.if_else(pa.array(pick >= 0), texts, pa.scalar(None, pa.string()))
            if wanted == "user":
                user = pc.if_else(pa.array(has_messages), column, user)
            else:
                system = column
        flag(has_messages & (firsts["user"] < 0) & (firsts["system"] < 0), "messages",
             "messages hold no user or system text")
    flag(~has_messages & ~has_prompt, "prompt,messages", "no prompt or messages")

    bad = np.zeros(n, dtype=bool)
    for mask, _, _ in problems:
        bad |= mask
    refused = []
    if bad.any():
        idx = np.flatnonzero(bad)
        rows = t.take(pa.array(idx)).to_pylist()
        for i, row in zip(idx, rows, strict=True):
            why = [(c, r if isinstance(r, str) else r[i]) for m, c, r in problems if m[i]]
            columns = ",".join(dict.fromkeys(c for c, _ in why))
            refused.append(_refusal(path, int(chunk.lines[i]), columns,
                                    "; ".join(r for _, r in why), row))
    keep = ~bad
    good = pa.array(keep)
    valid = _Valid(
        account=coded["account_id"].filter(keep),
        seconds=seconds[keep],
        model=coded["model"].filter(keep),
        ip=coded["ip"].filter(keep),
        client=coded["user_agent"].filter(keep),
        input_tokens=t["input_tokens"].combine_chunks().filter(good).to_numpy(),
        output_tokens=t["output_tokens"].combine_chunks().filter(good).to_numpy(),
        request_id=strings["request_id"].filter(good),
        user=user.filter(good),
        system=system.filter(good),
    )
    return valid, refused


# -- aggregating --------------------------------------------------------------------------


class _Aggregate:
    """Running group-by of per-chunk partial aggregates, compacted as it grows."""

    def __init__(self, keys: list[str], sums: list[str], mins: Sequence[str] = (),
                 maxs: Sequence[str] = ()) -> None:
        self.keys, self.sums, self.mins, self.maxs = keys, list(sums), list(mins), list(maxs)
        self.parts: list[pd.DataFrame] = []
        self.rows = 0

    def add(self, frame: pd.DataFrame, *, reduced: bool = False) -> None:
        """Add rows; ``reduced``: already grouped by :meth:`reduce` (in a worker)."""
        if len(frame):
            self.parts.append(frame if reduced else self.reduce(frame))
            self.rows += len(self.parts[-1])
            if len(self.parts) > 8:
                self.parts = [self.reduce(pd.concat(self.parts, ignore_index=True))]
                self.rows = len(self.parts[0])

    def reduce(self, frame: pd.DataFrame) -> pd.DataFrame:
        spec = {c: "sum" for c in self.sums}
        spec |= {c: "min" for c in self.mins} | {c: "max" for c in self.maxs}
        return frame.groupby(self.keys, sort=False, observed=True).agg(spec).reset_index()

    def result(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=self.keys + self.sums + self.mins + self.maxs)
        return self.reduce(pd.concat(self.parts, ignore_index=True))


def _link_frame(account: np.ndarray, value: np.ndarray, seconds: np.ndarray) -> pd.DataFrame:
    """One link row per request with a value (integer codes; -1: no value)."""
    has = value >= 0
    return pd.DataFrame({"account_id": account[has], "value": value[has],
                         "first": seconds[has], "last": seconds[has],
                         "count": np.ones(int(has.sum()), np.int64)})


class _Interner:
    """Codes of the strings of all chunks (accounts, models, IPs, user agents), so the
    running aggregates group integers; names come back only when the output is written."""

    def __init__(self) -> None:
        self._code: dict[str, int] = {}

    def lookup(self, names: np.ndarray) -> np.ndarray:
        """Code of each of a chunk's distinct values (new ones numbered on), then -1: index
        it with the chunk's codes, where -1 (absent) stays -1."""
        code = self._code
        found = np.fromiter((code.setdefault(name, len(code)) for name in names),
                            dtype=np.int64, count=len(names))
        return np.r_[found, -1]

    def names(self) -> np.ndarray:
        return np.array(list(self._code), dtype=object)


def _links() -> _Aggregate:
    return _Aggregate(["account_id", "value"], ["count"], ["first"], ["last"])


def _usage() -> _Aggregate:
    return _Aggregate(["account_id", "hour", "model"],
                      ["requests", "input_tokens", "output_tokens"])


# -- preparing chunks (in worker processes) ----------------------------------------------------


@dataclass
class _Prepared:
    """One chunk after every step that needs no state across chunks: parsed, validated,
    usage and ip/api_client links grouped, prompts fingerprinted up to clustering.

    Strings are codes into the chunk's distinct values (``account``, ``model_names``,
    ``link_names``) and the rest numpy arrays, so a forked worker hands back a few compact
    buffers, not a Python object per request."""

    refused: list[dict[str, object]]
    blank: int
    read: int
    usage: pd.DataFrame  # account_id and model: chunk codes
    model_names: np.ndarray
    links: dict[str, pd.DataFrame]  # account_id and value: chunk codes
    link_names: dict[str, np.ndarray]
    account: _Coded
    seconds: np.ndarray
    request_id: pa.Array | None
    texts: PreparedTexts


def _prepare(read: Callable[..., _Chunk], args: tuple, path: Path, now: pd.Timestamp,
             accounts: pd.Index | None, params: FingerprintParams,
             keep_ids: bool) -> _Prepared:
    chunk = read(*args)
    v, late = _validate(chunk, path, now=now, accounts=accounts)
    account = v.account.codes
    usage = _usage().reduce(pd.DataFrame({
        "account_id": account, "hour": v.seconds // 3600 * 3600, "model": v.model.codes,
        "requests": np.ones(len(v.seconds), np.int64), "input_tokens": v.input_tokens,
        "output_tokens": v.output_tokens,
    }))
    links = {"ip": _links().reduce(_link_frame(account, v.ip.codes, v.seconds)),
             "api_client": _links().reduce(_link_frame(account, v.client.codes, v.seconds))}
    texts = prepare(pa.concat_arrays([v.user.cast(pa.string()), v.system.cast(pa.string())]),
                    params)
    return _Prepared(
        refused=chunk.refused + late, blank=chunk.blank,
        read=chunk.table.num_rows + len(chunk.refused), usage=usage,
        model_names=v.model.names, links=links,
        link_names={"ip": v.ip.names, "api_client": v.client.names}, account=v.account,
        seconds=v.seconds, request_id=v.request_id if keep_ids else None, texts=texts,
    )


# What every chunk of one ingest shares, set once in each forked worker (not sent per chunk).
_WORKER_CONTEXT: dict[str, Any] = {}


def _set_worker_context(context: dict[str, Any]) -> None:
    _WORKER_CONTEXT.clear()
    _WORKER_CONTEXT.update(context)


def _prepare_in_worker(read: Callable[..., _Chunk], args: tuple, path: Path) -> _Prepared:
    return _prepare(read, args, path, **_WORKER_CONTEXT)


def _prepared_chunks(tasks: Iterator[tuple[_Task, Path]], *, workers: int, parallel: str,
                     **context: Any) -> Iterator[_Prepared]:
    """Chunks prepared in order by ``workers`` threads or forked processes (``parallel``),
    at most ``workers + 1`` chunks ahead of the caller (memory stays bounded); with 0, in
    this thread."""
    if workers == 0:
        for (read, args), path in tasks:
            yield _prepare(read, args, path, **context)
        return
    # Threads share the parsed chunk with the caller (nothing is pickled); most of their
    # work is in Arrow and numpy kernels that release the GIL, so they run beside the
    # clustering in this thread.
    pool: Executor
    job: Callable[[Callable[..., _Chunk], tuple, Path], _Prepared]
    if parallel == "threads":
        pool = ThreadPoolExecutor(workers, thread_name_prefix="graphinv-ingest")
        job = partial(_prepare, **context)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_set_worker_context, initargs=(context,))
        job = _prepare_in_worker
    with pool:
        ahead: deque[Future[_Prepared]] = deque()
        try:
            for (read, args), path in tasks:
                ahead.append(pool.submit(job, read, args, path))
                if len(ahead) > workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


# The main process reads, clusters and attributes every chunk in file order, over a third
# of the CPU (the profile in docs/request-logs.md): two workers already prepare chunks
# faster than it clusters them, so a third would add another chunk in memory (about
# 0.7 GB at 64 MB) and no speed.
_MAX_WORKERS = 2


def default_workers() -> int:
    """Workers :func:`ingest_logs` starts unless told: the CPUs this process may run on
    (its affinity where the platform has one), at most 2."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        available = os.cpu_count() or 1
    return max(1, min(available, _MAX_WORKERS))


def default_parallel() -> str:
    """``"processes"`` where processes can be forked (so preparing runs on other cores
    without copying the ingest's settings), else ``"threads"``."""
    return "processes" if "fork" in multiprocessing.get_all_start_methods() else "threads"


# -- the ingest --------------------------------------------------------------------------


def ingest_logs(
    logs: Path | Sequence[Path],
    out: Path,
    *,
    base: Path | None = None,
    params: FingerprintParams | None = None,
    pseudonymise_key: bytes | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    chunk_rows: int = 100_000,
    max_request_bytes: int = 1 << 20,
    now: pd.Timestamp | None = None,
    keep_assignments: bool = False,
    workers: int | None = None,
    parallel: str | None = None,
) -> IngestReport:
    """Read request logs, fingerprint their prompts and write the contract tables to ``out``.

    Parameters
    ----------
    logs
        Log files, or folders of them (``*.jsonl``, ``*.jsonl.gz``, ``*.parquet``).
    out
        Output folder; an earlier ingest's output is extended (files already ingested are
        skipped).
    base
        A folder in the input contract with the platform's ``accounts`` (and optionally
        ``links`` of other kinds, ``ips``, ``payment_methods``, ``labels``): copied into
        ``out``, and log rows of accounts not in it are quarantined.
    params
        Template fingerprint settings (:class:`FingerprintParams`); fixed for an output.
    pseudonymise_key
        When given, every identifier value written (IPs, user agents, fingerprints, cards)
        is replaced by its keyed HMAC (:mod:`graphinv.ingest.pseudonymise`) and the key
        salts the template hashes.
    chunk_bytes, chunk_rows
        Read size of JSONL (bytes, default 64 MiB) and Parquet (rows) chunks. Clustering a
        chunk walks the whole pending pool once per band, so larger chunks spend less on
        it per request, at the price of memory (each chunk in flight) and slightly
        different attribution of texts that wait in the pool (docs/request-logs.md).
    max_request_bytes
        A request (JSON line, or prompt text in Parquet) above this is quarantined.
    now
        Reference time for "in the future" (default: now).
    keep_assignments
        Also write ``ingest_state/assignments.parquet`` (request id → fingerprints of the
        user and system text; ids only) for evaluation against planted templates.
    workers
        Threads or forked processes (``parallel``) that parse, validate and fingerprint
        chunks while this thread clusters (0: all in this thread; default
        :func:`default_workers`, the CPUs available, at most 2). Chunks are still
        clustered one after the other in file order, so the output is the same for any
        number and kind of workers.
    parallel
        ``"processes"`` (forked, so preparing runs on other cores; a prepared chunk comes
        back as numpy arrays and the chunk's distinct strings, about 1 MB per thousand
        requests) or ``"threads"`` (nothing is copied, but the parts of preparing that
        hold the GIL wait for the clustering thread). Default :func:`default_parallel`:
        processes where the platform can fork.

    Raises
    ------
    InputError
        A file cannot be read at all, the base folder is invalid, or ``out`` was written
        with other settings or another pseudonymisation key.
    """
    started = time.perf_counter()
    out = Path(out)
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    if pseudonymise_key is not None and len(pseudonymise_key) < 16:
        raise ConfigError("the pseudonymisation key must be at least 16 bytes")
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ConfigError(f"chunk_bytes must be a whole number >= 1, not {chunk_bytes!r}")
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a whole number >= 0, not {workers!r}")
    parallel = default_parallel() if parallel is None else parallel
    if parallel not in ("threads", "processes"):
        raise ConfigError(f"parallel must be 'threads' or 'processes', not {parallel!r}")
    if parallel == "processes" and "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("parallel='processes' needs a platform that can fork; use 'threads'")
    salt = "" if pseudonymise_key is None else hashlib.sha256(pseudonymise_key).hexdigest()
    params = replace(params or FingerprintParams(), salt=salt)
    files = log_files(logs)
    state_dir = out / STATE
    manifest = _Manifest.load(state_dir, pseudonymise_key)
    base_platform = _read_base(base, now) if base is not None else None
    accounts = pd.Index(base_platform.accounts["account_id"]) if base_platform else None

    index = TemplateIndex.load(state_dir / "templates", params)
    known_templates = len(index)
    clusterer = TemplateClusterer(index, remember_all=keep_assignments)
    usage = _usage()
    links = {kind: _links() for kind in LOG_KINDS}
    names = {kind: _Interner() for kind in ("account", "model", "ip", "api_client")}
    pending = _Aggregate(["account_id", "doc"], ["count"], ["first"], ["last"])
    assignments: list[pa.Table] = []
    refused: list[dict[str, object]] = []
    read = ingested = blank = free_form = 0
    skipped, done = [], []
    for path in files:
        digest = _sha256(path)
        if digest in manifest.files:
            skipped.append(path)
        else:
            done.append((path, digest))

    def tasks() -> Iterator[tuple[_Task, Path]]:
        for path, _ in done:
            chunks = (
                _read_parquet(path, chunk_rows=chunk_rows, max_request_bytes=max_request_bytes)
                if path.name.endswith(".parquet")
                else _read_jsonl(path, chunk_bytes=chunk_bytes,
                                 max_request_bytes=max_request_bytes)
            )
            yield from ((task, path) for task in chunks)

    # Chunks are prepared in parallel but clustered and attributed in file order, one after
    # the other: the result does not depend on ``workers``.
    for chunk in _prepared_chunks(tasks(), workers=workers, parallel=parallel, now=now,
                                  accounts=accounts, params=params, keep_ids=keep_assignments):
        blank += chunk.blank
        refused += chunk.refused
        read += chunk.read
        n = len(chunk.seconds)
        ingested += n
        # Chunk codes to the ingest's codes: one-to-one, so worker-grouped rows stay grouped.
        to_account = names["account"].lookup(chunk.account.names)
        account = to_account[chunk.account.codes]
        frame = chunk.usage
        frame["account_id"] = to_account[frame["account_id"].to_numpy()]
        frame["model"] = names["model"].lookup(chunk.model_names)[frame["model"].to_numpy()]
        usage.add(frame, reduced=True)
        for kind, frame in chunk.links.items():
            frame["account_id"] = to_account[frame["account_id"].to_numpy()]
            frame["value"] = names[kind].lookup(chunk.link_names[kind])[
                frame["value"].to_numpy()]
            links[kind].add(frame, reduced=True)
        docs = clusterer.add(chunk.texts)
        free_form += _attribute(clusterer, docs, np.r_[account, account],
                                np.r_[chunk.seconds, chunk.seconds], links["prompt_fingerprint"],
                                pending)
        if keep_assignments:
            assignments.append(pa.table({"request_id": chunk.request_id,
                                         "user_doc": docs[:n], "system_doc": docs[n:]}))

    clusterer.finish()
    leftover = pending.result()
    free_form += int(leftover["count"].sum()) if len(leftover) else 0
    new_templates = len(index) - known_templates
    fingerprints = index.templates["fingerprint"].to_numpy()

    account_names = names["account"].names()
    log_links = _log_links(links, account_names, {
        "ip": names["ip"].names(), "api_client": names["api_client"].names(),
        "prompt_fingerprint": fingerprints})
    log_usage = usage.result()
    log_usage["account_id"] = account_names[log_usage["account_id"].to_numpy(dtype=np.int64)]
    log_usage["model"] = names["model"].names()[log_usage["model"].to_numpy(dtype=np.int64)]
    log_usage["hour"] = pd.to_datetime(log_usage["hour"], unit="s", utc=True)
    rules = index.templates.copy()
    if pseudonymise_key is not None:
        keyed = pseudonymise(Platform(pd.DataFrame(), log_links, log_usage,
                                      prompt_fingerprints=rules), key=pseudonymise_key)
        log_links, rules = keyed.links, keyed.table("prompt_fingerprints")
    attributes = rules[["fingerprint", "category", "elicits_reasoning", "template_tokens"]]
    state = _State.load(state_dir)
    state.merge(log_links, log_usage)
    written = _write_output(out, state, attributes, base_platform, pseudonymise_key)

    # State last: an ingest that fails before this point can simply be run again.
    index.save(state_dir / "templates")
    _write_table(rules, state_dir / "template_rules.parquet")
    state.save(state_dir)
    if keep_assignments:
        _write_assignments(state_dir, assignments, clusterer, fingerprints=
                           index.templates["fingerprint"].to_numpy())
    manifest.files.update({digest: path.name for path, digest in done})
    manifest.save(state_dir)
    quarantine_file = _write_quarantine(out / "quarantine", refused)
    return IngestReport(
        out=out, files=[p for p, _ in done], skipped_files=skipped, requests_read=read,
        requests_ingested=ingested, requests_quarantined=len(refused), blank_lines=blank,
        free_form_requests=free_form, templates=len(index), new_templates=new_templates,
        rows_written=written, seconds=time.perf_counter() - started,
        quarantine_file=quarantine_file, pseudonymised=pseudonymise_key is not None,
    )


def _attribute(clusterer: TemplateClusterer, docs: np.ndarray, account: np.ndarray,
               seconds: np.ndarray, prompt_links: _Aggregate, pending: _Aggregate) -> int:
    """Requests on known templates become links now; the others wait with their prompt.

    Returns the requests whose text left the pending pool as free-form (pool full)."""
    code = clusterer.cluster_of(docs)
    now = code >= 0
    prompt_links.add(_link_frame(account[now], code[now], seconds[now]))
    wait = code == -1
    pending.add(pd.DataFrame({"account_id": account[wait], "doc": docs[wait],
                              "count": np.ones(int(wait.sum()), np.int64),
                              "first": seconds[wait], "last": seconds[wait]}))
    moved = np.r_[clusterer.resolved, clusterer.dropped]
    if len(moved) and pending.parts:
        held = pending.result()
        leaving = held["doc"].isin(moved).to_numpy()
        if leaving.any():
            gone = held[leaving]
            codes = clusterer.cluster_of(gone["doc"].to_numpy())
            ok = codes >= 0
            prompt_links.add(pd.DataFrame({
                "account_id": gone["account_id"].to_numpy()[ok], "value": codes[ok],
                "first": gone["first"].to_numpy()[ok], "last": gone["last"].to_numpy()[ok],
                "count": gone["count"].to_numpy()[ok]}))
            pending.parts = [held[~leaving]]
            return int(gone["count"].to_numpy()[~ok].sum())
    return 0


def _log_links(links: dict[str, _Aggregate], accounts: np.ndarray,
               values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Links with their names back: ``accounts`` and ``values`` (per kind) by code."""
    frames = []
    for kind, acc in links.items():
        frame = acc.result()
        if len(frame):
            frame["account_id"] = accounts[frame["account_id"].to_numpy(dtype=np.int64)]
            frame["value"] = values[kind][frame["value"].to_numpy(dtype=np.int64)]
        frame["kind"] = kind
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    return pd.DataFrame({
        "account_id": frame["account_id"].astype(str),
        "kind": frame["kind"].astype(str),
        "value": frame["value"].astype(str),
        "first_seen": pd.to_datetime(frame["first"].astype(np.int64), unit="s", utc=True),
        "last_seen": pd.to_datetime(frame["last"].astype(np.int64), unit="s", utc=True),
        "count": frame["count"].astype(np.int64),
    })


def _read_base(base: Path, now: pd.Timestamp) -> Platform:
    platform, quarantine = read_dir(base, extra_kinds=["api_client"], now=now)
    if quarantine.count():
        raise InputError(f"{base}: {quarantine.count():,} invalid rows; `graphinv load` it to "
                         "see them, fix the export, then ingest")
    return platform


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _Manifest:
    """Files already ingested into an output, and whether (and with which key) it is keyed."""

    files: dict[str, str]
    key_check: str | None

    @classmethod
    def load(cls, state_dir: Path, key: bytes | None) -> _Manifest:
        check = None if key is None else hmac.new(key, b"graphinv-ingest", "sha256").hexdigest()
        path = state_dir / "manifest.json"
        if not path.exists():
            return cls({}, check)
        data = json.loads(path.read_text())
        if data.get("key_check") != check:
            raise InputError(
                f"{state_dir.parent} was written "
                + ("with --pseudonymise" if data.get("key_check") else "without --pseudonymise")
                + (" under another key" if data.get("key_check") and check else "")
                + "; ingest into a fresh folder or use the same setting and key"
            )
        return cls(dict(data.get("files", {})), check)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"files": self.files, "key_check": self.key_check}, indent=2)
        (state_dir / "manifest.json").write_text(text + "\n")


@dataclass
class _State:
    """Log-derived links and usage of all ingests so far (identifiers already keyed)."""

    links: pd.DataFrame
    usage: pd.DataFrame

    @classmethod
    def load(cls, state_dir: Path) -> _State:
        if not (state_dir / "log_links.parquet").exists():
            return cls(conform(pd.DataFrame(), TABLES["links"]),
                       conform(pd.DataFrame(), TABLES["usage"]))
        return cls(conform(pq.read_table(state_dir / "log_links.parquet").to_pandas(),
                           TABLES["links"]),
                   conform(pq.read_table(state_dir / "log_usage.parquet").to_pandas(),
                           TABLES["usage"]))

    def merge(self, links: pd.DataFrame, usage: pd.DataFrame) -> None:
        # New log files cover new requests, so counts and figures add up.
        self.links = _merge_links(self.links, conform(links, TABLES["links"]))
        both = pd.concat([self.usage, conform(usage, TABLES["usage"])], ignore_index=True)
        self.usage = conform(both.groupby(["account_id", "hour", "model"], sort=False)
                             .sum().reset_index(), TABLES["usage"])

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        _write_table(self.links, state_dir / "log_links.parquet")
        _write_table(self.usage, state_dir / "log_usage.parquet")


def _merge_links(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    both = pd.concat([a, b], ignore_index=True)
    merged = both.groupby(["account_id", "kind", "value"], sort=False).agg(
        first_seen=("first_seen", "min"), last_seen=("last_seen", "max"), count=("count", "sum")
    ).reset_index()
    return conform(merged, TABLES["links"])


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="zstd")
    tmp.replace(path)


def _write_output(out: Path, state: _State, attributes: pd.DataFrame, base: Platform | None,
                  key: bytes | None) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        for suffix in (".csv", ".csv.gz"):
            if (out / f"{name}{suffix}").exists():
                raise InputError(f"{out / (name + suffix)} exists; ingest writes Parquet and a "
                                 "folder must hold one file per table")
    links = state.links
    tables: dict[str, pd.DataFrame] = {}
    if base is not None:
        keyed = pseudonymise(base, key=key) if key is not None else base
        links = _merge_links(keyed.links, links)
        tables |= {k: v for k, v in keyed.tables().items()
                   if k in ("accounts", "ips", "payment_methods", "labels")}
    else:
        first = pd.concat([links[["account_id", "first_seen"]],
                           state.usage[["account_id", "hour"]].rename(
                               columns={"hour": "first_seen"})])
        created = first.groupby("account_id")["first_seen"].min().reset_index()
        tables["accounts"] = conform(created.rename(columns={"first_seen": "created_at"}),
                                     TABLES["accounts"])
    tables["links"] = links
    tables["usage"] = state.usage
    tables["prompt_fingerprints"] = conform(attributes, TABLES["prompt_fingerprints"])
    written = {}
    for name, frame in tables.items():
        _write_table(conform(frame, TABLES[name]), out / f"{name}.parquet")
        written[name] = len(frame)
    return written


def _write_assignments(state_dir: Path, parts: list[pa.Table], clusterer: TemplateClusterer,
                       *, fingerprints: np.ndarray) -> None:
    empty = pa.table({"request_id": pa.array([], pa.string())})
    table = pa.concat_tables(parts) if parts else empty
    columns = {"request_id": table["request_id"]}
    for part in ("user", "system"):
        if f"{part}_doc" not in table.column_names:
            continue
        code = clusterer.cluster_of(table[f"{part}_doc"].to_numpy())
        # numpy's stubs take None as the third argument only when the second is None too.
        names = np.where(code >= 0, fingerprints[np.maximum(code, 0)] if len(fingerprints)
                         else "", None)  # type: ignore[arg-type]
        columns[f"{part}_fingerprint"] = pa.array(names, pa.string())
    pq.write_table(pa.table(columns), state_dir / "assignments.parquet")


def _write_quarantine(directory: Path, refused: list[dict[str, object]]) -> Path | None:
    target = directory / "request_logs.csv"
    if not refused:
        target.unlink(missing_ok=True)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(refused).sort_values(["source_file", "row"], kind="stable")
    ordered = ["source_file", "row", "column", "reason"] + [
        c for c in SCHEMA.names if c in frame.columns]
    frame[ordered].to_csv(target, index=False)
    return target


def assignment_ari(assignments: pd.DataFrame, labels: pd.DataFrame, part: str = "user") -> float:
    """Adjusted Rand index of found vs planted templates over requests (free-form: singleton).

    ``assignments`` from ``ingest_state/assignments.parquet``; ``labels`` with
    ``request_id`` and ``template`` (``part="user"``) or ``system_template``.
    """
    from sklearn.metrics import adjusted_rand_score

    truth_col = "template" if part == "user" else "system_template"
    joined = labels[["request_id", truth_col]].merge(
        assignments[["request_id", f"{part}_fingerprint"]], on="request_id", how="inner")
    n = len(joined)
    singles = pd.Series(np.arange(n).astype(str), index=joined.index)
    truth = joined[truth_col].astype(object).where(joined[truth_col].notna(), "free:" + singles)
    found = joined[f"{part}_fingerprint"].astype(object)
    found = found.where(found.notna(), "none:" + singles)
    return float(adjusted_rand_score(truth.to_numpy(), found.to_numpy())) if n else math.nan
