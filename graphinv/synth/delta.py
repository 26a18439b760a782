"""The rows a later platform adds or changes, for incremental loading.

Examples
--------
>>> from graphinv.synth import generate, next_day
>>> day0 = generate(preset="small", seed=0, n_accounts=1_000)
>>> delta = next_day_delta(day0, next_day(day0, seed=0))
>>> len(delta.usage) > 0, delta.usage["hour"].min() >= day0.usage["hour"].max()
(True, True)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from graphinv.schema import TABLES, Platform


def next_day_delta(previous: Platform, current: Platform) -> Platform:
    """Rows of ``current`` whose key is new or whose values differ from ``previous``.

    Rows are whole (links carry their cumulative ``count`` and first ``first_seen``), so
    loading the delta over ``previous`` with the store's merge rule (links: first_seen min,
    last_seen and count max; accounts: created_at min; everything else: the newer value)
    gives ``current``. Tables with nothing new come back empty, with their columns. The
    accounts table also repeats, unchanged, every account that the new links, usage and
    labels name, so the delta is a folder that loads on its own.

    Parameters
    ----------
    previous, current
        The platform before and after, e.g. ``current = next_day(previous)``.

    Returns
    -------
    Platform
        Every table present in ``current``, holding only its new or changed rows.

    Examples
    --------
    >>> from graphinv.synth import generate, next_day
    >>> day0 = generate(preset="small", seed=2, n_accounts=1_000)
    >>> day1 = next_day(day0, seed=2)
    >>> delta = next_day_delta(day0, day1)
    >>> set(delta.links["account_id"]) <= set(delta.accounts["account_id"])
    True
    >>> bool(len(delta.usage) < len(day1.usage))
    True
    """
    # Platform's keyword arguments: each table's changed rows, None where a platform has none.
    tables: dict[str, Any] = {}
    for name, spec in TABLES.items():
        now, before = getattr(current, name), getattr(previous, name)
        if now is None or before is None:
            tables[name] = now
            continue
        key = list(spec.key)
        m = now.merge(before, on=key, how="left", suffixes=("", "__before"), indicator=True)
        changed = m["_merge"].eq("left_only").to_numpy().copy()
        for col in spec.column_names:
            if col in key:
                continue
            a, b = m[col], m[f"{col}__before"]
            same = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
            changed |= ~same.to_numpy()
        tables[name] = now[changed].reset_index(drop=True)
    # A folder is loaded on its own (links and usage must name accounts of its own
    # accounts file), so the delta carries, unchanged, every account its rows mention;
    # loading an unchanged row again is a no-op under the merge rule.
    mentioned = pd.concat(
        [frame["account_id"] for name in ("links", "usage", "labels")
         if (frame := tables.get(name)) is not None]
    )
    tables["accounts"] = current.accounts[
        current.accounts["account_id"].isin(tables["accounts"]["account_id"])
        | current.accounts["account_id"].isin(mentioned)
    ].reset_index(drop=True)
    return Platform(**tables)
