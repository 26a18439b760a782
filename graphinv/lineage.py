"""Keep ring identities stable across sweeps and say what happened to each ring.

The rings of a new sweep are matched with those of the previous sweep in two ways:

* **Members.** Rings are sparse incidence matrices (rings × accounts); ``C · Pᵀ`` counts
  the accounts every current ring shares with every previous ring, without a loop over
  ring pairs. Enough shared members link two rings; the links say whether a ring
  continued, grew, shrank, split or merged.
* **Infrastructure.** A banned ring that comes back with fresh accounts shares no
  members, but it shares cards, proxies and prompt templates. Current rings with no
  member link are matched with previous rings that no ring continues, on the share of
  the current ring's identifiers (:func:`ring_identifiers`) that the previous ring used:
  that is a respawn.

Stable ids pass along links (largest overlap first), so a ring keeps its id for as long
as it exists. The rules, thresholds and tie-breaks are in ``docs/lineage.md``.

Examples
--------
>>> import pandas as pd
>>> prev = pd.DataFrame({"ring_id": ["R-a"] * 4 + ["R-b"] * 3,
...                      "account_id": ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]})
>>> prev_ids = pd.DataFrame({"ring_id": ["R-b"] * 3, "kind": ["payment_method", "ip", "ip"],
...                          "value": ["card9", "10.0.0.1", "10.0.0.2"]})
>>> cur = pd.DataFrame({"ring_id": [0] * 5 + [1] * 3,
...                     "account_id": ["a1", "a2", "a3", "a4", "a5", "n1", "n2", "n3"]})
>>> cur_ids = pd.DataFrame({"ring_id": [1] * 3, "kind": ["payment_method", "ip", "ip"],
...                         "value": ["card9", "10.0.0.1", "10.0.0.2"]})
>>> lin = match_rings(previous_members=prev, previous_identifiers=prev_ids,
...                   current_members=cur, current_identifiers=cur_ids)
>>> print(lin.rings[["new_ring_key", "ring_id", "status", "predecessors"]].to_string(index=False))
 new_ring_key ring_id    status predecessors
            0     R-a     grown       (R-a,)
            1     R-b respawned       (R-b,)
>>> print(lin.rings.loc[1, "evidence"])  # doctest: +NORMALIZE_WHITESPACE
1 of its 1 payment methods and 2 of its 2 IPs were used by R-b; 0 members in common
(identifier overlap 1.00)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd
import pydantic
import scipy.sparse as sp

from graphinv.errors import stage_options
from graphinv.schema import CORE_LINK_KINDS, STATUSES
from graphinv.stores.codes import factorize

__all__ = ["STATUSES", "Lineage", "LineageOptions", "match_rings", "ring_identifiers"]


_KIND_NOUNS = {
    "payment_method": "payment methods",
    "ip": "IPs",
    "prompt_fingerprint": "prompt templates",
}

_RING_COLUMNS = ["new_ring_key", "ring_id", "status", "size", "predecessors", "shared_members",
                 "member_jaccard", "shared_identifiers", "infra_overlap", "evidence"]
_EDGE_COLUMNS = ["ring_id", "previous_ring_id", "status", "shared_members", "member_jaccard",
                 "shared_identifiers", "infra_overlap"]


_Share = Annotated[float, pydantic.Field(gt=0, le=1)]
_Count = Annotated[int, pydantic.Field(ge=1)]


@stage_options("lineage")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class LineageOptions:
    """Thresholds that decide when two rings of consecutive sweeps are the same ring.

    Parameters
    ----------
    member_jaccard_min : float in (0, 1]
        A current and a previous ring are linked by members when their member Jaccard
        index is at least this (and they share ``min_shared_members``). Default ``0.3``.
    member_share_min : float in (0, 1]
        They are also linked when the shared accounts are at least this share of the
        smaller ring: a small piece split off a big ring, or a small ring absorbed by a
        big one, has a low Jaccard index but lies mostly inside the other. Default ``0.5``.
    min_shared_members : int ≥ 1
        Fewer shared accounts never link two rings. Default ``2``.
    growth_ratio : float > 1
        A ring continued one-to-one has ``grown`` when ``new size / old size`` is at least
        this, ``shrunk`` when ``old size / new size`` is. Default ``1.25``.
    infra_overlap_min : float in (0, 1]
        Identifier overlap a ring without member links needs with a previous ring that
        nothing continues to be called its respawn: per kind of ``infra_kinds`` the
        current ring uses, the share of its identifiers the previous ring used, averaged
        over those kinds. Default ``0.5``.
    min_shared_identifiers : int ≥ 1
        Fewer shared identifiers never make a respawn. Default ``2``.
    infra_kinds : tuple of str, at least one
        Identifier kinds compared for respawns. Default
        ``("payment_method", "ip", "prompt_fingerprint")``.
    inactive_statuses : tuple of str
        Account statuses (``accounts.status``) that take an account out of a sweep's
        rings: ``run_sweep`` detects rings over the other accounts only, and builds the
        current rings' identifiers from their links only. Default
        ``("banned", "suspended", "closed")``.

    Examples
    --------
    >>> LineageOptions(growth_ratio=1.0)
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: lineage.growth_ratio = 1: must be > 1
    """

    member_jaccard_min: _Share = 0.3
    member_share_min: _Share = 0.5
    min_shared_members: _Count = 2
    growth_ratio: Annotated[float, pydantic.Field(gt=1)] = 1.25
    infra_overlap_min: _Share = 0.5
    min_shared_identifiers: _Count = 2
    infra_kinds: Annotated[tuple[str, ...], pydantic.Field(min_length=1)] = CORE_LINK_KINDS
    inactive_statuses: tuple[str, ...] = ("banned", "suspended", "closed")


@dataclass(frozen=True)
class Lineage:
    """What happened to every ring between two sweeps.

    Attributes
    ----------
    rings : pandas.DataFrame
        One row per current ring, ordered by ``new_ring_key``: ``new_ring_key`` (the
        detector's id this sweep), ``ring_id`` (stable id, inherited or minted),
        ``status`` (one of :data:`STATUSES`), ``size``, ``predecessors`` (tuple of
        previous stable ids, most shared members first), and against the main
        predecessor (the one whose id it inherits, else the one sharing most members)
        ``shared_members``, ``member_jaccard``, ``shared_identifiers``, ``infra_overlap``
        (NaN ratios and 0 counts for new rings); ``evidence`` says it in words.
    dissolved : pandas.DataFrame
        Previous rings with no successor: ``ring_id``, ``size``, ``evidence``.
    edges : pandas.DataFrame
        One ``CONTINUES`` edge per (current ring, predecessor): ``ring_id`` (current
        stable id), ``previous_ring_id``, ``status`` (the current ring's status),
        ``shared_members``, ``member_jaccard``, ``shared_identifiers``, ``infra_overlap``.
    """

    rings: pd.DataFrame
    dissolved: pd.DataFrame
    edges: pd.DataFrame

    def summary(self) -> dict[str, int]:
        """Number of rings per status, and of dissolved previous rings."""
        counts = self.rings["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in STATUSES} | {"dissolved": len(self.dissolved)}


def ring_identifiers(
    members: pd.DataFrame,
    links: pd.DataFrame,
    *,
    kinds: Iterable[str] = CORE_LINK_KINDS,
    hub_outside_ratio: float = 5.0,
) -> pd.DataFrame:
    """The identifiers a ring's members use, without hubs the ring merely passes through.

    An identifier counts for a ring when the accounts outside the ring that use it are at
    most ``hub_outside_ratio`` times the ring members that use it. A mobile CGNAT IP or a
    VPN exit used by thousands is dropped for a ring of ten that happens to sit behind it,
    so two unrelated rings behind the same carrier are not taken for a respawn; a proxy IP
    or card shared by a few outsiders stays.

    Parameters
    ----------
    members : pandas.DataFrame
        ``ring_id``, ``account_id``.
    links : pandas.DataFrame
        The links table of the input contract (``account_id``, ``kind``, ``value``; other
        columns ignored), covering all accounts, not just ring members.
    kinds : iterable of str
        Identifier kinds to keep. Default ``("payment_method", "ip", "prompt_fingerprint")``.
    hub_outside_ratio : float
        Outside users allowed per inside user. Default ``5.0``.

    Returns
    -------
    pandas.DataFrame
        ``ring_id``, ``kind``, ``value``, ``accounts`` (ring members using it), sorted.

    Examples
    --------
    >>> import pandas as pd
    >>> members = pd.DataFrame({"ring_id": ["R1", "R1"], "account_id": ["a", "b"]})
    >>> links = pd.DataFrame({
    ...     "account_id": ["a", "b", "a", "b"] + [f"u{i}" for i in range(50)],
    ...     "kind": ["payment_method", "payment_method", "ip", "ip"] + ["ip"] * 50,
    ...     "value": ["card1", "card1", "100.64.0.1", "100.64.0.1"] + ["100.64.0.1"] * 50,
    ... })
    >>> print(ring_identifiers(members, links).to_string(index=False))
    ring_id           kind value  accounts
         R1 payment_method card1         2
    """
    kinds = tuple(kinds)
    # Strings are factorised once, whole columns at a time; the rest is integer work.
    kind = _positions(links["kind"], pd.Index(kinds))
    on_kind = kind >= 0
    account, _ = pd.factorize(pd.concat([links["account_id"], members["account_id"]]))
    link_account, member = account[: len(links)][on_kind], account[len(links):]
    n_accounts = int(account.max()) + 1 if len(account) else 0
    value, values = factorize(links["value"])
    ident, ident_keys = pd.factorize(value[on_kind] * len(kinds) + kind[on_kind])
    uses = _incidence(link_account, ident, (n_accounts, len(ident_keys)))

    ring_keys = pd.Index(members["ring_id"].unique()).sort_values()
    rings = _incidence(_positions(members["ring_id"], ring_keys), member,
                       (len(ring_keys), n_accounts))
    inside = (rings @ uses).tocoo()
    users = np.asarray(uses.sum(axis=0)).ravel()[inside.col]
    keep = users - inside.data <= hub_outside_ratio * inside.data
    ident_kept = ident_keys[inside.col[keep]]
    out = pd.DataFrame({
        "ring_id": ring_keys[inside.row[keep]],
        "kind": np.asarray(kinds, dtype=object)[ident_kept % len(kinds)],
        "value": values[ident_kept // len(kinds)],
        "accounts": inside.data[keep].astype(np.int64),
    })
    return out.sort_values(["ring_id", "kind", "value"], ignore_index=True)


def match_rings(
    *,
    previous_members: pd.DataFrame | None,
    previous_identifiers: pd.DataFrame | None,
    current_members: pd.DataFrame,
    current_identifiers: pd.DataFrame | None,
    options: LineageOptions | None = None,
    mint_id: Callable[[int], str] | None = None,
) -> Lineage:
    """Match this sweep's rings with the previous sweep's and classify every change.

    Parameters
    ----------
    previous_members : pandas.DataFrame or None
        ``ring_id`` (stable id, cast to str), ``account_id``. None or empty on the first
        sweep: every ring is new.
    previous_identifiers : pandas.DataFrame or None
        ``ring_id``, ``kind``, ``value`` of the previous rings (see
        :func:`ring_identifiers`). None: no respawn detection.
    current_members : pandas.DataFrame
        ``ring_id`` (the detector's key this sweep, any sortable type), ``account_id``.
    current_identifiers : pandas.DataFrame or None
        ``ring_id``, ``kind``, ``value`` of the current rings.
    options : LineageOptions, optional
        Thresholds; default: the class's documented defaults.
    mint_id : callable, optional
        Names rings that inherit no id: called with ``0, 1, …`` in order of size
        (largest first, then ``new_ring_key``), e.g. ``lambda i: f"S42-{i:04d}"``. Its
        names must be unique and differ from every previous id. Default: ``"R-"`` and 12
        hex digits of the BLAKE2b hash of the sorted member ids, so the same accounts get
        the same id in any sweep (salted on the rare clash with a previous id).

    Returns
    -------
    Lineage
        ``rings``, ``dissolved`` and ``edges``; see :class:`Lineage`.

    Raises
    ------
    ValueError
        A frame lacks a required column, or ``mint_id`` returns a duplicate id.

    Examples
    --------
    >>> import pandas as pd
    >>> cur = pd.DataFrame({"ring_id": [7, 7, 7], "account_id": ["x", "y", "z"]})
    >>> first = match_rings(previous_members=None, previous_identifiers=None,
    ...                     current_members=cur, current_identifiers=None)
    >>> first.summary()["new"], first.rings.loc[0, "ring_id"]
    (1, 'R-6b8b293cdfca')
    >>> again = match_rings(previous_members=cur.assign(ring_id="R-6b8b293cdfca"),
    ...                     previous_identifiers=None, current_members=cur,
    ...                     current_identifiers=None)
    >>> again.rings.loc[0, ["ring_id", "status"]].tolist()
    ['R-6b8b293cdfca', 'continuing']
    """
    options = options or LineageOptions()
    prev = _frame(previous_members, ["ring_id", "account_id"], "previous_members")
    prev["ring_id"] = prev["ring_id"].astype(str)
    cur = _frame(current_members, ["ring_id", "account_id"], "current_members")
    prev_keys = pd.Index(prev["ring_id"].unique()).sort_values()
    cur_keys = pd.Index(cur["ring_id"].unique()).sort_values()
    n_prev, n_cur = len(prev_keys), len(cur_keys)

    accounts, _ = pd.factorize(pd.concat([prev["account_id"], cur["account_id"]]))
    n_accounts = int(accounts.max()) + 1 if len(accounts) else 0
    prev_m = _incidence(_positions(prev["ring_id"], prev_keys), accounts[: len(prev)],
                        (n_prev, n_accounts))
    cur_m = _incidence(_positions(cur["ring_id"], cur_keys), accounts[len(prev):],
                       (n_cur, n_accounts))
    prev_size = np.asarray(prev_m.sum(axis=1)).ravel()
    cur_size = np.asarray(cur_m.sum(axis=1)).ravel()

    overlap = (cur_m @ prev_m.T).tocoo()
    pairs = pd.DataFrame({"c": overlap.row, "p": overlap.col, "shared": overlap.data})
    infra, cur_kind_size = _identifier_overlap(
        previous_identifiers, current_identifiers, prev_keys, cur_keys, options.infra_kinds
    )
    kinds = list(options.infra_kinds)
    pairs = pairs.merge(infra, on=["c", "p"], how="outer").fillna(0)
    pairs = pairs.astype(dict.fromkeys(["c", "p", "shared", *_shared(kinds)], "int64"))
    pairs = _score_pairs(pairs, cur_size, prev_size, cur_kind_size, kinds)
    pairs["pid"] = prev_keys.to_numpy(dtype=object)[pairs["p"].to_numpy()]

    smaller = np.minimum(pairs["size_c"], pairs["size_p"])
    links = pairs[
        (pairs["shared"] >= options.min_shared_members)
        & (
            (pairs["member_jaccard"] >= options.member_jaccard_min)
            | (pairs["shared"] >= options.member_share_min * smaller)
        )
    ].sort_values(["shared", "member_jaccard", "p", "c"], ascending=[False, False, True, True])
    links = links.assign(inherits=_greedy(links["c"], links["p"]))
    n_pred = np.bincount(links["c"], minlength=n_cur)
    n_succ = np.bincount(links["p"], minlength=n_prev)

    respawns = pairs[
        (n_pred[pairs["c"]] == 0)
        & (n_succ[pairs["p"]] == 0)
        & (pairs["infra_overlap"] >= options.infra_overlap_min)
        & (pairs["shared_identifiers"] >= options.min_shared_identifiers)
    ].sort_values(["infra_overlap", "shared_identifiers", "p", "c"],
                  ascending=[False, False, True, True])
    # Each current ring is the respawn of the ring whose infrastructure it matches best. A
    # banned ring may come back as several rings (its fresh accounts are young and only
    # loosely tied yet): like split pieces, all are its respawns, and the one sharing most
    # of its identifiers keeps its id.
    respawns = respawns.drop_duplicates("c").sort_values(
        ["shared_identifiers", "infra_overlap", "p", "c"], ascending=[False, False, True, True]
    )
    respawns = respawns.assign(inherits=~respawns["p"].duplicated())
    n_respawns = np.bincount(respawns["p"], minlength=n_prev)
    related = pd.concat([links, respawns])

    # The main predecessor: the inherited one, else the one sharing most members (for a
    # respawn that inherits nothing, its one predecessor).
    main = pd.concat([related[related["inherits"]], related[~related["inherits"]]])
    main = main.drop_duplicates("c").set_index("c")
    aligned = main.reindex(range(n_cur))
    inherited = aligned["inherits"].eq(True).to_numpy()
    rings = pd.DataFrame({"new_ring_key": cur_keys, "size": cur_size})
    rings["status"] = _statuses(aligned, n_pred, n_succ, options.growth_ratio)
    rings.loc[respawns["c"], "status"] = "respawned"
    rings["ring_id"] = aligned["pid"].where(inherited).to_numpy()
    rings.loc[~inherited, "ring_id"] = _mint(
        rings[~inherited], cur, set(prev_keys) | set(rings["ring_id"].dropna()), mint_id
    )
    predecessors = related.groupby("c")["pid"].agg(tuple).reindex(range(n_cur))
    rings["predecessors"] = [p if isinstance(p, tuple) else () for p in predecessors]
    rings["shared_members"] = aligned["shared"].fillna(0).astype("int64").to_numpy()
    rings["member_jaccard"] = aligned["member_jaccard"].to_numpy(dtype=float)
    rings["shared_identifiers"] = aligned["shared_identifiers"].fillna(0).astype("int64").to_numpy()
    rings["infra_overlap"] = aligned["infra_overlap"].to_numpy(dtype=float)
    rings["evidence"] = _ring_evidence(rings, main, links, pairs, n_succ, n_respawns, kinds)

    c = related["c"].to_numpy()
    edges = pd.DataFrame({
        "ring_id": rings["ring_id"].to_numpy()[c],
        "previous_ring_id": related["pid"].to_numpy(),
        "status": rings["status"].to_numpy()[c],
        "shared_members": related["shared"].to_numpy(),
        "member_jaccard": related["member_jaccard"].to_numpy(),
        "shared_identifiers": related["shared_identifiers"].to_numpy(),
        "infra_overlap": related["infra_overlap"].to_numpy(),
    }, columns=_EDGE_COLUMNS).sort_values(["ring_id", "previous_ring_id"], ignore_index=True)

    gone = np.flatnonzero((n_succ == 0) & (n_respawns == 0))
    dissolved = pd.DataFrame({
        "ring_id": prev_keys.to_numpy(dtype=object)[gone],
        "size": prev_size[gone],
        "evidence": _dissolved_evidence(gone, prev_size, pairs),
    })
    return Lineage(rings=rings[_RING_COLUMNS], dissolved=dissolved, edges=edges)


def _frame(frame: pd.DataFrame | None, columns: list[str], name: str) -> pd.DataFrame:
    if frame is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
    return frame[columns].reset_index(drop=True)


def _positions(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index``, -1 where absent; looks up distinct values only."""
    codes, uniques = pd.factorize(values)
    return np.append(index.get_indexer(uniques), -1)[codes]


def _incidence(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary rows × cols matrix; a repeated (row, col) pair, e.g. a duplicated input row,
    counts once."""
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=shape)
    matrix.data[:] = 1
    return matrix


def _identifier_overlap(
    prev_ids: pd.DataFrame | None,
    cur_ids: pd.DataFrame | None,
    prev_keys: pd.Index,
    cur_keys: pd.Index,
    kinds: tuple[str, ...],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Shared identifiers per kind for ring pairs sharing any, and per current ring the
    number of identifiers of each kind it uses."""
    columns = ["ring_id", "kind", "value"]
    sides = []
    for side_no, (frame, keys, name) in enumerate(
        [(prev_ids, prev_keys, "previous_identifiers"), (cur_ids, cur_keys, "current_identifiers")]
    ):
        ids = _frame(frame, columns, name)
        if side_no == 0:
            ids["ring_id"] = ids["ring_id"].astype(str)
        ids = ids.assign(side=side_no, ring=_positions(ids["ring_id"], keys),
                         kind=_positions(ids["kind"], pd.Index(kinds)))
        sides.append(ids[(ids["kind"] >= 0) & (ids["ring"] >= 0)])
    both = pd.concat(sides, ignore_index=True)
    kind = both["kind"].to_numpy()
    ident = pd.factorize(both["value"])[0] * len(kinds) + kind
    side, ring = both["side"].to_numpy(), both["ring"].to_numpy()
    n_ident = int(ident.max()) + 1 if len(ident) else 0
    size = np.zeros((len(cur_keys), len(kinds)), dtype=np.int64)
    found = []
    for k, column in enumerate(_shared(kinds)):
        on = [(side == s) & (kind == k) for s in (0, 1)]
        prev_m = _incidence(ring[on[0]], ident[on[0]], (len(prev_keys), n_ident))
        cur_m = _incidence(ring[on[1]], ident[on[1]], (len(cur_keys), n_ident))
        size[:, k] = np.asarray(cur_m.sum(axis=1)).ravel()
        shared = (cur_m @ prev_m.T).tocoo()
        found.append(pd.DataFrame({"c": shared.row, "p": shared.col, column: shared.data}))
    infra = pd.concat(found).groupby(["c", "p"], as_index=False).sum()
    return infra.reindex(columns=["c", "p", *_shared(kinds)]), size


def _shared(kinds: Iterable[str]) -> list[str]:
    """Pair columns counting shared identifiers per kind, apart from any other column."""
    return [f"shared:{k}" for k in kinds]


def _score_pairs(
    pairs: pd.DataFrame,
    cur_size: np.ndarray,
    prev_size: np.ndarray,
    cur_kind_size: np.ndarray,
    kinds: list[str],
) -> pd.DataFrame:
    c, p, shared = pairs["c"].to_numpy(), pairs["p"].to_numpy(), pairs["shared"].to_numpy()
    size_c, size_p = cur_size[c], prev_size[p]
    common = pairs[_shared(kinds)].to_numpy()
    own = cur_kind_size[c]
    # Directional on purpose: the previous ring's identifiers span its whole history (every
    # template it ever sent, its camouflage members' home IPs), a respawn's span a day or
    # so; what matters is whether the new ring's infrastructure was the old ring's.
    used = own > 0
    per_kind = np.divide(common, own, out=np.zeros(common.shape), where=used)
    n_used = used.sum(axis=1)
    owns = pd.DataFrame(own, columns=[f"own:{k}" for k in kinds], index=pairs.index)
    return pd.concat([pairs, owns], axis=1).assign(
        size_c=size_c,
        size_p=size_p,
        member_jaccard=shared / (size_c + size_p - shared),
        shared_identifiers=common.sum(axis=1),
        # A kind the current ring does not use says nothing about where it came from.
        infra_overlap=np.divide(per_kind.sum(axis=1), n_used, out=np.zeros(len(pairs)),
                                where=n_used > 0),
    )


def _greedy(c: pd.Series, p: pd.Series) -> np.ndarray:
    """Take pairs in the given order, skipping those whose current or previous ring is taken.

    Runs over linked pairs only, a few per ring, never over all ring pairs.
    """
    chosen = np.zeros(len(c), dtype=bool)
    taken_c: set[int] = set()
    taken_p: set[int] = set()
    for i, (ci, pi) in enumerate(zip(c.tolist(), p.tolist(), strict=True)):
        if ci not in taken_c and pi not in taken_p:
            chosen[i] = True
            taken_c.add(ci)
            taken_p.add(pi)
    return chosen


def _statuses(
    main: pd.DataFrame, n_pred: np.ndarray, n_succ: np.ndarray, growth_ratio: float
) -> np.ndarray:
    """Status from the link counts; respawns are set by the caller."""
    has_main = main["p"].notna().to_numpy()
    succ = np.zeros(len(main), dtype=np.int64)
    succ[has_main] = n_succ[main["p"].to_numpy()[has_main].astype(np.int64)]
    ratio = (main["size_c"] / main["size_p"]).to_numpy()
    one_to_one = (n_pred == 1) & (succ == 1)
    return np.select(
        [n_pred >= 2, (n_pred == 1) & ~one_to_one, one_to_one & (ratio >= growth_ratio),
         one_to_one & (ratio <= 1 / growth_ratio), one_to_one],
        ["merged", "split", "grown", "shrunk", "continuing"],
        default="new",
    ).astype(object)


def _mint(
    rings: pd.DataFrame,
    cur: pd.DataFrame,
    taken: set[str],
    mint_id: Callable[[int], str] | None,
) -> list[str]:
    """Ids for rings that inherit none, in the order of ``rings``; adds them to ``taken``."""
    order = np.lexsort((np.arange(len(rings)), -rings["size"].to_numpy()))
    members = cur[cur["ring_id"].isin(rings["new_ring_key"])]
    by_ring = members.groupby("ring_id")["account_id"].agg(
        lambda a: "\n".join(sorted(set(map(str, a))))
    )
    names = [""] * len(rings)
    for rank, i in enumerate(order.tolist()):
        if mint_id is not None:
            name = mint_id(rank)
            if name in taken:
                raise ValueError(f"mint_id({rank}) returned {name!r}, which is already a ring id")
        else:
            text, salt = by_ring[rings["new_ring_key"].iloc[i]], 0
            name = _member_hash(text, salt)
            while name in taken:
                salt += 1
                name = _member_hash(text, salt)
        taken.add(name)
        names[i] = name
    return names


def _member_hash(text: str, salt: int) -> str:
    payload = text if salt == 0 else f"{text}\n#{salt}"
    return "R-" + hashlib.blake2b(payload.encode(), digest_size=6).hexdigest()


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _listing(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _ring_evidence(
    rings: pd.DataFrame,
    main: pd.DataFrame,
    links: pd.DataFrame,
    pairs: pd.DataFrame,
    n_succ: np.ndarray,
    n_respawns: np.ndarray,
    kinds: list[str],
) -> list[str]:
    sources = (
        links["pid"] + " (" + links["shared"].astype(str) + " of its "
        + links["size_p"].astype(str) + ")"
    ).groupby(links["c"]).agg(", ".join)
    # For new rings: how many of their accounts were in earlier rings, and mostly where.
    earlier = pairs[pairs["shared"] > 0].sort_values(["shared", "p"], ascending=[False, True])
    earlier_total = earlier.groupby("c")["shared"].sum()
    earlier_top = earlier.drop_duplicates("c").set_index("c")["pid"]
    records = main.to_dict("index")
    evidence = []
    rows = zip(rings["status"], rings["size"], rings["predecessors"], strict=True)
    for c, (status, size, predecessors) in enumerate(rows):
        if status == "new":
            text = (f"no earlier ring holds enough of its {_plural(size, 'account')} "
                    "or shares its infrastructure")
            if c in earlier_total.index:
                text += (f"; {earlier_total[c]} of them in earlier rings "
                         f"(most in {earlier_top[c]})")
            evidence.append(text)
            continue
        m = records[c]
        pid = m["pid"]
        if status == "respawned":
            shared = [
                f"{m['shared:' + k]} of its {m['own:' + k]} "
                + _KIND_NOUNS.get(k, k.replace("_", " ") + "s")
                for k in kinds
                if m["shared:" + k]
            ]
            text = (f"{_listing(shared)} were used by {pid}; "
                    f"{_plural(m['shared'], 'member')} in common "
                    f"(identifier overlap {m['infra_overlap']:.2f})")
            if n_respawns[m["p"]] > 1:
                kept = ("keeps its id" if m["inherits"] else
                        f"{pid} stays with one sharing at least as many of its identifiers")
                text += f"; one of {n_respawns[m['p']]} rings respawned from it; {kept}"
        elif status == "merged":
            kept = (f"keeps the id of {pid}" if m["inherits"] else
                    "new id: each earlier id went to a ring holding at least as many of "
                    "its members")
            text = (f"merge of {len(predecessors)} earlier rings into {size} accounts: "
                    f"{sources[c]}; {kept}")
        elif status == "split":
            kept = ("keeps its id" if m["inherits"] else
                    f"{pid} stays with a ring holding at least as many of its members")
            text = (f"one of {n_succ[m['p']]} pieces of {pid} ({m['size_p']} accounts): "
                    f"holds {m['shared']} of its members; {kept}")
        else:
            change = {"grown": "grew", "shrunk": "shrank"}.get(status, "continues")
            text = (f"{change} from {m['size_p']} to {size} accounts; {m['shared']} of its "
                    f"members remain (member Jaccard {m['member_jaccard']:.2f})")
        evidence.append(text)
    return evidence


def _dissolved_evidence(gone: np.ndarray, prev_size: np.ndarray, pairs: pd.DataFrame) -> list[str]:
    spread = pairs[pairs["shared"] > 0].groupby("p")["shared"].agg(["sum", "size"])
    evidence = []
    for p in gone.tolist():
        size = prev_size[p]
        if p in spread.index:
            total, n_rings = spread.loc[p]
            text = (f"{total} of its {size} members are in {_plural(n_rings, 'ring')} now, "
                    "too few to continue it")
        else:
            text = f"none of its {size} members is in a ring now"
        evidence.append(text + "; no new ring took over its infrastructure")
    return evidence
