"""Project accounts onto each other through what they share, weighted by how rare it is.

Every identifier an account uses (card, IP, prompt template, device, …) is a column of a
sparse incidence matrix ``B`` (accounts × identifiers). With a diagonal of identifier
weights ``W``, the account × account projection is ``A = B · W · Bᵀ``: two accounts are
linked by the sum of the weights of everything they share. Three terms add up:

* **Rarity.** An identifier shared by ``d`` accounts weighs
  ``kind_weight / log(1 + d)`` (Adamic–Adar): a card shared by 3 accounts is strong
  evidence, an IP shared by 400 is weak. Identifiers used by more than ``hub_cap``
  accounts (mobile CGNAT, VPN exits, popular public templates) are never expanded into
  their ``d²`` pairs; they are counted in the stats.
* **Co-activity.** Each link also yields a token ``(identifier, window of first_seen)``:
  accounts that started using an identifier in the same window (an hour, a day) share
  that token too, so sharing an IP in the same hour counts more than sharing it months
  apart (SynchroTrap). A hub's tokens are split by time, so a CGNAT IP shared by
  thousands over months can still link a handful of accounts that arrived on it together.
  A hub that most of the platform holds (a default system prompt) gives no tokens: its
  first use marks when an account became active, not anything it shares with a few.
* **Hub arrivals.** A hub is also split by the *sign-up* window of its accounts: a token
  ``(hub, window of created_at)`` holding a burst (several times the hub's mean sign-ups
  per window) links a ring that signed up together behind a carrier exit or a public
  template, as per-ring evidence.
* **Lockstep.** Accounts with enough activity get a MinHash signature of their set of
  active hours; locality-sensitive hashing proposes pairs with near-identical schedules
  (round-robin load balancing) without comparing all pairs, and pairs whose exact
  Jaccard similarity passes a threshold are linked even if they share no identifier.

The same pass also keeps the part of ``A`` that is *per-ring evidence* apart: the rarity
and co-activity terms of the kinds in ``ring_evidence_kinds`` (cards and IPs by default),
without templates, other kinds or lockstep, which campaigns of many rings share too. Ring
detection uses it to join pieces of one sparse ring that Leiden cut apart.

Examples
--------
>>> import pandas as pd
>>> from graphinv.schema import Platform
>>> t = pd.Timestamp("2025-01-01", tz="UTC")
>>> links = pd.DataFrame({
...     "account_id": ["a", "b", "c", "a", "b"],
...     "kind": ["payment_method"] * 3 + ["ip"] * 2,
...     "value": ["card1", "card1", "card1", "10.0.0.1", "10.0.0.1"],
...     "first_seen": t, "last_seen": t, "count": 1,
... })
>>> usage = pd.DataFrame(columns=["account_id", "hour", "model", "requests",
...                               "input_tokens", "output_tokens"])
>>> accounts = pd.DataFrame({"account_id": ["a", "b", "c"], "created_at": t})
>>> proj = project(Platform(accounts=accounts, links=links, usage=usage))
>>> list(proj.account_ids)
['a', 'b', 'c']
>>> bool(proj.weights[0, 1] > proj.weights[0, 2] > 0)
True
>>> bool(proj.ring_evidence[0, 1] == proj.weights[0, 1])  # only cards and IPs here
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
import scipy.sparse as sp

from graphinv.detect.workers import Forked
from graphinv.schema import Platform
from graphinv.stores.codes import factorize, positions, strings

__all__ = ["Projection", "ProjectionOptions", "ProjectionStats", "project"]

_NS_PER_HOUR = 3_600_000_000_000
# Large prime for universal hashing of band keys; products stay inside uint64 wrap-around,
# which only has to be deterministic, not collision-free.
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)
# Candidate pairs compared per step, bounding the temporary signature copies.
_CHUNK = 1 << 18


def _default_kind_weights() -> Mapping[str, float]:
    return MappingProxyType({"payment_method": 1.0, "ip": 0.5, "prompt_fingerprint": 0.5})


_NonNegative = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]
_Count = Annotated[int, pydantic.Field(ge=1)]


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class ProjectionOptions:
    """How shared identifiers and shared timing turn into account × account weights.

    Validated when built: a bad value raises ``pydantic.ValidationError`` naming the field.

    Parameters
    ----------
    kind_weights : Mapping[str, float]
        Weight of each link kind before rarity scaling. Default
        ``{"payment_method": 1.0, "ip": 0.5, "prompt_fingerprint": 0.5}``.
    default_kind_weight : float
        Weight of kinds not in ``kind_weights`` (device, email, …). ``0`` ignores them.
        Default ``0.5``.
    hub_cap : int
        Identifiers used by more accounts than this are not expanded into pairs (their
        co-activity tokens still are, when small enough). Default ``200``.
    co_activity_window : str
        Width of the time window for co-activity tokens, as a pandas offset string.
        Default ``"1D"``; ``""`` turns co-activity off.
    co_activity_weight : float
        Multiplier of the kind weight for a shared co-activity token. Default ``1.0``.
    lockstep_weight : float
        Weight of a lockstep edge per unit of Jaccard similarity of active hours;
        ``0`` turns lockstep off. Default ``0.5``: one scheduler runs all of a campaign's
        rings, so at ``1.0`` lockstep ties members of different rings (0.6–0.9) more
        strongly than a ring's own proxy exit ties its members (about 0.2), and Leiden cut
        rings by schedule instead of by exit.
    lockstep_min_hours : int
        Accounts active in fewer distinct hours are not compared. Default ``8``.
    lockstep_max_share : float
        Accounts active in more than this share of all observed hours (always-on
        services) are not compared: every such schedule looks like every other.
        Default ``0.8``.
    lockstep_threshold : float
        Minimum Jaccard similarity of two accounts' active-hour sets. Default ``0.6``.
    lockstep_bands, lockstep_rows : int
        LSH banding of the MinHash signature (``bands × rows`` hash bins). A pair with
        Jaccard ``J`` becomes a candidate with probability ``1 − (1 − J^rows)^bands``.
        Defaults ``16`` and ``4``.
    lockstep_bucket_cap : int
        LSH buckets holding more accounts than this are schedules too common to be
        evidence (business hours, nightly jobs) and are skipped. Default ``200``.
    seed : int
        Seed of the MinHash permutation. Default ``0``.
    ring_evidence_kinds : tuple[str, ...]
        Kinds whose rarity and co-activity terms also go into
        :attr:`Projection.ring_evidence`: identifiers a single ring holds, unlike prompt
        templates or client versions that a whole campaign shares. Default
        ``("payment_method", "ip")``.
    rarity : {"surprisal", "adamic_adar"}
        How an identifier's weight falls with its number of accounts ``d``.
        ``"adamic_adar"``: ``1 / log(1 + d)``. ``"surprisal"``: for the kinds in
        ``ring_evidence_kinds``, the larger of that and how surprising an identifier of
        ``d`` accounts is among the identifiers of its own kind on this platform (see
        ``rarity_reference``); other kinds keep Adamic–Adar. Default ``"surprisal"``.
    rarity_reference : float
        Share of a kind's account–identifier uses at or below which an identifier that
        crowded counts as fully rare (factor 1). Surprisal ``ln(1/L)`` of the share ``L``
        of uses on identifiers of at least ``d`` accounts is measured in units of
        ``ln(1/rarity_reference)``. Default ``0.01``.
    hub_arrival_window : str
        Width of the sign-up window that splits a hub: accounts on an identifier above
        ``hub_cap`` that were *created* in the same window (``accounts.created_at``) share
        an arrival token ``(identifier, window)``, weighted like any token of its size
        and counted as per-ring evidence. Two grids of windows half a window apart each
        carry half the kind weight, so a burst across a window edge stays whole. A ring
        that signed up in one burst behind a carrier exit or a public template is then
        held by it, while the public on the hub arrives a few a day. Only *bursts*
        count: tokens holding at least ``hub_arrival_burst`` times the hub's mean
        sign-ups per window (its accounts over the span of their creation times). A hub
        with at least ``hub_campaign_share`` of its accounts in bursts is infrastructure
        of a campaign (its rings all signed up through it), not a public hub hiding one
        ring, and is left out: its tokens would join the campaign's rings that signed up
        on the same day; so is a hub of at least ``hub_max_share`` of the accounts.
        ``""`` turns it off. Default ``"1D"``.
    hub_arrival_kinds : tuple[str, ...]
        Kinds whose hubs are split by sign-up window. Default
        ``("payment_method", "ip", "prompt_fingerprint")``: not client versions, which
        everyone created on one day shares.
    hub_arrival_burst : float
        How many times the hub's mean sign-ups per window a token must hold. Default
        ``4.0``.
    hub_campaign_share : float
        Share of a hub's accounts created in bursts (on the grid of windows that finds
        more) from which the hub counts as a campaign's own infrastructure and gives no
        arrival tokens. Default ``0.3``: on the tuning seeds, public templates and carrier
        exits that hide one ring have 9–24 % of their accounts in bursts, a campaign's
        templates 38–100 % (a campaign whose rings sign up over many days has each day's
        burst under four times the mean, so "most" missed some at 0.5).
    hub_max_share : float
        A hub (above ``hub_cap``) held by at least this share of the platform's accounts is
        a default, not a shared identifier, and gives neither co-activity nor arrival
        tokens. A default system prompt that most of the platform sends (from request
        logs, three templates on 74–78 % of the accounts) has a "burst" on every busy
        sign-up day, which joined unrelated rings that signed up on it; and its first use
        is when an account became active, so its co-activity tokens linked the accounts
        that started on the same day (a third of the projection's edges on small seed 21,
        pulling ring members into Leiden pieces with strangers). Default ``0.5``.
    """

    kind_weights: Mapping[str, _NonNegative] = field(default_factory=_default_kind_weights)
    default_kind_weight: _NonNegative = 0.5
    hub_cap: Annotated[int, pydantic.Field(ge=2)] = 200
    co_activity_window: str = "1D"
    co_activity_weight: _NonNegative = 1.0
    lockstep_weight: _NonNegative = 0.5
    lockstep_min_hours: _Count = 8
    lockstep_max_share: Annotated[float, pydantic.Field(gt=0, le=1)] = 0.8
    lockstep_threshold: Annotated[float, pydantic.Field(gt=0, le=1)] = 0.6
    lockstep_bands: _Count = 16
    lockstep_rows: _Count = 4
    lockstep_bucket_cap: Annotated[int, pydantic.Field(ge=2)] = 200
    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    ring_evidence_kinds: tuple[str, ...] = ("payment_method", "ip")
    rarity: Literal["surprisal", "adamic_adar"] = "surprisal"
    rarity_reference: Annotated[float, pydantic.Field(gt=0, lt=1)] = 0.01
    hub_arrival_window: str = "1D"
    hub_arrival_kinds: tuple[str, ...] = ("payment_method", "ip", "prompt_fingerprint")
    hub_arrival_burst: Annotated[float, pydantic.Field(ge=1, allow_inf_nan=False)] = 4.0
    hub_max_share: Annotated[float, pydantic.Field(gt=0, le=1)] = 0.5
    hub_campaign_share: Annotated[float, pydantic.Field(gt=0, le=1)] = 0.3

    @pydantic.field_validator("co_activity_window", "hub_arrival_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value and pd.Timedelta(value) <= pd.Timedelta(0):
            raise ValueError(f"window {value!r} must be a positive duration or ''")
        return value

    def kind_weight(self, kind: str) -> float:
        """Weight of a link kind before rarity scaling."""
        return float(self.kind_weights.get(kind, self.default_kind_weight))


@dataclass(frozen=True)
class ProjectionStats:
    """What the projection used and what it left out.

    Attributes
    ----------
    accounts : int
        Rows of the projection.
    identifiers : Mapping[str, int]
        Distinct identifiers per kind shared by at least two accounts.
    hubs : Mapping[str, int]
        Identifiers per kind above ``hub_cap``, not expanded into pairs.
    hub_links : Mapping[str, int]
        Links per kind that point at those hubs.
    co_activity_tokens : int
        ``(identifier, window)`` tokens shared by two to ``hub_cap`` accounts.
    lockstep_accounts : int
        Accounts with enough activity to be compared for lockstep.
    lockstep_candidates : int
        Distinct pairs proposed by LSH.
    lockstep_pairs : int
        Candidate pairs whose Jaccard similarity passed the threshold.
    edges : int
        Undirected edges of the final projection.
    """

    accounts: int
    identifiers: Mapping[str, int]
    hubs: Mapping[str, int]
    hub_links: Mapping[str, int]
    co_activity_tokens: int
    lockstep_accounts: int
    lockstep_candidates: int
    lockstep_pairs: int
    edges: int

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Projection:
    """Weighted account × account graph.

    Attributes
    ----------
    account_ids : numpy.ndarray
        Account ids, sorted; row ``i`` of ``weights`` is ``account_ids[i]``.
    weights : scipy.sparse.csr_matrix
        Symmetric, zero diagonal, float64.
    stats : ProjectionStats
    ring_evidence : scipy.sparse.csr_matrix
        The part of ``weights`` from identifiers (and their co-activity tokens) of the
        kinds in ``ProjectionOptions.ring_evidence_kinds``; same shape, symmetric, zero
        diagonal, at most ``weights`` entrywise.
    ring_identifiers : scipy.sparse.csr_matrix or None
        Binary accounts × identifiers incidence of the ring-evidence identifiers used by
        2 to ``hub_cap`` accounts: which rare cards and IPs each account holds. The merge
        pass counts the distinct ones two pieces share. ``None`` for a hand-built
        projection (pieces then join on evidence density alone).
    """

    account_ids: np.ndarray
    weights: sp.csr_matrix
    stats: ProjectionStats
    ring_evidence: sp.csr_matrix
    ring_identifiers: sp.csr_matrix | None = None


def project(platform: Platform, *, options: ProjectionOptions | None = None) -> Projection:
    """Weighted account × account projection of a platform.

    Reads ``accounts``, ``links`` and ``usage``; never ``labels``.

    Parameters
    ----------
    platform : Platform
        Tables from any store.
    options : ProjectionOptions, optional
        Weights, caps and windows; defaults documented on the class.

    Returns
    -------
    Projection

    Examples
    --------
    >>> from graphinv.detect.projection import ProjectionOptions
    >>> ProjectionOptions().hub_cap
    200
    """
    options = options or ProjectionOptions()
    account_ids = _account_index(platform)
    n = len(account_ids)
    index = pd.Index(account_ids)
    # Lockstep reads usage only: a forked child computes it while this process builds the
    # identifier and co-activity terms (same result, the second core used).
    lockstep = None
    if options.lockstep_weight > 0:
        lockstep = Forked(_lockstep, platform.usage, index, options)
    links = platform.links
    rows = _rows(links["account_id"], index)
    kind_codes, kinds = pd.factorize(links["kind"], sort=True)
    kind_w = np.array([options.kind_weight(str(k)) for k in kinds], dtype=np.float64)
    keep = kind_w[kind_codes] > 0
    rows, kind_codes = rows[keep], kind_codes[keep]
    ident = _pair_codes(kind_codes, factorize(links["value"])[0][keep])
    evidence = np.isin(np.asarray(kinds, dtype=str), options.ring_evidence_kinds)[kind_codes]

    (other, ring_evidence), ring_identifiers, degree, hub_stats = _identifier_matrix(
        rows, ident, kind_codes, kinds, kind_w, evidence, n, options
    )
    weights = other + ring_evidence
    # A hub most of the platform holds is a default: no co-activity or arrival tokens.
    common = (degree > options.hub_cap) & (degree >= options.hub_max_share * n)
    if options.hub_arrival_window:
        arrival, arrival_identifiers = _hub_arrival(
            platform.accounts, index, rows, ident, kind_codes, kinds, kind_w, degree, common,
            options,
        )
        weights = weights + arrival
        ring_evidence = ring_evidence + arrival
        ring_identifiers = sp.hstack([ring_identifiers, arrival_identifiers], format="csr")
    co_tokens = 0
    if options.co_activity_window and options.co_activity_weight > 0:
        window = pd.Timedelta(options.co_activity_window).value
        first = _epoch_ns(links["first_seen"])[keep]
        timed = ~common[ident]
        token = _pair_codes(ident[timed], first[timed] // window)
        co_weight = kind_w[kind_codes[timed]] * options.co_activity_weight
        (co, co_evidence), _, co_tokens, _ = _token_matrix(
            rows[timed], token, co_weight, evidence[timed], n, options.hub_cap
        )
        weights = weights + co + co_evidence
        ring_evidence = ring_evidence + co_evidence
    lock_accounts = lock_candidates = lock_pairs = 0
    if lockstep is not None:
        lock, lock_accounts, lock_candidates, lock_pairs = lockstep.result()
        weights = weights + lock
    weights, ring_evidence = _tidy(weights), _tidy(ring_evidence)
    stats = ProjectionStats(
        accounts=n,
        identifiers=hub_stats[0],
        hubs=hub_stats[1],
        hub_links=hub_stats[2],
        co_activity_tokens=co_tokens,
        lockstep_accounts=lock_accounts,
        lockstep_candidates=lock_candidates,
        lockstep_pairs=lock_pairs,
        edges=int(weights.nnz // 2),
    )
    return Projection(
        account_ids=account_ids,
        weights=weights,
        stats=stats,
        ring_evidence=ring_evidence,
        ring_identifiers=ring_identifiers,
    )


def _tidy(matrix: sp.spmatrix) -> sp.csr_matrix:
    """CSR with a zero diagonal (an account's own identifiers are no link), no stored zeros."""
    matrix = sp.csr_matrix(matrix)
    # Dropping the diagonal and zero entries directly: scipy's setdiag on a CSR matrix
    # whose diagonal is partly unstored goes through COO and back (seconds at 1M accounts).
    row = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    keep = (row != matrix.indices) & (matrix.data != 0)
    indptr = np.r_[0, np.cumsum(np.bincount(row[keep], minlength=matrix.shape[0]))]
    tidy = sp.csr_matrix(
        (matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape
    )
    tidy.sort_indices()
    return tidy


def _account_index(platform: Platform) -> np.ndarray:
    # Sorted ids make the projection, and so Leiden's result for a seed, independent of
    # the row order the store returned.
    # In Arrow: distinct ids by hash, then a byte-wise sort of UTF-8, which orders as
    # numpy's sort of the Python strings does (by code point).
    frames = (platform.accounts, platform.links, platform.usage)
    # Distinct per table first: the union is then built from a million ids, not 18M rows.
    ids = pc.unique(pa.chunked_array([pc.unique(strings(f["account_id"])) for f in frames]))
    ids = ids.drop_null()
    ordered = ids.take(pc.array_sort_indices(ids))
    return ordered.to_numpy(zero_copy_only=False).astype(object)


def _rows(account_id: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each account id in ``index`` (a hash lookup in Arrow)."""
    return positions(account_id, index)


def _epoch_ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch, whatever the unit and time zone of the column."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8


def _pair_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense codes for the distinct pairs ``(a[i], b[i])``."""
    b = b.astype(np.int64) - b.min(initial=0)
    key = a.astype(np.int64) * (int(b.max(initial=0)) + 1) + b
    return pd.factorize(key)[0]


def _identifier_matrix(rows, ident, kind_codes, kinds, kind_w, evidence, n, options):
    """Rarity-weighted projection over whole identifiers (split as in :func:`_token_matrix`),
    and per-kind hub counts."""
    ident_kind = np.zeros(int(ident.max(initial=-1)) + 1, dtype=np.int64)
    ident_kind[ident] = kind_codes
    evidence_kind = np.unique(kind_codes[evidence])
    rarity = None
    if options.rarity == "surprisal":

        def rarity(degree):
            return _surprisal_rarity(
                degree, ident_kind, options.rarity_reference, surprising=evidence_kind
            )

    matrix, degree, _, incidence = _token_matrix(
        rows, ident, kind_w[kind_codes], evidence, n, options.hub_cap, rarity=rarity
    )
    hub = degree > options.hub_cap
    shared = degree >= 2
    identifiers, hubs, hub_links = {}, {}, {}
    for i, k in enumerate(map(str, kinds)):
        of_kind = ident_kind == i
        identifiers[k] = int(np.sum(shared & of_kind))
        hubs[k] = int(np.sum(hub & of_kind))
        hub_links[k] = int(np.sum(degree[hub & of_kind]))
    return matrix, incidence, degree, (identifiers, hubs, hub_links)


def _hub_arrival(accounts, index, rows, ident, kind_codes, kinds, kind_w, degree, common,
                 options):
    """Hubs split by sign-up window: ``(identifier, window of created_at)`` tokens.

    Only links of ``hub_arrival_kinds`` to identifiers above ``hub_cap`` count, and not to
    those flagged ``common`` (held by most of the platform); a token of 2 to ``hub_cap``
    accounts is expanded like any other (its weight falls with its size).
    Returns its projection (all per-ring evidence) and its accounts × tokens incidence.
    """
    n = len(index)
    created = np.full(n, -1, dtype=np.int64)
    if "created_at" in accounts.columns:
        known = accounts["created_at"].notna().to_numpy()
        at = _rows(accounts["account_id"][known], index)
        created[at] = _epoch_ns(accounts["created_at"][known])
    hub_kind = np.isin(np.asarray(kinds, dtype=str), options.hub_arrival_kinds)[kind_codes]
    on_hub = hub_kind & (degree[ident] > options.hub_cap) & (created[rows] >= 0)
    window = pd.Timedelta(options.hub_arrival_window).value
    # Distinct (hub, account) uses, then each hub's mean sign-ups per window.
    hub, at = _distinct(ident[on_hub], rows[on_hub], n)
    born = created[at]
    first = np.full(len(degree), np.iinfo(np.int64).max)
    last = np.full(len(degree), np.iinfo(np.int64).min)
    np.minimum.at(first, hub, born)
    np.maximum.at(last, hub, born)
    on = np.bincount(hub, minlength=len(degree))
    windows = np.maximum((last - first) / window, 1.0)
    ident_kind = np.zeros(len(degree), dtype=np.int64)
    ident_kind[ident] = kind_codes
    expected = np.maximum(options.hub_arrival_burst * on / windows, 2)
    # Two grids half a window apart, so a burst that straddles a window edge is whole
    # in one of them; each grid carries half the kind weight.
    grids = []
    in_bursts = np.zeros(len(degree), dtype=np.int64)
    for shift in (0, window // 2):
        token = _pair_codes(hub, (born + shift) // window)
        burst = np.bincount(token)[token] >= expected[hub]
        grids.append((token, burst))
        in_bursts = np.maximum(in_bursts, np.bincount(hub[burst], minlength=len(degree)))
    # Campaign infrastructure: a large share of the hub's accounts arrived in bursts.
    public = in_bursts < options.hub_campaign_share * np.maximum(on, 1)
    parts, offset = [], 0
    for token, burst in grids:
        keep = burst & public[hub] & ~common[hub]
        parts.append((at[keep], token[keep] + offset, 0.5 * kind_w[ident_kind[hub[keep]]]))
        offset += int(token.max(initial=-1)) + 1
    at_k, token_k, weight = (np.concatenate(x) for x in zip(*parts, strict=True))
    (_, arrival), _, _, incidence = _token_matrix(
        at_k, token_k, weight, np.ones(len(token_k), dtype=bool), n, options.hub_cap
    )
    return arrival, incidence


def _distinct(token: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(token, row)`` pairs, sorted by token."""
    return np.divmod(_unique(token.astype(np.int64) * n + rows), n)


def _surprisal_rarity(degree, ident_kind, reference, *, surprising):
    """Rarity factor per identifier against its own kind's degree distribution.

    ``L`` is the share of the kind's account–identifier uses that sit on identifiers with
    at least ``d`` accounts: how often an account of this platform is found on an
    identifier this crowded. Its surprisal ``ln(1/L)``, in units of ``ln(1/reference)``
    and capped at 1, is the factor, floored by Adamic–Adar's ``1/log(1 + d)``. On a
    platform where 99 % of cards have one account, a card of 30 is very rare
    (factor 1); on one where most accounts sit behind big CGNAT or campus IPs, an IP of
    30 is not (factor near Adamic–Adar).
    """
    factor = 1.0 / np.log1p(np.maximum(degree, 1))
    ceiling = np.log(1.0 / reference)
    for kind in surprising:
        of_kind = np.flatnonzero((ident_kind == kind) & (degree >= 1))
        d = degree[of_kind]
        ordered = np.sort(d)
        # tail[i]: uses on identifiers with degree >= ordered[i] (ties share the tail).
        tail = np.r_[np.cumsum(ordered[::-1])[::-1], 0]
        share = tail[np.searchsorted(ordered, d, side="left")] / max(int(ordered.sum()), 1)
        surprise = np.minimum(1.0, np.log(1.0 / share) / ceiling)
        factor[of_kind] = np.maximum(factor[of_kind], surprise)
    return factor


def _token_matrix(rows, token, weight, evidence, n, cap, *, rarity=None):
    """``B · W · Bᵀ`` over tokens shared by 2 to ``cap`` accounts, in two parts.

    ``weight`` is the kind weight of each link; a token's weight is that times
    ``rarity(degree)`` (per token, given every token's degree), by default
    ``1 / log(1 + degree)``. ``evidence`` flags links of ring-evidence kinds (a token has one
    kind). Returns the products over the other tokens and over the evidence tokens (their
    sum is the projection; splitting the columns costs no more than one product), the
    number of accounts of every token, and the number of tokens used.
    """
    tok_u, rows_u = _distinct(token, rows, n)
    degree = np.bincount(tok_u)
    tok_weight = np.zeros(len(degree))
    tok_weight[token] = weight
    tok_evidence = np.zeros(len(degree), dtype=bool)
    tok_evidence[token] = evidence
    sel = ((degree >= 2) & (degree <= cap))[tok_u]
    kept = tok_u[sel]  # sorted
    new = np.r_[True, kept[1:] != kept[:-1]] if len(kept) else np.zeros(0, dtype=bool)
    cols, col = kept[new], np.cumsum(new) - 1
    factor = 1.0 / np.log1p(degree[cols]) if rarity is None else rarity(degree)[cols]
    w = tok_weight[cols] * factor
    rows_kept = rows_u[sel]
    parts = []
    for part in (~tok_evidence[kept], tok_evidence[kept]):
        b = sp.csr_matrix(
            (np.ones(int(part.sum())), (rows_kept[part], col[part])), shape=(n, len(cols))
        )
        parts.append((b @ sp.diags(w) @ b.T).tocsr())
    # The evidence incidence (accounts × evidence tokens) is the last ``b``.
    return tuple(parts), degree, len(cols), b[:, tok_evidence[cols]].tocsr()


def _lockstep(usage, index, options):
    """Edges between accounts with near-identical sets of active hours, via MinHash LSH.

    The similarity of a candidate pair is the MinHash estimate of the Jaccard index of
    their active-hour sets (standard error about ``0.5 / sqrt(bands·rows)``).
    """
    n = len(index)
    empty = sp.csr_matrix((n, n))
    if usage.empty:
        return empty, 0, 0, 0
    acc = _rows(usage["account_id"], index)
    hour = _epoch_ns(usage["hour"]) // _NS_PER_HOUR
    hour = hour - hour.min()
    n_hours = int(hour.max()) + 1
    acc, hour = np.divmod(_unique(acc.astype(np.int64) * n_hours + hour), n_hours)
    active = np.bincount(acc, minlength=n)
    eligible = (active >= options.lockstep_min_hours) & (
        active <= options.lockstep_max_share * n_hours
    )
    sel = eligible[acc]
    acc, hour = acc[sel], hour[sel]
    accounts = np.flatnonzero(eligible)
    if len(accounts) < 2:
        return empty, len(accounts), 0, 0
    sig = _minhash(np.searchsorted(accounts, acc), hour, n_hours, options)
    left, right = _lsh_candidates(sig, options)
    # Counting matches and dividing once gives the same floats as a mean of booleans,
    # without a float64 copy of every compared signature.
    similarity = np.concatenate(
        [
            np.count_nonzero(sig[left[c : c + _CHUNK]] == sig[right[c : c + _CHUNK]], axis=1)
            / sig.shape[1]
            for c in range(0, len(left), _CHUNK)
        ]
        or [np.zeros(0)]
    )
    ok = similarity >= options.lockstep_threshold
    w = options.lockstep_weight * similarity[ok]
    upper = sp.coo_matrix((w, (accounts[left[ok]], accounts[right[ok]])), shape=(n, n))
    return (upper + upper.T).tocsr(), len(accounts), len(left), int(ok.sum())


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values; sorting beats numpy's hash-based unique on large int arrays."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _minhash(acc, hour, n_hours, options):
    """MinHash signatures (accounts × bands·rows) of each account's active hours.

    ``acc`` must be sorted and cover ``0 … max(acc)``.
    """
    k = options.lockstep_bands * options.lockstep_rows
    rng = np.random.default_rng(options.seed)
    starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
    sig = np.empty((len(starts), k), dtype=np.int32)
    for j in range(k):
        perm = rng.permutation(n_hours).astype(np.int32)
        sig[:, j] = np.minimum.reduceat(perm[hour], starts)
    return sig


def _lsh_candidates(sig, options):
    """Distinct pairs ``(i < j)`` of signature rows that share an LSH bucket."""
    r = options.lockstep_rows
    m = len(sig)
    members = np.arange(m, dtype=np.int64)
    found = []
    for band in range(options.lockstep_bands):
        key = np.zeros(m, dtype=np.uint64)
        for col in sig[:, band * r : (band + 1) * r].T.astype(np.uint64):
            key = key * _BAND_MIX + col
        order = np.argsort(key, kind="stable")
        found.append(_pairs_in_runs(members[order], key[order], options.lockstep_bucket_cap, m))
    return np.divmod(_unique(np.concatenate(found)), m)


def _pairs_in_runs(members, key, cap, m):
    """Codes ``i·m + j`` (``i < j``) of pairs in runs of equal ``key`` of size 2 to ``cap``."""
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    ok = (sizes >= 2) & (sizes <= cap)
    end = np.repeat(starts + sizes, sizes)
    pos = np.flatnonzero(np.repeat(ok, sizes))
    out = [np.zeros(0, dtype=np.int64)]
    for d in range(1, int(sizes[ok].max(initial=1))):
        pos = pos[pos + d < end[pos]]
        a, b = members[pos], members[pos + d]
        out.append(np.minimum(a, b) * m + np.maximum(a, b))
    return np.concatenate(out)
