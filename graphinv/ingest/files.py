"""Reading input files defensively: streamed, size-capped, line-capped, UTF-8 checked.

An input file is attacker-shaped as much as its values are: a gzip member that inflates a
thousandfold, a line of a gigabyte, a header of a million columns. Files are therefore
streamed in blocks through :class:`GuardedStream`, which checks every block as it passes
(inflated size, decompression ratio, line length, UTF-8) and stops at the first breach
with an :class:`~graphinv.errors.InputError` naming the file and line. Nothing is read
whole into memory before parsing.

Examples
--------
>>> import io
>>> stream = GuardedStream(io.BytesIO(b"a,b\\n1,2\\n"), Path("t.csv"))
>>> stream.first_line(), stream.read()
(b'a,b', b'a,b\\n1,2\\n')
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphinv.errors import InputError

MiB = 1024 * 1024
GiB = 1024 * MiB
_BOM = codecs.BOM_UTF8
_NEWLINE = 10


@dataclass(frozen=True)
class ReadLimits:
    """Caps that make a hostile file fail fast instead of exhausting memory or time.

    Parameters
    ----------
    max_line_bytes
        Longest physical line. A valid row is a few hundred bytes (values are capped at
        :data:`graphinv.schema.MAX_VALUE_CHARS` characters).
    max_text_bytes
        Most bytes of text one file may hold (after decompression).
    max_inflation
        Most bytes of text per compressed byte of a ``.gz`` file, checked once more than
        ``inflation_floor`` bytes came out. CSV exports compress 4–10 fold (measured on the
        synthetic 1M-account platform); a bomb of repeated rows compresses 300-fold, one
        of a repeated byte 1000-fold. The cap also bounds memory: a 3 MB bomb stops after
        about 60 MB of text.
    inflation_floor
        Text read before the ratio is checked (a small file may compress very well).
    block_bytes
        Bytes read per step.
    """

    max_line_bytes: int = MiB
    max_text_bytes: int = 16 * GiB
    max_inflation: int = 20
    inflation_floor: int = 32 * MiB
    block_bytes: int = MiB

    def __post_init__(self) -> None:
        for name in ("max_line_bytes", "max_text_bytes", "max_inflation", "block_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReadLimits.{name} must be positive")
        if self.inflation_floor < 0:
            raise ValueError("ReadLimits.inflation_floor must not be negative")


class GuardedStream(io.RawIOBase):
    """A binary stream over ``source`` that checks each block before passing it on.

    Raises :class:`InputError` (naming ``file`` and the line) when the text grows past
    ``limits.max_text_bytes``, a ``.gz`` inflates more than ``limits.max_inflation`` fold,
    a line is longer than ``limits.max_line_bytes``, or bytes are not UTF-8. A UTF-8
    byte-order mark at the start is dropped.

    Parameters
    ----------
    source
        The (decompressing) binary stream of the file.
    file
        The file's path, for messages.
    compressed_bytes
        Size of the file on disk when ``source`` decompresses it, else None.
    limits
        The caps.
    """

    def __init__(
        self,
        source: io.BufferedIOBase,
        file: Path,
        *,
        compressed_bytes: int | None = None,
        limits: ReadLimits | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._file = file
        self._compressed = compressed_bytes
        self._limits = limits or ReadLimits()
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._total = 0
        self._line = 1  # the line the next byte belongs to
        self._line_bytes = 0  # bytes of that line seen so far
        self._pending = b""  # bytes pulled (and checked) but not yet handed out
        self._started = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = self._pull(len(buffer))
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def first_line(self) -> bytes | None:
        """The first line without its line ending (None for an empty file); not consumed."""
        while b"\n" not in self._pending:
            block = self._pull(self._limits.block_bytes)
            if not block:
                break
            self._pending += block
        if not self._pending:
            return None
        return self._pending.split(b"\n", 1)[0].rstrip(b"\r")

    def at_end(self) -> None:
        """Check what a file's end can still reveal: an unfinished UTF-8 sequence."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{self._file}: not UTF-8 text (the file ends inside a character on line "
                f"{self._line}); re-export as UTF-8"
            ) from exc

    def _pull(self, size: int) -> bytes:
        block = self._source.read(max(size, 1))
        if not self._started:
            # The byte-order mark may arrive split over reads of a few bytes.
            while block and len(block) < len(_BOM) and _BOM.startswith(block):
                more = self._source.read(len(_BOM) - len(block))
                if not more:
                    break
                block += more
        if not block:
            self.at_end()
            return b""
        if not self._started:
            self._started = True
            if block.startswith(_BOM):
                block = block[len(_BOM) :]
                if not block:
                    return self._pull(size)
        self._check(block)
        return block

    def _check(self, block: bytes) -> None:
        limits = self._limits
        self._total += len(block)
        if self._total > limits.max_text_bytes:
            raise InputError(
                f"{self._file}: more than {limits.max_text_bytes:,} bytes of text (reached on "
                f"line {self._line}); graphinv refuses files this large"
            )
        if (
            self._compressed is not None
            and self._total > limits.inflation_floor
            and self._total > limits.max_inflation * max(self._compressed, 1)
        ):
            raise InputError(
                f"{self._file}: inflates more than {limits.max_inflation}-fold "
                f"({self._compressed:,} compressed bytes gave {self._total:,} by line "
                f"{self._line}); refused as a decompression bomb"
            )
        self._check_utf8(block)
        self._check_lines(block)

    def _check_utf8(self, block: bytes) -> None:
        if block.isascii() and not self._decoder.getstate()[0]:
            return
        held = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(block)
        except UnicodeDecodeError as exc:
            at = max(exc.start - held, 0)
            line = self._line + block[:at].count(b"\n")
            raise InputError(
                f"{self._file}: not UTF-8 text (byte 0x{block[at]:02x} on line {line}); "
                "re-export as UTF-8"
            ) from exc

    def _check_lines(self, block: bytes) -> None:
        cap = self._limits.max_line_bytes
        ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == _NEWLINE)
        if len(ends) == 0:
            self._line_bytes += len(block)
            if self._line_bytes > cap:
                self._too_long(self._line)
            return
        # Lengths of the lines this block finishes, the first one carrying on from before.
        lengths = np.diff(ends, prepend=-1) - 1
        lengths[0] += self._line_bytes
        over = np.flatnonzero(lengths > cap)
        if len(over):
            self._too_long(self._line + int(over[0]))
        self._line += len(ends)
        self._line_bytes = len(block) - int(ends[-1]) - 1
        if self._line_bytes > cap:
            self._too_long(self._line)

    def _too_long(self, line: int) -> None:
        raise InputError(
            f"{self._file}: line {line} is longer than {self._limits.max_line_bytes:,} bytes; "
            "a row of this table is a few hundred bytes (a broken quote or a wrong file?)"
        )
