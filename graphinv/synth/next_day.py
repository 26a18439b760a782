"""The same platform a day later: bans, respawns, growth and a split, with ground truth.

:func:`next_day` takes a generated platform (tables only, so one read back from disk works
too) and returns the full platform as of one or more days later. At the start of the first
new day the operator side moves:

* a share of extraction rings is **banned** (every live member gets status ``banned`` and
  stops sending traffic) and **respawned** at once: as many fresh accounts, signed up
  within hours, on mostly the same prepaid cards and residential proxy exits, sending the
  same templates. They keep the banned ring's ``ring_id`` and carry the trait
  ``respawned``, so ground truth links them to their predecessor;
* a share of the other rings **grows**: new members (trait ``joined``) on the ring's cards
  and proxies;
* ``n_split`` rings **split**: the members behind part of the ring's cards move to a new
  ring ``<ring_id>_split`` (trait ``split``) that works through a fresh proxy pool.

Traffic of every other account goes on: an extraction account replays its previous day
(rings work around the clock), everyone else replays the same weekday a week earlier; every
replayed hour keeps 85-100 % of its requests. Links of continuing accounts get ``last_seen``
and ``count`` bumped; new identifiers are appended. See docs/synth.md ("Next day").

Examples
--------
>>> from graphinv.synth import generate, next_day
>>> day0 = generate(preset="small", seed=0)
>>> day1 = next_day(day0, seed=0)
>>> len(day1.accounts) > len(day0.accounts), str(day1.usage["hour"].max())
(True, '2025-03-17 23:00:00+00:00')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from graphinv.errors import ConfigError
from graphinv.schema import TABLES, Platform
from graphinv.synth.arrays import hex_ids
from graphinv.synth.replay import DayPlan, add_day
from graphinv.synth.world import HOUR, TRAITS

# Lifecycle traits of later days, after the generator's own (world.TRAITS) in trait strings.
NEXT_DAY_TRAITS = ("joined", "split")
SPLIT_SUFFIX = "_split"
_TRAIT_ORDER = {name: i for i, name in enumerate((*TRAITS, *NEXT_DAY_TRAITS))}
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class NextDayParams:
    """What the operators and the platform do at the start of the next day.

    Parameters
    ----------
    ban_share
        Share of live extraction rings banned and respawned (rounded; at least one when
        positive).
    respawn_reuse
        Share of the banned ring's cards and proxy exits the respawned ring reuses (rounded
        up); the rest are fresh ones of the same kind.
    grow_share
        Share of live extraction rings (rounded) that recruit new members.
    grow_by
        New members as a share of the growing ring's live size (at least one).
    n_split
        Rings that split in two (the largest rings neither banned nor growing).
    split_share
        Share of the splitting ring's members that leave for the new piece.

    Examples
    --------
    >>> NextDayParams().ban_share
    0.25
    """

    ban_share: float = 0.25
    respawn_reuse: float = 0.8
    grow_share: float = 0.2
    grow_by: float = 0.5
    n_split: int = 1
    split_share: float = 0.4

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)} is not in [0, 1]"
            for name in ("ban_share", "respawn_reuse", "grow_share", "split_share")
            if not 0.0 <= getattr(self, name) <= 1.0
        ]
        if self.grow_by < 0:
            problems.append(f"grow_by={self.grow_by} is negative")
        if self.n_split < 0:
            problems.append(f"n_split={self.n_split} is negative")
        if problems:
            raise ConfigError("invalid next-day parameters: " + "; ".join(problems))


def next_day(platform: Platform, *, seed: int = 0, days: int = 1, **params: object) -> Platform:
    """The full platform ``days`` days later, with bans, respawns, growth and splits.

    Parameters
    ----------
    platform
        A synthetic platform (from :func:`graphinv.synth.generate` or an earlier
        ``next_day``), labels included. Nothing is read from disk.
    seed
        Same seed and platform, same result.
    days
        Days to add. The events happen once, at the start of the first new day; later days
        carry the traffic on. Call ``next_day`` again for another round of events.
    **params
        Fields of :class:`NextDayParams`.

    Returns
    -------
    Platform
        Every earlier row kept (banned accounts' ``status`` and label ``traits``, and split
        members' label ``ring_id``, change in place; links are bumped), new accounts, links,
        identifiers and usage appended, and labels for the new accounts.

    Raises
    ------
    ConfigError
        Unknown or out-of-range parameter, ``days < 1``, or a platform without labels or
        usage.

    Examples
    --------
    >>> from graphinv.synth import generate
    >>> day0 = generate(preset="small", seed=1, n_accounts=2_000)
    >>> day1 = next_day(day0, seed=1, ban_share=0.5)
    >>> new = day1.labels.iloc[len(day0.labels):]
    >>> bool(new["traits"].str.contains("respawned|joined").all())
    True
    """
    known = {f.name for f in dataclasses.fields(NextDayParams)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown next-day parameter(s) {unknown}; see docs/synth.md")
    opts = NextDayParams(**params)  # type: ignore[arg-type]
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    if platform.labels is None or platform.usage.empty:
        raise ConfigError("next_day needs a synthetic platform with labels and usage")
    r_events, r_traffic = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    start = (platform.usage["hour"].max() + pd.Timedelta(hours=1)).ceil("D")
    platform, plan = _apply_events(platform, opts, start, r_events)
    for d in range(days):
        platform = add_day(platform, plan, start=start + d * _DAY, first=d == 0, rng=r_traffic)
    return platform


def true_rings(platform: Platform, *, kinds: tuple[str, ...] = ("extraction",)) -> pd.DataFrame:
    """The live true rings: labelled members of ``kinds`` whose account is not banned.

    Banned accounts keep their label (and their links), but they no longer belong to a
    working ring; without them a respawned ring shares no member with its predecessor.

    Returns
    -------
    pandas.DataFrame
        ``ring_id``, ``account_id``, sorted.

    Examples
    --------
    >>> from graphinv.synth import generate
    >>> rings = true_rings(generate(preset="small", seed=0))
    >>> rings["ring_id"].nunique()
    17
    """
    labels = platform.table("labels")
    status = labels["account_id"].map(platform.accounts.set_index("account_id")["status"])
    live = labels["kind"].isin(kinds) & status.ne("banned") & labels["ring_id"].ne("")
    out = labels.loc[live, ["ring_id", "account_id"]]
    return out.sort_values(["ring_id", "account_id"], ignore_index=True)


def _apply_events(
    p: Platform, opts: NextDayParams, start: pd.Timestamp, rng: np.random.Generator
) -> tuple[Platform, DayPlan]:
    """Bans, new accounts, split labels, and the pools every ring works through."""
    live = true_rings(p)
    sizes = live.groupby("ring_id").size()
    rings = sizes.index.to_numpy()
    order = rng.permutation(len(rings))
    n_ban = _count(opts.ban_share, len(rings))
    banned, rest = rings[order[:n_ban]], order[n_ban:]
    by_size = rest[np.argsort(-sizes.to_numpy()[rest], kind="stable")]
    split = rings[by_size[: opts.n_split]]
    rest = rest[~np.isin(rest, by_size[: opts.n_split])]
    grown = rings[rest[: min(_count(opts.grow_share, len(rings)), len(rest))]]

    ring_of = live.set_index("account_id")["ring_id"]
    old_labels = p.table("labels")
    all_ring = old_labels.loc[old_labels["kind"] == "extraction"].set_index("account_id")["ring_id"]
    pools = _ring_values(p.links, all_ring, "ip", min_users=2)
    cards = _ring_values(p.links, all_ring, "payment_method", min_users=1)
    tpls = _ring_values(p.links, all_ring, "prompt_fingerprint", min_users=2)
    recent = tpls[tpls["last_seen"] >= start - _DAY]
    tpls = pd.concat([recent, tpls[~tpls["ring_id"].isin(recent["ring_id"])]])

    # Who joins: one respawn per live member of a banned ring, grow_by per growing ring.
    members = live[live["ring_id"].isin(banned)]
    donors = [members.assign(role="respawned")]
    for ring in grown:
        m = live.loc[live["ring_id"] == ring, "account_id"].to_numpy()
        k = max(1, round(opts.grow_by * len(m)))
        donors.append(
            pd.DataFrame({"ring_id": ring, "account_id": rng.choice(m, k), "role": "joined"})
        )
    new = pd.concat(donors, ignore_index=True).rename(columns={"account_id": "donor"})
    mean = np.where(new["role"] == "respawned", 1.5, 3.0) * HOUR
    offset = np.minimum(rng.exponential(mean), 22 * HOUR).astype(np.int64)
    new["created_at"] = start + pd.to_timedelta(offset, unit="s")
    new = new.iloc[np.lexsort((rng.random(len(new)), new["created_at"].to_numpy()))]
    new["account_id"] = _next_ids(p.accounts["account_id"], len(new))
    new = new.reset_index(drop=True)

    # Respawned rings reuse most of their cards and exits; split pieces get fresh exits.
    old_cards = p.table("payment_methods")
    new_cards, card_of = _respawn_cards(new, cards, old_cards, opts, rng)
    pieces = _split_pieces(live, p.links, split, opts.split_share, rng)
    pools, new_ips = _new_pools(pools, banned, pieces, p.table("ips"), opts, rng)

    status = p.accounts["status"].copy()
    gone = p.accounts["account_id"].isin(members["account_id"])
    status[gone] = "banned"
    donor_rows = p.accounts.set_index("account_id").loc[new["donor"]].reset_index(drop=True)
    accounts = pd.concat(
        [
            p.accounts.assign(status=status),
            donor_rows.assign(
                account_id=new["account_id"].to_numpy(),
                created_at=new["created_at"].to_numpy(),
                status="active",
            ),
        ],
        ignore_index=True,
    )
    labels = old_labels.copy()
    in_banned = labels["account_id"].isin(members["account_id"])
    labels.loc[in_banned, "traits"] = _with_trait(labels.loc[in_banned, "traits"], "banned")
    moved = labels["account_id"].isin(pieces["account_id"])
    labels.loc[moved, "ring_id"] = labels.loc[moved, "ring_id"] + SPLIT_SUFFIX
    labels.loc[moved, "traits"] = _with_trait(labels.loc[moved, "traits"], "split")
    payment_methods = pd.concat([old_cards, new_cards], ignore_index=True)
    labels = pd.concat(
        [labels, _new_labels(new, old_labels, payment_methods, card_of)], ignore_index=True
    )

    plan = DayPlan(
        new_accounts=new[["account_id", "donor", "ring_id", "role", "created_at"]],
        card_of=card_of,
        pools=pools,
        templates=tpls[["ring_id", "value"]].drop_duplicates(),
        ring_of=pd.concat(
            [
                ring_of.drop([*pieces["account_id"], *members["account_id"]]),
                pieces.set_index("account_id")["ring_id"],
                new.set_index("account_id")["ring_id"],
            ]
        ),
    )
    out = dataclasses.replace(
        p,
        accounts=accounts,
        labels=labels,
        payment_methods=payment_methods,
        ips=pd.concat([p.ips, new_ips], ignore_index=True),
    )
    return out, plan


def _count(share: float, n: int) -> int:
    return max(1, round(share * n)) if share > 0 and n else 0


def _ring_values(
    links: pd.DataFrame, ring_of: pd.Series, kind: str, *, min_users: int
) -> pd.DataFrame:
    """(ring_id, value, last_seen) a ring holds: used by ``min_users`` of its accounts, and
    by at least as many of them as by outsiders (which drops CGNAT and VPN hubs)."""
    sel = links[links["kind"] == kind]
    users = sel.groupby("value").size()
    sel = sel.assign(ring_id=sel["account_id"].map(ring_of)).dropna(subset=["ring_id"])
    per = (
        sel.groupby(["ring_id", "value"])
        .agg(n=("account_id", "size"), last_seen=("last_seen", "max"))
        .reset_index()
    )
    outside = per["value"].map(users) - per["n"]
    keep = (per["n"] >= min_users) & (per["n"] >= outside)
    return per.loc[keep, ["ring_id", "value", "last_seen"]].reset_index(drop=True)


def _next_ids(existing: pd.Series, n: int) -> np.ndarray:
    parts = existing.str.extract(r"^(.*?)(\d+)$")
    if parts.isna().any().any() or parts[0].nunique() != 1:
        raise ConfigError("next_day needs account ids of one prefix and a number (acct_0000001)")
    width = int(parts[1].str.len().max())
    first = int(parts[1].astype(np.int64).max()) + 1
    prefix = parts[0].iloc[0]
    return np.array([f"{prefix}{i:0{width}d}" for i in range(first, first + n)], dtype=object)


def _fresh(prefix: str, n: int, taken: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """``n`` new fingerprints that clash with no existing one."""
    out = np.asarray(hex_ids(prefix, n, rng).to_pylist(), dtype=object)
    clash = np.isin(out, taken.to_numpy())
    while clash.any():
        out[clash] = hex_ids(prefix, int(clash.sum()), rng).to_pylist()
        clash = np.isin(out, taken.to_numpy()) | pd.Series(out).duplicated().to_numpy()
    return out


def _respawn_cards(
    new: pd.DataFrame,
    cards: pd.DataFrame,
    payment_methods: pd.DataFrame,
    opts: NextDayParams,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.Series]:
    """Fresh card rows, and the card of every new account.

    A respawned ring's accounts take the reused cards first, then fresh ones of the same
    kind, round-robin, so every reused card is in use again. A joining member takes one of
    its ring's cards.
    """
    card_of = pd.Series(index=new["account_id"], dtype="str")
    fresh_rows = []
    taken = payment_methods["fingerprint"]
    for ring, group in new.groupby("ring_id", sort=True):
        held = np.sort(cards.loc[cards["ring_id"] == ring, "value"].to_numpy(dtype=object))
        if not len(held):
            continue
        resp = group["role"] == "respawned"
        if resp.any():
            keep = rng.choice(held, int(np.ceil(opts.respawn_reuse * len(held))), replace=False)
            n_fresh = len(held) - len(keep)
            like = payment_methods.set_index("fingerprint").loc[rng.choice(held, n_fresh)]
            fresh = like.reset_index(drop=True).assign(
                fingerprint=_fresh("pm_", n_fresh, taken, rng)
            )
            taken = pd.concat([taken, fresh["fingerprint"]])
            fresh_rows.append(fresh)
            deck = np.concatenate([keep, fresh["fingerprint"].to_numpy(dtype=object)])
            ids = group.loc[resp, "account_id"].to_numpy()
            card_of[ids] = deck[np.arange(len(ids)) % len(deck)]
        joined = group.loc[~resp, "account_id"].to_numpy()
        card_of[joined] = rng.choice(held, len(joined))
    columns = list(TABLES["payment_methods"].column_names)
    fresh_cards = (
        pd.concat(fresh_rows, ignore_index=True)[columns]
        if fresh_rows
        else (payment_methods.iloc[:0])
    )
    return fresh_cards, card_of.dropna()


def _split_pieces(
    live: pd.DataFrame,
    links: pd.DataFrame,
    split: np.ndarray,
    share: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """(ring_id of the new piece, account_id) of the members who leave a splitting ring.

    Members leave together with their card, so no card straddles the two pieces.
    """
    pieces = []
    for ring in split:
        m = live.loc[live["ring_id"] == ring, "account_id"]
        held = links[(links["kind"] == "payment_method") & links["account_id"].isin(m)]
        card = held.groupby("account_id")["value"].min().reindex(m).fillna("")
        # Group keys are card values, all strings after the fillna above.
        by_card = cast(dict[str, pd.Index], card.groupby(card).groups)
        order = rng.permutation(sorted(by_card))
        size = np.array([len(by_card[c]) for c in order])
        take = order[: max(1, int(np.searchsorted(np.cumsum(size), share * len(m))))]
        leaving = np.concatenate([np.asarray(by_card[c]) for c in take])
        pieces.append(
            pd.DataFrame({"ring_id": ring + SPLIT_SUFFIX, "account_id": leaving, "from_ring": ring})
        )
    if not pieces:
        return pd.DataFrame({"ring_id": [], "account_id": [], "from_ring": []}, dtype="str")
    return pd.concat(pieces, ignore_index=True)


def _new_pools(
    pools: pd.DataFrame,
    banned: np.ndarray,
    pieces: pd.DataFrame,
    ips: pd.DataFrame,
    opts: NextDayParams,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each ring's proxy pool from now on, and the rows of fresh exits for ``ips``.

    A respawned ring keeps ``respawn_reuse`` of its exits and buys the rest anew; a split
    piece buys a whole pool, sized to its share of the ring. Fresh exits sit in the same
    /16 and ASN as exits of the old pool.
    """
    pools = pools[["ring_id", "value"]]
    keep, wanted = [pools[~pools["ring_id"].isin(banned)]], []
    for ring in banned:
        pool = np.sort(pools.loc[pools["ring_id"] == ring, "value"].to_numpy(dtype=object))
        if not len(pool):
            continue
        kept = rng.choice(pool, int(np.ceil(opts.respawn_reuse * len(pool))), replace=False)
        keep.append(pd.DataFrame({"ring_id": ring, "value": kept}))
        wanted.append((ring, pool, len(pool) - len(kept)))
    for piece, group in pieces.groupby("ring_id", sort=True):
        ring = group["from_ring"].iloc[0]
        pool = np.sort(pools.loc[pools["ring_id"] == ring, "value"].to_numpy(dtype=object))
        if len(pool):
            wanted.append((piece, pool, max(5, int(np.ceil(len(pool) * opts.split_share)))))
    taken = set(ips["ip"])
    attrs = ips.set_index("ip")
    fresh_rows = []
    for ring, pool, n in wanted:
        if n == 0:  # a one-exit pool is reused whole
            continue
        like = rng.choice(pool, n)
        addresses = _fresh_addresses(like, taken, rng)
        taken.update(addresses)
        rows = attrs.loc[like].reset_index(drop=True).assign(ip=addresses)
        rows["prefix"] = [a.rsplit(".", 1)[0] + ".0/24" for a in addresses]
        fresh_rows.append(rows)
        keep.append(pd.DataFrame({"ring_id": ring, "value": addresses}))
    columns = list(TABLES["ips"].column_names)
    fresh = pd.concat(fresh_rows, ignore_index=True)[columns] if fresh_rows else ips.iloc[:0]
    return pd.concat(keep, ignore_index=True), fresh


def _fresh_addresses(like: np.ndarray, taken: set[str], rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    for ip in like:
        head = ip.rsplit(".", 2)[0]
        while True:
            candidate = f"{head}.{rng.integers(0, 256)}.{rng.integers(1, 255)}"
            if candidate not in taken and candidate not in out:
                out.append(candidate)
                break
    return out


def _with_trait(traits: pd.Series, name: str) -> pd.Series:
    return traits.map(lambda t: _join_traits([*t.split(";"), name]))


def _join_traits(names: list[str]) -> str:
    return ";".join(sorted({n for n in names if n}, key=_TRAIT_ORDER.__getitem__))


def _new_labels(
    new: pd.DataFrame, labels: pd.DataFrame, payment_methods: pd.DataFrame, card_of: pd.Series
) -> pd.DataFrame:
    """Labels of new accounts: their ring and campaign, sign-up traits and their role."""
    donor = labels.set_index("account_id").loc[new["donor"]].reset_index(drop=True)
    prepaid = payment_methods.set_index("fingerprint")["prepaid"]
    on_prepaid = new["account_id"].map(card_of).map(prepaid).fillna(False).astype(bool)
    traits = [
        _join_traits(
            [
                "burst_signup",
                role,
                "prepaid_card" if pre else "",
                "program_signup" if "program_signup" in t.split(";") else "",
            ]
        )
        for role, pre, t in zip(new["role"], on_prepaid, donor["traits"], strict=True)
    ]
    return pd.DataFrame(
        {
            "account_id": new["account_id"].to_numpy(),
            "ring_id": new["ring_id"].to_numpy(),
            "kind": donor["kind"].to_numpy(),
            "campaign_id": donor["campaign_id"].to_numpy(),
            "traits": traits,
        }
    ).astype("str")
