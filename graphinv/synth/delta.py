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

import pandas as pd

from graphinv.schema import TABLES, Platform


def next_day_delta(previous: Platform, current: Platform) -> Platform:
    """Rows of ``current`` whose key is new or whose values differ from ``previous``.

    Rows are whole (links carry their cumulative ``count`` and first ``first_seen``), so
    loading the delta over ``previous`` with the store's merge rule (links: first_seen min,
    last_seen and count max; accounts: created_at min; everything else: the newer value)
    gives ``current``. Tables with nothing new come back empty, with their columns.

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
    >>> banned = (day1.accounts["status"] == "banned").sum() - (
    ...     day0.accounts["status"] == "banned").sum()
    >>> bool(len(delta.accounts) == banned + len(day1.accounts) - len(day0.accounts))
    True
    """
    tables: dict[str, pd.DataFrame | None] = {}
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
    return Platform(**tables)
