"""Write a platform's tables to a folder: Parquet (default), CSV or gzip CSV.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from graphinv.synth import generate
>>> with tempfile.TemporaryDirectory() as d:
...     sizes = write_platform(generate(n_accounts=1_000), Path(d), fmt="csv")
>>> sorted(sizes)[:2]
['accounts', 'ips']
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from graphinv.errors import ConfigError
from graphinv.schema import Platform

FORMATS = ("parquet", "csv", "csv.gz")


def write_platform(
    platform: Platform, out_dir: Path, *, fmt: str = "parquet"
) -> dict[str, tuple[int, int]]:
    """Write every present table to ``out_dir/<table>.<fmt>``.

    Parameters
    ----------
    platform
        The tables to write.
    out_dir
        Folder, created if missing; existing files of the same names are replaced.
    fmt
        ``parquet`` (zstd), ``csv`` or ``csv.gz``. Timestamps are ISO 8601 UTC in CSV.

    Returns
    -------
    dict
        Table name -> (rows, bytes written).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {list(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[int, int]] = {}
    for name, frame in platform.tables().items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path, compression="zstd")
        elif fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            with pa.CompressedOutputStream(str(path), "gzip") as stream:
                pacsv.write_csv(table, stream)
        written[name] = (table.num_rows, path.stat().st_size)
    return written
