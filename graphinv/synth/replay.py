"""One more day of traffic on an existing platform, and the links it leaves.

Extraction accounts replay their previous day through the day's exits of their ring's
proxy pool and the ring's current templates; everyone else replays the same weekday a week
earlier (the day before when the window is shorter than a week) through the IPs and
templates they already use, weighted by how much they used them. The model of a replayed
benign hour is drawn from the account's own mix of the last week, so adoption of a new
model does not slide back.

Examples
--------
>>> from graphinv.synth import generate, next_day
>>> day1 = next_day(generate(preset="small", seed=0, n_accounts=1_000), seed=0)
>>> int(day1.usage["hour"].dt.day.max())
17
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphinv.schema import TABLES, Platform
from graphinv.synth.arrays import ragged

_DAY, _HOUR = pd.Timedelta(days=1), pd.Timedelta(hours=1)
_KEY = ["account_id", "kind", "value"]
_USAGE = list(TABLES["usage"].column_names)
# Exits of its pool a ring works through per day (the generator's proxy_ips_per_day).
_EXITS_PER_DAY = (3, 12)
# A replayed hour keeps this share of its requests: volumes stay under the rate limits.
_KEEP = (0.85, 1.0)


@dataclass(frozen=True)
class DayPlan:
    """What the events of the first new day decided, for the traffic of every new day.

    ``new_accounts``: ``account_id``, ``donor`` (whose previous day it replays),
    ``ring_id``, ``role`` (``respawned`` or ``joined``), ``created_at``. ``card_of`` maps a
    new account to its card. ``pools`` and ``templates`` hold (``ring_id``, ``value``) of
    every ring's proxy exits and current templates; ``ring_of`` maps every live extraction
    account to its ring.
    """

    new_accounts: pd.DataFrame
    card_of: pd.Series
    pools: pd.DataFrame
    templates: pd.DataFrame
    ring_of: pd.Series


def add_day(
    p: Platform, plan: DayPlan, *, start: pd.Timestamp, first: bool, rng: np.random.Generator
) -> Platform:
    """``p`` with the day from ``start`` appended: usage rows, new and bumped links.

    ``first`` marks the day the new accounts sign up: their previous day is their donor's.
    """
    rows = _rows(p, plan, start, first, rng)
    rows["ip"], rows["tpl"] = _identifiers(p, plan, rows, rng)
    seen = [
        pd.DataFrame(
            {
                "account_id": rows["account_id"],
                "kind": kind,
                "value": rows[col],
                "t": rows["t"],
                "count": rows["requests"],
            }
        ).dropna(subset=["value"])
        for kind, col in (("ip", "ip"), ("prompt_fingerprint", "tpl"))
    ]
    if first:
        seen.append(_signup_links(p, plan, rng))
    usage = rows.groupby(["account_id", "hour", "model"], sort=True)[_USAGE[3:]].sum().reset_index()
    usage = pd.concat([p.usage, usage[_USAGE]], ignore_index=True)
    links = _merge_links(p.links, pd.concat(seen, ignore_index=True))
    links = _bump_account_links(links, usage, rows, p.table("labels"))
    return dataclasses.replace(p, links=links, usage=usage)


def _rows(
    p: Platform, plan: DayPlan, start: pd.Timestamp, first: bool, rng: np.random.Generator
) -> pd.DataFrame:
    u = p.usage
    days_seen = (start - u["hour"].min().floor("D")) // _DAY
    back = 7 if days_seen >= 7 else 1
    labels = p.table("labels")
    ext = u["account_id"].isin(labels.loc[labels["kind"] == "extraction", "account_id"])
    src_ext = u[ext & (u["hour"] >= start - _DAY) & (u["hour"] < start)]
    week_ago = start - back * _DAY
    src_other = u[~ext & (u["hour"] >= week_ago) & (u["hour"] < week_ago + _DAY)]
    parts = [
        src_ext.assign(hour=src_ext["hour"] + _DAY),
        src_other.assign(hour=src_other["hour"] + back * _DAY),
    ]
    if first:
        new = plan.new_accounts
        heir = new[new["role"] == "respawned"].set_index("donor")["account_id"]
        parts[0] = parts[0].assign(account_id=parts[0]["account_id"].replace(heir))
        # A recruit replays a ring-mate's day, shifted so the ring's turns spread further.
        joined = new.loc[new["role"] == "joined", ["account_id", "donor"]]
        joined = joined.assign(shift=rng.integers(1, 24, len(joined)))
        copies = src_ext.merge(
            joined.rename(columns={"account_id": "new_id"}), left_on="account_id", right_on="donor"
        )
        since = copies["hour"] - (start - _DAY) + copies["shift"] * _HOUR
        # pandas-stubs has no Timedelta-series % Timedelta; pandas has.
        within = since % _DAY  # type: ignore[operator]
        parts.append(copies.assign(account_id=copies["new_id"], hour=start + within)[_USAGE])
    rows = pd.concat(parts, ignore_index=True)
    accounts = p.accounts.set_index("account_id")
    status = rows["account_id"].map(accounts["status"])
    opened = rows["account_id"].map(accounts["created_at"]).dt.floor("h") + _HOUR
    rows = rows[(status == "active") & (rows["hour"] >= opened)].reset_index(drop=True)

    keep = rng.uniform(*_KEEP, len(rows))
    requests = np.floor(rows["requests"].to_numpy() * keep).astype(np.int64)
    scale = requests / np.maximum(rows["requests"].to_numpy(), 1)
    rows = rows.assign(
        requests=requests,
        input_tokens=np.maximum(rows["input_tokens"].to_numpy() * scale, 1).astype(np.int64),
        output_tokens=np.maximum(rows["output_tokens"].to_numpy() * scale, 1).astype(np.int64),
    )
    rows = rows[rows["requests"] > 0].reset_index(drop=True)
    not_ext = ~rows["account_id"].isin(plan.ring_of.index)
    rows.loc[not_ext, "model"] = _recent_models(u, rows.loc[not_ext, "account_id"], start, rng)
    seconds = rng.integers(0, 3600, len(rows))
    return rows.assign(t=rows["hour"] + pd.to_timedelta(seconds, unit="s"))


def _recent_models(
    u: pd.DataFrame, accounts: pd.Series, start: pd.Timestamp, rng: np.random.Generator
) -> np.ndarray:
    """A model per row, drawn from its account's mix of the last seven days."""
    recent = u[u["hour"] >= start - 7 * _DAY]
    models = np.sort(recent["model"].unique())
    index = pd.Index(recent["account_id"].unique())
    mix = np.zeros((len(index), len(models)))
    np.add.at(
        mix,
        (
            index.get_indexer(recent["account_id"]),
            np.searchsorted(models, recent["model"].to_numpy()),
        ),
        1,
    )
    cdf = np.cumsum(mix, axis=1) / np.maximum(mix.sum(axis=1, keepdims=True), 1)
    at = np.maximum(index.get_indexer(accounts), 0)
    pick = (rng.random(len(accounts))[:, None] > cdf[at]).sum(axis=1)
    return models[np.minimum(pick, len(models) - 1)]


def _identifiers(
    p: Platform, plan: DayPlan, rows: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The IP and template of every row (None where the account has none)."""
    ip = np.full(len(rows), None, dtype=object)
    tpl = np.full(len(rows), None, dtype=object)
    ring = rows["account_id"].map(plan.ring_of)
    ext = ring.notna().to_numpy()
    ip[ext] = _pool_pick(plan.pools, ring[ext], rng, rotate=True)
    tpl[ext] = _pool_pick(plan.templates, ring[ext], rng, rotate=False)
    for kind, out in (("ip", ip), ("prompt_fingerprint", tpl)):
        own = p.links[p.links["kind"] == kind]
        out[~ext] = _weighted_pick(own, rows.loc[~ext, "account_id"], rng)
    return ip, tpl


def _pool_pick(
    pools: pd.DataFrame, ring: pd.Series, rng: np.random.Generator, *, rotate: bool
) -> np.ndarray:
    """One value per row from its ring's pool; ``rotate``: from today's few exits only."""
    index = pd.Index(np.sort(pools["ring_id"].unique()))
    offsets, items = ragged(
        index.get_indexer(pools["ring_id"]), pools["value"].to_numpy(dtype=object), len(index)
    )
    size = np.diff(offsets)
    today = np.minimum(rng.integers(_EXITS_PER_DAY[0], _EXITS_PER_DAY[1] + 1, len(index)), size)
    if not rotate:
        today = size
    first = (rng.random(len(index)) * size).astype(np.int64)
    g = index.get_indexer(ring)
    has = (g >= 0) & (size[np.maximum(g, 0)] > 0)
    out = np.full(len(ring), None, dtype=object)
    gh = g[has]
    j = (first[gh] + (rng.random(len(gh)) * today[gh]).astype(np.int64)) % size[gh]
    out[has] = items[offsets[gh] + j]
    return out


def _weighted_pick(own: pd.DataFrame, accounts: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """One of the account's own values per row, in proportion to its past ``count``."""
    index = pd.Index(accounts.unique())
    own = own[own["account_id"].isin(index)]
    owner = index.get_indexer(own["account_id"])
    order = np.argsort(owner, kind="stable")
    weight = own["count"].to_numpy(dtype=float)[order]
    values = own["value"].to_numpy(dtype=object)[order]
    total = np.bincount(owner, weights=own["count"].to_numpy(dtype=float), minlength=len(index))
    before = np.cumsum(total) - total
    cum = np.cumsum(weight)
    a = index.get_indexer(accounts)
    x = before[a] + rng.random(len(a)) * total[a]
    at = np.minimum(np.searchsorted(cum, x, side="right"), max(len(cum) - 1, 0))
    out = np.full(len(a), None, dtype=object)
    has = total[a] > 0
    out[has] = values[at[has]]
    return out


def _signup_links(p: Platform, plan: DayPlan, rng: np.random.Generator) -> pd.DataFrame:
    """Sign-up IP, card and API client of every new account.

    A respawned ring signs its accounts up through its exits in turn, so the whole pool,
    reused and fresh, is seen at once; a recruit signs up through one exit at random.
    """
    new = plan.new_accounts.sort_values(["ring_id", "account_id"], ignore_index=True)
    index = pd.Index(np.sort(plan.pools["ring_id"].unique()))
    offsets, items = ragged(
        index.get_indexer(plan.pools["ring_id"]),
        plan.pools["value"].to_numpy(dtype=object),
        len(index),
    )
    g = index.get_indexer(new["ring_id"])
    size = np.where(g >= 0, np.diff(offsets)[np.maximum(g, 0)], 0)
    turn = new.groupby("ring_id").cumcount().to_numpy()
    turn = np.where(new["role"] == "respawned", turn, rng.integers(0, 1 << 30, len(new)))
    has = size > 0
    ip = np.full(len(new), None, dtype=object)
    ip[has] = items[offsets[g[has]] + turn[has] % size[has]]
    clients = p.links[p.links["kind"] == "api_client"].groupby("account_id")["value"].first()
    created = new["created_at"]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "account_id": new["account_id"],
                    "kind": "ip",
                    "value": ip,
                    "t": created,
                    "count": 1,
                }
            ),
            pd.DataFrame(
                {
                    "account_id": new["account_id"],
                    "kind": "payment_method",
                    "value": new["account_id"].map(plan.card_of),
                    "t": created + pd.Timedelta(seconds=60),
                    "count": 1,
                }
            ),
            pd.DataFrame(
                {
                    "account_id": new["account_id"],
                    "kind": "api_client",
                    "value": new["donor"].map(clients),
                    "t": created,
                    "count": 1,
                }
            ),
        ],
        ignore_index=True,
    ).dropna(subset=["value"])


def _merge_links(links: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """Bump links seen again (last_seen, count) and append the new ones, in key order."""
    agg = (
        seen.groupby(_KEY, sort=True)
        .agg(first=("t", "min"), last=("t", "max"), n=("count", "sum"))
        .reset_index()
    )
    m = links.merge(agg, on=_KEY, how="left")
    hit = m["n"].notna().to_numpy()
    out = links.copy()
    out.loc[hit, "last_seen"] = np.maximum(out.loc[hit, "last_seen"], m.loc[hit, "last"])
    out.loc[hit, "count"] = out.loc[hit, "count"] + m.loc[hit, "n"].astype(np.int64)
    fresh = agg.merge(links[_KEY], on=_KEY, how="left", indicator=True)
    fresh = fresh[fresh["_merge"] == "left_only"]
    appended = pd.DataFrame(
        {
            "account_id": fresh["account_id"],
            "kind": fresh["kind"],
            "value": fresh["value"],
            "first_seen": fresh["first"],
            "last_seen": fresh["last"],
            "count": fresh["n"].astype(np.int64),
        }
    )
    return pd.concat([out, appended], ignore_index=True)


def _bump_account_links(
    links: pd.DataFrame, usage: pd.DataFrame, rows: pd.DataFrame, labels: pd.DataFrame
) -> pd.DataFrame:
    """Cards and API clients of today's active accounts: seen until their last request.

    Counts follow the generator: 1 + active hours / 5 for a card, active hours for a
    client. A card tester's cards count tries, not traffic, and stay as they are.
    """
    last = rows.groupby("account_id")["t"].max()
    hours = usage.groupby("account_id").size()
    testers = labels.loc[labels["kind"] == "card_testing", "account_id"]
    out = links.copy()
    for kind, count in (("payment_method", 1 + hours // 5), ("api_client", hours)):
        sel = (out["kind"] == kind) & out["account_id"].isin(last.index)
        if kind == "payment_method":
            sel &= ~out["account_id"].isin(testers)
        acc = out.loc[sel, "account_id"]
        out.loc[sel, "last_seen"] = np.maximum(out.loc[sel, "last_seen"], acc.map(last))
        out.loc[sel, "count"] = np.maximum(out.loc[sel, "count"], acc.map(count)).astype(np.int64)
    return out
