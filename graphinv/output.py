"""Everything graphinv writes for people: CSV cells, terminal text and files on disk.

Input data is attacker-chosen (an account id, a prompt fingerprint or an IP can be any
text), so three rules hold wherever it leaves graphinv:

* CSV cells that a spreadsheet would run as a formula (first character ``= + - @``, tab or
  carriage return; OWASP's rule) get a leading ``'``: :func:`neutralise_cells`,
  :func:`write_csv`.
* Text printed through Rich is markup-escaped and its control characters (ANSI / OSC
  escapes, carriage returns, newlines) are shown as ``\\x1b``-style escapes:
  :func:`terminal_text`.
* Files are created owner-only (0o600, folders 0o700) and never through a symbolic link
  planted at the target path: :func:`open_private`, :func:`private_dir`.

Examples
--------
>>> neutralise_cell("=HYPERLINK(\\"http://x\\")"), neutralise_cell("acct_1")
('\\'=HYPERLINK("http://x")', 'acct_1')
>>> terminal_text("[link=http://x]acct_1[/link]\\x1b[2J")
'\\\\[link=http://x]acct_1\\\\[/link]\\\\x1b[2J'
"""

from __future__ import annotations

import csv
import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from graphinv.errors import GraphinvError

if TYPE_CHECKING:
    import pandas as pd

# OWASP "CSV injection": cells starting with these are formulas to spreadsheet programs.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
FILE_MODE = 0o600
DIR_MODE = 0o700

# C0 controls (newline and tab included: in a table cell they forge rows), DEL and C1
# controls (U+009B is a one-character CSI on some terminals).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class UnsafePathError(GraphinvError):
    """graphinv refused to write through a symbolic link at an output path."""


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula.

    Non-text values (numbers, missing values) and text that is exactly a number (``-5``,
    ``+1.5e3``: a spreadsheet reads it as that number, never as a formula) are returned
    unchanged, so a quarantined count of ``-5`` still reads ``-5``.

    Examples
    --------
    >>> [neutralise_cell(v) for v in ("-5", "-5+cmd|' /C calc'!A0", "@x", 7)]
    ['-5', "'-5+cmd|' /C calc'!A0", "'@x", 7]
    """
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def neutralise_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names cannot run as formulas.

    Examples
    --------
    >>> import pandas as pd
    >>> f = neutralise_cells(pd.DataFrame({"id": ["@SUM(A1)", "a"], "n": [-1, 2]}))
    >>> f["id"].tolist(), f["n"].tolist()
    (["'@SUM(A1)", 'a'], [-1, 2])
    """
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(
            values.dtype
        ):
            continue
        if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
            values.dtype
        ):
            continue
        out[column] = values.astype(object).map(neutralise_cell)
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index): formula-like cells neutralised, text quoted.

    Every text cell is quoted: pandas leaves a lone carriage return inside a value
    unquoted, which splits the row for most readers.

    Examples
    --------
    >>> import pandas as pd
    >>> csv_text(pd.DataFrame({"id": ["=1+1", "a\\rb"], "n": [1, 2]})).split("\\n")
    ['"id","n"', '"\\'=1+1",1', '"a\\rb",2', '']
    """
    return neutralise_cells(frame).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV to ``path`` (as :func:`csv_text`), owner-only, no link followed."""
    with open_private(path, "w") as handle:
        handle.write(csv_text(frame))
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` owner-only, refusing a symbolic link there."""
    with open_private(path, "w") as handle:
        handle.write(text)
    return Path(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as owner-only folders; an existing folder is kept as is."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


@contextmanager
def open_private(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path`` for writing, truncated, mode 0o600, never through a symbolic link.

    ``O_NOFOLLOW`` refuses a link planted at ``path`` (which would otherwise redirect the
    write to the link's target); a file that already exists is made owner-only too.

    Raises
    ------
    UnsafePathError
        ``path`` is a symbolic link.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = Path(tmp) / "out.csv"
    ...     with open_private(target) as handle:
    ...         _ = handle.write("a,b\\n")
    ...     oct(target.stat().st_mode & 0o777)
    '0o600'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"open_private writes only ('w' or 'wb'), not {mode!r}")
    path = Path(path)
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{path} is a symbolic link; graphinv does not write through links "
                "(remove it, or choose another output path)"
            ) from exc
        raise
    try:
        os.fchmod(descriptor, FILE_MODE)
        handle: IO[Any] = (
            os.fdopen(descriptor, mode, encoding="utf-8")
            if "b" not in mode
            else os.fdopen(descriptor, mode)
        )
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        yield handle


def terminal_text(value: Any) -> str:
    """``value`` as text safe to print through Rich: markup escaped, controls made visible.

    Examples
    --------
    >>> terminal_text("[/x]"), terminal_text("a\\nb"), terminal_text(3)
    ('\\\\[/x]', 'a\\\\nb', '3')
    """
    from rich.markup import escape

    return escape(visible_controls(value))


def visible_controls(value: Any) -> str:
    """``value`` as text with control characters shown as escapes (for markup-free output).

    Examples
    --------
    >>> visible_controls("a\x1b]8;;http://x\x07b")
    'a\\\\x1b]8;;http://x\\\\x07b'
    """
    return _CONTROL.sub(_visible, str(value))


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")
