"""Integer codes for string ids, computed in Arrow's C++ hash tables.

Sweeps look millions of account ids and identifier values up in one another (which row
of ``accounts`` is this link's account, is this account live). pandas does these lookups
on Arrow-backed strings one Python object at a time; the functions here hand them to
``pyarrow.compute`` instead, which gives the same answers as
:meth:`pandas.Index.get_indexer` and :meth:`pandas.Series.isin` for ids that are unique
where they are the index (the store's keys are).

Examples
--------
>>> import pandas as pd
>>> positions(pd.Series(["b", "x", None, "a"]), pd.Index(["a", "b", "c"])).tolist()
[1, -1, -1, 0]
>>> is_in(pd.Series(["b", "x", "a"]), ["a", "c"]).tolist()
[False, False, True]

A sweep factorises the links' values in projection, campaigns, features and lineage;
:func:`factorize` hashes an Arrow-backed column once and hands the same codes to each.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["factorize", "is_in", "positions", "strings"]


def strings(values: Any) -> pa.Array:
    """``values`` (a Series, Index, array or list of str) as one Arrow large_string array.

    Non-string values are turned into their ``str`` text, as ``astype(str)`` would.
    """
    if isinstance(values, pa.ChunkedArray):
        array = values.combine_chunks()
    elif isinstance(values, pa.Array):
        array = values
    else:
        try:
            array = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(pd.Series(values).astype(str), from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pa.array(pd.Series(array.to_pandas()).astype(str), from_pandas=True)
    return array.cast(pa.large_string())


def positions(values: Any, index: Any) -> np.ndarray:
    """Position of each of ``values`` in ``index`` (−1 when absent or missing).

    The same as ``pd.Index(index).get_indexer(values)`` on string ids when ``index`` is
    unique; for a repeated id, its first position.

    Examples
    --------
    >>> positions(["c", "a"], ["a", "b", "c"]).tolist()
    [2, 0]
    """
    found = pc.index_in(strings(values), value_set=strings(index))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def is_in(values: Any, wanted: Iterable[Any]) -> np.ndarray:
    """Per value, whether it is one of ``wanted`` (missing values never are)."""
    wanted = wanted if isinstance(wanted, pd.Series | pd.Index | np.ndarray) else list(wanted)
    if not len(wanted):
        return np.zeros(len(values), dtype=bool)
    found = pc.is_in(strings(values), value_set=strings(wanted), skip_nulls=True)
    return found.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


# id of an Arrow column -> (weak reference to it, its codes, the first row of each code).
# Arrow arrays are immutable, so codes stay right while their column lives; a column
# that changes is a new array with a new entry. The distinct values themselves are not
# kept (millions of strings): each caller takes them from the column by first row.
_FACTORIZED: dict[int, tuple[weakref.ref, np.ndarray, np.ndarray]] = {}


def factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(values)``, hashed once per Arrow-backed column.

    The codes come back read-only (several callers share them). Columns not backed by
    Arrow are factorised on every call.

    Examples
    --------
    >>> column = pd.Series(["b", "a", None, "b"], dtype="str")
    >>> codes, uniques = factorize(column)
    >>> codes.tolist(), uniques.tolist(), factorize(column)[0] is codes
    ([0, 1, -1, 0], ['b', 'a'], True)
    >>> factorize(column)[1].equals(pd.factorize(column)[1])
    True
    """
    array = values.array
    if not isinstance(array, pd.arrays.ArrowExtensionArray):
        return pd.factorize(values)
    column = array.__arrow_array__()
    key = id(column)
    held = _FACTORIZED.get(key)
    if held is not None and held[0]() is column:
        _, codes, first = held
        return codes, pd.Index(array.take(first))
    codes, uniques = pd.factorize(values)
    codes.flags.writeable = False
    # Codes are numbered in order of first appearance: code k first shows up where the
    # running maximum of the codes reaches k.
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    _FACTORIZED[key] = (weakref.ref(column, _forget(key)), codes, first)
    return codes, uniques


def _forget(key: int) -> Callable[[Any], None]:
    """Drops ``key``'s entry once its column is freed (a later column may reuse the id)."""

    def drop(_: Any) -> None:
        _FACTORIZED.pop(key, None)

    return drop
