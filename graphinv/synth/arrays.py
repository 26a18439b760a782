"""Vectorised building blocks: group sizes, ragged lists, sort-based aggregation, id strings.

Examples
--------
>>> import numpy as np
>>> ranks_in_groups(np.array([2, 3])).tolist()
[0, 1, 0, 1, 2]
>>> dotted_quads(np.array([3232235777])).to_pylist()
['192.168.1.1']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def ranks_in_groups(sizes: np.ndarray) -> np.ndarray:
    """Position of each element inside its group, for groups laid out one after another."""
    starts = np.cumsum(sizes) - sizes
    return np.arange(int(sizes.sum())) - np.repeat(starts, sizes)


def partition(total: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Group sizes, log-uniform in [lo, hi], that add up to ``total`` exactly.

    A remainder smaller than ``lo`` joins the smallest group, so a group may exceed ``hi``
    by less than ``lo``; a total below ``lo`` makes one small group.
    """
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    draws = max(4, int(2 * total / max(lo, 1)) + 4)
    sizes = np.exp(rng.uniform(np.log(lo), np.log(hi + 1), draws)).astype(np.int64)
    sizes = np.clip(sizes, lo, hi)
    n = int(np.searchsorted(np.cumsum(sizes), total)) + 1
    sizes = sizes[:n].copy()
    sizes[-1] = total - sizes[:-1].sum()
    if sizes[-1] < lo and n > 1:
        rest = sizes[-1]
        sizes = sizes[:-1]
        sizes[np.argmin(sizes)] += rest
    return sizes


def ragged(owner: np.ndarray, items: np.ndarray, n_owners: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists (offsets, items) of the items each owner holds, owners 0..n_owners-1."""
    order = np.argsort(owner, kind="stable")
    offsets = np.zeros(n_owners + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n_owners), out=offsets[1:])
    return offsets, items[order]


def pick(
    offsets: np.ndarray, items: np.ndarray, owners: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One item per query, drawn uniformly from the ragged list of the query's owner.

    Owners with an empty list get -1.
    """
    n = offsets[owners + 1] - offsets[owners]
    k = (rng.random(len(owners)) * n).astype(np.int64)
    pos = offsets[owners] + k
    out = items[np.minimum(pos, len(items) - 1)] if len(items) else np.zeros(len(owners), int)
    return np.where(n > 0, out, -1)


def group_by(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, start of each run of equal keys in sorted order, and the unique keys."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.zeros(0, int)
    return order, starts, k[starts]


def numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Strings like ``acct_0000001`` for integer ``numbers``."""
    digits = pc.utf8_lpad(pa.array(numbers.astype(np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def hex_ids(prefix: str, n: int, rng: np.random.Generator, nbytes: int = 8) -> pa.Array:
    """``n`` distinct random hex strings with a prefix, e.g. ``pm_3fa9c0d1e2b4a7f6``."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    # Multiplying a permutation by an odd constant is a bijection mod 2**32: distinct heads.
    head = rng.permutation(n).astype(np.uint64) * np.uint64(2654435761) + np.uint64(
        rng.integers(2**32)
    )
    head = (head % np.uint64(2**32)).astype(">u4").view(np.uint8).reshape(n, 4)
    raw[:, :4] = head
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = lut[np.stack([raw >> 4, raw & 15], axis=-1)].reshape(n, 2 * nbytes)
    text = pa.array(chars.view(f"S{2 * nbytes}").ravel(), type=pa.binary()).cast(pa.string())
    return pc.binary_join_element_wise(prefix, text, "")


def dotted_quads(ints: np.ndarray) -> pa.Array:
    """IPv4 integers as dotted-quad strings."""
    ints = ints.astype(np.uint32)
    parts = [
        pa.array(((ints >> s) & 255).astype(np.int64)).cast(pa.string()) for s in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*parts, ".")
