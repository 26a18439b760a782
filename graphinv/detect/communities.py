"""Rings by Leiden (CPM) on the account projection, and campaigns of rings.

Leiden with the Constant Potts Model maximises ``Σ_rings (w_in − γ · n(n − 1) / 2)``,
where ``w_in`` is the total edge weight inside a ring of ``n`` accounts: a group of
accounts stays together only while its mean pairwise weight exceeds the resolution
``γ``. So ``resolution`` reads as the *minimum internal density of a ring*, in units of
projection weight (one shared card of a 3-account group weighs ``1/log 4 ≈ 0.72``).
Unlike modularity, CPM has no resolution limit and no dependence on the rest of the
graph, so a ring is found the same way in a 1,000-account export and a 1M one.

Leiden runs on each connected component separately, with the same seed, so a component's
rings do not depend on the rest of the platform. A component whose every pair of accounts
is linked with weight at least ``γ`` is one ring without running Leiden (no split can
raise CPM quality); this covers most households and small rings.

A ring whose members each did little (few hours, few shared IPs) has a low mean pairwise
weight and comes out of Leiden in pieces. A second pass joins pieces, never splits them:
each piece becomes one node, pieces are linked by the per-ring evidence of the projection
(cards and IPs, not templates or lockstep, which whole campaigns share), and CPM at
``merge_resolution`` ``γ₂`` runs on that piece graph, so two pieces join only while the
card and IP evidence between them has a mean pairwise weight of at least ``γ₂``. Only
pieces of at least ``merge_min_piece`` accounts take part: a lone account sharing a proxy
IP with a ring is not pulled in. Pieces join only when they hold ``merge_min_shared``
distinct rare cards/IPs in common, or when most accounts of each piece sit on the rare
cards/IPs they share (``merge_min_coverage``: a ring held by one exit or one card). A
piece smaller than ``merge_own_evidence_below`` must also be held together by a card/IP
of its own that the other piece lacks: a pair of ring members sharing their card, not two
strangers whose only tie is the proxy exit they share with the ring.

Rings of one campaign share templates heavily enough to come out as one community, but
each ring funds and routes itself. The split pass runs CPM on card/IP evidence inside each
community and splits it when that gives two or more groups of ring size. Accounts left
outside rings then join the ring that raises CPM quality most, if any (``attach``).
Members hanging on one ring-mate then leave (``min_ring_ties``), and a last pass groups
what is left by strong card/IP ties alone (``evidence_component_*``): chains of accounts
that each share a card with two others, which CPM never keeps. That pass also runs once
before attach (``evidence_component_early``), so attach cannot cut a chain first. The
merge pass then runs once more (``merge_again``) on what the later passes left.

Campaigns group rings that share infrastructure: a card, a prompt template, or the ASN
of proxy IPs that a good share of each ring's members use, and that is concentrated in
rings rather than spread over the platform (a popular public template is not).

Examples
--------
>>> import numpy as np, pandas as pd, scipy.sparse as sp
>>> from graphinv.detect.projection import Projection, ProjectionStats
>>> from graphinv.schema import Platform
>>> ids = np.array([f"a{i}" for i in range(7)], dtype=object)
>>> w = sp.lil_matrix((7, 7))
>>> for i in range(5):
...     for j in range(i + 1, 5):
...         w[i, j] = w[j, i] = 1.0
>>> w[5, 6] = w[6, 5] = 1.0
>>> stats = ProjectionStats(7, {}, {}, {}, 0, 0, 0, 0, 11)
>>> proj = Projection(ids, w.tocsr(), stats, ring_evidence=sp.csr_matrix((7, 7)))
>>> empty = pd.DataFrame(columns=["account_id", "kind", "value", "first_seen",
...                               "last_seen", "count"])
>>> platform = Platform(accounts=pd.DataFrame({"account_id": ids}), links=empty, usage=None)
>>> det = detect_rings(proj, platform=platform)
>>> det.rings[["ring_id", "size"]].to_dict("records")
[{'ring_id': 'ring-00001', 'size': 5}]
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import numpy as np
import pandas as pd
import pydantic
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from graphinv.detect.projection import Projection
from graphinv.detect.workers import start_forked
from graphinv.schema import Platform
from graphinv.stores.codes import factorize, is_in, positions

if TYPE_CHECKING:
    import igraph as ig

__all__ = ["Detection", "DetectionOptions", "DetectionStats", "detect_rings"]

_Meanwhile = TypeVar("_Meanwhile")


_Positive = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
_Share = Annotated[float, pydantic.Field(ge=0, le=1)]


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class DetectionOptions:
    """How rings and campaigns are cut from the projection.

    Validated when built: a bad value raises ``pydantic.ValidationError`` naming the field.

    Parameters
    ----------
    resolution : float
        CPM resolution ``γ``: the minimum mean pairwise weight inside a ring (> 0).
        Default ``0.3``: a ring held by one moderately rare proxy exit (pair weights
        0.2–0.4) stays whole; rings of one campaign that clear it together through shared
        templates are separated again by the evidence split.
    min_ring_size : int
        Communities with fewer live accounts are not rings (≥ 2). Default ``5``.
    min_edge_weight : float
        Edges lighter than this are dropped before components and Leiden: one weakly
        shared identifier cannot make two accounts a ring at any useful resolution,
        and dropping them splits the giant component into pieces Leiden runs on fast.
        Default ``0.2``.
    seed : int
        Leiden seed, the same for every component. Default ``0``.
    objective : {"CPM", "modularity"}
        Leiden quality function. With ``"modularity"`` the resolution is the usual
        modularity resolution, not a density. Default ``"CPM"``.
    implementation : {"igraph", "leidenalg"}
        Which Leiden implementation runs. ``"igraph"``: igraph's C core
        (``community_leiden``), about ten times faster on dense components; igraph only
        draws from a process-wide generator, so it runs in a forked child process whose
        generator is seeded there, leaving this process's untouched (POSIX only).
        ``"leidenalg"``: in this process with its own seeded generator. Default
        ``"igraph"``.
    n_iterations : int
        Leiden iterations per component; negative runs until no improvement.
        Default ``-1``.
    campaign_kinds : tuple[str, ...]
        Link kinds that count as shared infrastructure between rings. Default
        ``("payment_method", "prompt_fingerprint")``.
    campaign_proxy_asn : bool
        Also count the ASN of IPs flagged ``is_proxy`` or ``is_datacenter`` in the
        ``ips`` table. Default ``True``.
    campaign_min_share : float
        A ring uses an identifier when at least this share of its members (and at
        least two) do. Default ``0.3``.
    campaign_min_concentration : float
        An identifier is campaign infrastructure only when at least this share of all
        accounts using it sit in the rings that use it. Default ``0.5``.
    merge_resolution : float or None
        CPM resolution ``γ₂`` of the pass that joins Leiden's pieces: the minimum mean
        pairwise weight of per-ring evidence (``Projection.ring_evidence``) between two
        pieces for them to join. ``None`` turns the pass off. Default ``0.03``.
    merge_min_piece : int
        Pieces with fewer accounts neither join nor are joined. A component smaller than
        ``min_ring_size`` is one piece, any other account outside communities a piece of
        one. Default ``2``.
    merge_own_evidence_below : int
        Pieces with fewer accounts join only when a rare card/IP that at least two of
        their accounts use, and that the other piece does not hold, holds them together.
        Default ``3``: two benign users behind one residential proxy IP form a pair held
        by that IP alone, which they share with the ring using the proxy; two ring
        members that share their own card (a pair of a ring funded card by card, or a
        respawned account and its banned predecessor) meet the ring through its exit or
        its sign-up burst.
    merge_min_shared : int
        Two pieces join only when they hold at least this many distinct rare cards or
        IPs in common (``Projection.ring_identifiers``): more than a chance overlap, such
        as one household or VPN user on a ring's proxy exit. Default ``3``.
    merge_min_coverage : float or None
        Two pieces that share fewer than ``merge_min_shared`` rare cards/IPs still join
        when at least this share of the accounts of *each* piece holds one of the rare
        cards/IPs they share: a ring held by one proxy exit or one funding card (a star)
        has pieces that all sit on it, while a household or VPN user next to a ring shares
        an exit with only a few of the ring's members. ``None``: the count alone decides.
        Default ``0.8``.
    merge_again : bool
        Run the merge pass once more after the last pass, on the rings and pieces left
        by the split, attach and the last pass. Default ``True``.
    evidence_split : bool
        After the merge pass, a community whose card/IP evidence
        (``Projection.ring_evidence``) falls into two or more groups of at least
        ``min_ring_size`` accounts, by CPM at ``split_resolution`` on that evidence, is
        split into those groups: rings of one campaign share prompt templates and client
        versions heavily enough to clear the resolution together, but each ring funds
        and routes itself. Accounts of the community outside those groups go with the
        group they are most heavily linked to. Default ``True``.
    split_resolution : float
        CPM resolution on card/IP evidence inside a community for that split: groups
        whose mean pairwise evidence between them is below it come apart.
        Default ``0.03``.
    attach : bool
        After the split, an account outside rings joins the ring to which its weight
        exceeds ``resolution`` times the ring's size (the move raises CPM quality; Leiden
        stops at a local optimum and the split changes ring sizes after it). Default
        ``True``.
    evidence_component_weight : float or None
        Last pass: among accounts left outside rings, groups connected by per-ring
        evidence edges at least this heavy become communities (see
        :func:`_evidence_components`). ``None`` turns it off. Default ``0.7``: a card
        held by two or three accounts (0.7–1), not one residential exit (0.5 at most
        without co-arrival).
    evidence_component_strength : float
        In that pass, accounts whose kept evidence sums to less are peeled off,
        repeatedly. Default ``0.0`` (off).
    evidence_component_degree : int
        In that pass, accounts with fewer kept edges, or with kept edges through fewer
        distinct rare cards/IPs (``Projection.ring_identifiers``), are dropped once,
        before the components are taken (not repeatedly: peeling a chain's ends again
        and again would eat a sparse ring whole). Default ``2``: a customer of a ring's
        residential exit hangs on it by one tie, or by several through that one exit.
    evidence_component_early : bool
        Run that pass also right after the split, before ``attach``: attach would
        otherwise pull a chain's members one by one into neighbouring communities and
        cut the chain. Default ``True``.
    min_ring_ties : int
        Before the last pass, a ring member linked (in the projection, lighter edges
        dropped) to fewer of its ring's other accounts leaves the ring, once: a
        customer of a ring's residential exit hangs on a single member. The last pass
        may still group it by strong card/IP ties. ``0`` or ``1`` turns it off.
        Default ``2``.
    inactive_statuses : tuple[str, ...]
        Account ``status`` values (in ``platform.accounts``) of accounts that are kept in
        the projection as structure but never listed as ring members: a banned member's
        card is often what holds the survivors together, and a banned account needs no
        alert. Default ``("banned", "suspended", "closed")``.
    """

    resolution: _Positive = 0.3
    min_ring_size: Annotated[int, pydantic.Field(ge=2)] = 5
    min_edge_weight: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] = 0.2
    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    objective: Literal["CPM", "modularity"] = "CPM"
    implementation: Literal["igraph", "leidenalg"] = "igraph"
    n_iterations: int = -1
    campaign_kinds: tuple[str, ...] = ("payment_method", "prompt_fingerprint")
    campaign_proxy_asn: bool = True
    campaign_min_share: _Share = 0.3
    campaign_min_concentration: _Share = 0.5
    merge_resolution: _Positive | None = 0.03
    merge_min_piece: Annotated[int, pydantic.Field(ge=1)] = 2
    merge_min_shared: Annotated[int, pydantic.Field(ge=1)] = 3
    merge_min_coverage: Annotated[float, pydantic.Field(gt=0, le=1)] | None = 0.8
    merge_own_evidence_below: Annotated[int, pydantic.Field(ge=1)] = 3
    merge_again: bool = True
    evidence_split: bool = True
    split_resolution: _Positive = 0.03
    attach: bool = True
    inactive_statuses: tuple[str, ...] = ("banned", "suspended", "closed")
    evidence_component_weight: _Positive | None = 0.7
    evidence_component_strength: Annotated[float, pydantic.Field(ge=0)] = 0.0
    evidence_component_degree: Annotated[int, pydantic.Field(ge=0)] = 2
    min_ring_ties: Annotated[int, pydantic.Field(ge=0)] = 2
    evidence_component_early: bool = True


@dataclass(frozen=True)
class DetectionStats:
    """Counts from one detection run.

    Attributes
    ----------
    components : int
        Connected components of the projection with at least ``min_ring_size`` accounts.
    leiden_runs : int
        Components Leiden ran on; the rest were complete enough to be one ring as is.
    split_communities : int
        Communities split into rings with little card/IP evidence between them.
    attached : int
        Accounts outside rings that joined a ring after the split.
    merged_pieces : int
        Communities that the merge pass joined with at least one other (both runs).
    evidence_grouped : int
        Accounts outside rings that the third pass grouped by card/IP evidence.
    pendants_dropped : int
        Ring members linked to fewer than ``min_ring_ties`` of their ring's accounts,
        dropped before that pass.
    rings, accounts_in_rings, campaigns : int
    seconds : float
        Wall time of the detection (projection excluded).
    """

    components: int
    leiden_runs: int
    split_communities: int
    attached: int
    merged_pieces: int
    evidence_grouped: int
    pendants_dropped: int
    rings: int
    accounts_in_rings: int
    campaigns: int
    seconds: float

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    """Rings and campaigns found.

    Attributes
    ----------
    members : pandas.DataFrame
        ``ring_id, account_id``, one row per account in a ring.
    rings : pandas.DataFrame
        ``ring_id, size, campaign_id, component, internal_weight, density,
        edge_density, conductance``; ``density`` is the mean pairwise weight (what the
        resolution bounds), ``edge_density`` the share of pairs linked at all,
        ``conductance`` the share of the ring's edge weight that leaves it.
        Sorted by size, largest first.
    campaigns : pandas.DataFrame
        ``campaign_id, n_rings, size, shared_identifiers``.
    stats : DetectionStats
    """

    members: pd.DataFrame
    rings: pd.DataFrame
    campaigns: pd.DataFrame
    stats: DetectionStats


def detect_rings(
    projection: Projection, *, platform: Platform, options: DetectionOptions | None = None
) -> Detection:
    """Rings (Leiden CPM per component) and campaigns (rings sharing infrastructure).

    Reads ``links`` and ``ips`` of ``platform`` for campaigns; never ``labels``.

    Parameters
    ----------
    projection : Projection
        From :func:`graphinv.detect.projection.project`.
    platform : Platform
        The platform the projection came from.
    options : DetectionOptions, optional
        Defaults documented on the class.

    Returns
    -------
    Detection

    Examples
    --------
    >>> DetectionOptions().min_ring_size
    5
    """
    options = options or DetectionOptions()
    start = time.perf_counter()
    weights = strong_weights(projection, options)
    _, comp = connected_components(weights, directed=False)
    index = pd.Index(projection.account_ids)
    # Campaign infrastructure does not depend on the rings: this process reads it while
    # Leiden's children run (one of them, with the largest component, runs longest).
    label, components, runs, infrastructure = _leiden(
        weights, comp, options, meanwhile=lambda: _infrastructure(platform, index, options))
    return rings_from_communities(
        label,
        weights=weights,
        comp=comp,
        components=components,
        leiden_runs=runs,
        projection=projection,
        platform=platform,
        options=options,
        started=start,
        infrastructure=infrastructure,
    )


def strong_weights(projection: Projection, options: DetectionOptions) -> sp.csr_matrix:
    """The projection's pair weights without those below ``options.min_edge_weight``."""
    weights = projection.weights
    if options.min_edge_weight > 0:
        weights = weights.multiply(weights >= options.min_edge_weight).tocsr()
    return weights


def rings_from_communities(
    label: np.ndarray,
    *,
    weights: sp.csr_matrix,
    comp: np.ndarray,
    components: int,
    leiden_runs: int,
    projection: Projection,
    platform: Platform,
    options: DetectionOptions,
    started: float,
    infrastructure: tuple[np.ndarray, np.ndarray] | None = None,
) -> Detection:
    """Everything :func:`detect_rings` does after Leiden, for any engine that ran Leiden.

    ``label`` is the community per account (``-1`` outside searched components, numbered
    as ``_leiden`` numbers them), ``weights`` the :func:`strong_weights` and ``comp`` their
    connected component per account; ``started`` is when detection began
    (``time.perf_counter()``), for the stats; ``infrastructure``: the campaign tokens
    (:func:`_infrastructure`) when already read, else they are read here.
    """
    merged = 0
    if options.merge_resolution is not None:
        label, merged = _merge_pieces(
            label, comp, projection.ring_evidence, projection.ring_identifiers, options
        )
    split = 0
    if options.evidence_split:
        label, split = _split_by_evidence(label, weights, projection.ring_evidence, options)
    grouped = 0
    chained = np.zeros(len(label), dtype=bool)
    if options.evidence_component_early and options.evidence_component_weight is not None:
        # Before attach, which would otherwise pull a chain's members one by one into
        # neighbouring communities and cut the chain.
        before = label
        label, grouped = _evidence_components(
            label, projection.ring_evidence, projection.ring_identifiers, options)
        chained = label != before
    attached = 0
    if options.attach:
        label, attached = _attach_outsiders(label, weights, options)
    pruned = 0
    if options.min_ring_ties > 1:
        label, pruned = _drop_pendants(label, weights, options, keep=chained)
    if options.evidence_component_weight is not None:
        label, more = _evidence_components(
            label, projection.ring_evidence, projection.ring_identifiers, options)
        grouped += more
    if options.merge_again and options.merge_resolution is not None:
        # The split, attach and the last pass change the pieces; pieces of one ring that
        # were not pieces at the first merge (a hub ring's card groups) meet here.
        label, more = _merge_pieces(
            label, comp, projection.ring_evidence, projection.ring_identifiers, options
        )
        merged += more
    # Inactive accounts held the structure together; only live ones are ring members.
    label = np.where(_inactive(projection.account_ids, platform, options), -1, label)
    ring_of = _number_rings(label, projection.account_ids, options.min_ring_size)
    rings = _ring_table(projection.weights, ring_of, comp)
    members = pd.DataFrame(
        {
            "ring_id": _ring_ids(ring_of[ring_of >= 0]),
            "account_id": projection.account_ids[ring_of >= 0],
        }
    ).sort_values(["ring_id", "account_id"], ignore_index=True)
    if infrastructure is None:
        infrastructure = _infrastructure(platform, pd.Index(projection.account_ids), options)
    campaign_of, shared = _campaigns(ring_of, len(rings), infrastructure, options)
    rings.insert(2, "campaign_id", _campaign_ids(campaign_of))
    campaigns = (
        rings.groupby("campaign_id", sort=True)
        .agg(n_rings=("ring_id", "size"), size=("size", "sum"))
        .reset_index()
    )
    campaigns["shared_identifiers"] = shared
    stats = DetectionStats(
        components=components,
        leiden_runs=leiden_runs,
        split_communities=split,
        attached=attached,
        merged_pieces=merged,
        evidence_grouped=grouped,
        pendants_dropped=pruned,
        rings=len(rings),
        accounts_in_rings=int(np.sum(ring_of >= 0)),
        campaigns=len(campaigns),
        seconds=time.perf_counter() - started,
    )
    return Detection(members=members, rings=rings, campaigns=campaigns, stats=stats)


def _leiden(weights: sp.csr_matrix, comp: np.ndarray, options: DetectionOptions, *,
            meanwhile: Callable[[], _Meanwhile]) -> tuple[np.ndarray, int, int, _Meanwhile]:
    """Community label per account (``-1`` outside searched components), the number of
    components and of Leiden runs, and what ``meanwhile()`` returned, called in this
    process while Leiden runs in children."""
    sizes = np.bincount(comp)
    order = np.flatnonzero(sizes[comp] >= options.min_ring_size)
    order = order[np.argsort(comp[order], kind="stable")]
    label = np.full(len(comp), -1, dtype=np.int64)
    if len(order) == 0:
        return label, 0, 0, meanwhile()
    pos = np.empty(len(comp), dtype=np.int64)
    pos[order] = np.arange(len(order))
    sub = weights[order]
    row = np.repeat(np.arange(len(order)), np.diff(sub.indptr))
    col = pos[sub.indices]
    upper = col > row
    row, col, w = row[upper], col[upper], sub.data[upper]
    node_comp = comp[order]
    comp_start = np.flatnonzero(np.r_[True, node_comp[1:] != node_comp[:-1]])
    comp_size = np.diff(np.r_[comp_start, len(order)])
    edge_start = np.searchsorted(row, comp_start)
    edge_end = np.r_[edge_start[1:], len(row)]
    n_edges = edge_end - edge_start
    min_w = np.full(len(comp_start), -np.inf)
    has = n_edges > 0
    min_w[has] = np.minimum.reduceat(w, edge_start[has])
    # CPM quality is Σ over same-ring pairs of (w − γ): when every pair is linked with
    # w ≥ γ, the whole component is optimal and Leiden has nothing to do.
    complete = (n_edges == comp_size * (comp_size - 1) // 2) & (min_w >= options.resolution)
    jobs = []
    for c, (s, size) in enumerate(zip(comp_start, comp_size, strict=True)):
        if not complete[c]:
            e = slice(edge_start[c], edge_end[c])
            jobs.append((int(size), np.column_stack([row[e] - s, col[e] - s]), w[e]))
    collect = _partitions(jobs, options)
    done_meanwhile = meanwhile()
    memberships = iter(collect())
    next_label = 0
    for c, (s, size) in enumerate(zip(comp_start, comp_size, strict=True)):
        membership = np.zeros(size, dtype=np.int64) if complete[c] else next(memberships)
        label[order[s : s + size]] = next_label + membership
        next_label += int(membership.max()) + 1
    return label, len(comp_start), len(jobs), done_meanwhile


def _drop_pendants(
    label: np.ndarray, weights: sp.csr_matrix, options, *, keep: np.ndarray | None = None
):
    """Members of a ring linked to fewer than ``min_ring_ties`` of its other accounts leave it.

    Once, not repeatedly: a customer of a ring's residential exit, or a household member
    next to a ring, hangs on one ring member; peeling again would eat a chain from its
    ends. Accounts flagged in ``keep`` (grouped by strong card/IP ties already, where
    the next-to-last account of a chain has one ring-mate) stay. Returns the new labels
    and the number of accounts dropped.
    """
    sizes = np.bincount(label[label >= 0], minlength=int(label.max(initial=0)) + 1)
    ringed = (label >= 0) & (sizes[np.maximum(label, 0)] >= options.min_ring_size)
    coo = weights.tocoo()
    same = ringed[coo.row] & (label[coo.row] == label[coo.col])
    ties = np.bincount(coo.row[same], minlength=len(label))
    drop = ringed & (ties < options.min_ring_ties)
    if keep is not None:
        drop &= ~keep
    if not drop.any():
        return label, 0
    return np.where(drop, -1, label), int(drop.sum())


def _split_by_evidence(
    label: np.ndarray, weights: sp.csr_matrix, evidence: sp.csr_matrix, options
) -> tuple[np.ndarray, int]:
    """Split communities made of card/IP-disjoint groups (rings of one campaign).

    Within each community of at least ``2 · min_ring_size`` accounts, CPM at
    ``split_resolution`` on its own card/IP evidence (``Projection.ring_evidence``) makes
    groups: two rings bridged by one shared card or exit have an evidence density far
    below it between them, one ring's members are far above it. A community with two or
    more groups of ``min_ring_size`` accounts or more becomes those groups, and each of
    its other accounts joins the group it has the most projection weight to (the largest
    group when it has none). Returns the new labels and the number of communities split.
    """
    n = len(label)
    group = np.arange(n, dtype=np.int64)
    sizes = np.bincount(label[label >= 0]) if (label >= 0).any() else np.zeros(0, int)
    candidates = np.flatnonzero(sizes >= 2 * options.min_ring_size)
    if len(candidates) == 0:
        return label, 0
    coo = sp.triu(evidence, k=1).tocoo()
    inside = (label[coo.row] >= 0) & (label[coo.row] == label[coo.col])
    inside &= np.isin(label[coo.row], candidates)
    er, ec, ew = coo.row[inside], coo.col[inside], coo.data[inside]
    order = np.argsort(label[er], kind="stable")
    er, ec, ew = er[order], ec[order], ew[order]
    label_limits = np.append(candidates, candidates[-1] + 1)
    bounds = np.searchsorted(label[er], label_limits)
    by_label = np.argsort(label, kind="stable")  # accounts of each community, in id order
    sorted_label = label[by_label]
    starts = np.searchsorted(sorted_label, label_limits)
    jobs, owners = [], []
    for k, c in enumerate(candidates):
        if bounds[k + 1] == bounds[k]:
            continue
        accounts = by_label[starts[k] : starts[k] + sizes[c]]
        e = slice(bounds[k], bounds[k + 1])
        local = np.searchsorted(accounts, np.column_stack([er[e], ec[e]]))
        jobs.append((len(accounts), local, ew[e]))
        owners.append(accounts)
    # CPM on evidence, with igraph's Leiden like the first pass (seeded per community).
    on_evidence = dataclasses.replace(options, objective="CPM", resolution=options.split_resolution)
    next_group = n
    for accounts, membership in zip(owners, _partitions(jobs, on_evidence)(), strict=True):
        group[accounts] = next_group + membership
        next_group += int(membership.max()) + 1
    in_comm = label >= 0
    group_size = np.bincount(group[in_comm], minlength=n)
    big = in_comm & (group_size[group] >= options.min_ring_size)
    # Distinct big groups per community.
    span = int(group.max()) + 1
    pairs = np.unique(label[big].astype(np.int64) * span + group[big])
    n_big = np.bincount(pairs // span, minlength=int(label.max(initial=-1)) + 1)
    split_comms = np.flatnonzero(n_big >= 2)
    if len(split_comms) == 0:
        return label, 0
    label = label.copy()
    next_label = int(label.max()) + 1
    for c in split_comms:
        first = np.searchsorted(sorted_label, c)
        accounts = by_label[first : first + sizes[c]]
        holders = accounts[big[accounts]]
        groups, of = np.unique(group[holders], return_inverse=True)
        rest = accounts[~big[accounts]]
        if len(rest):
            member = sp.csr_matrix(
                (np.ones(len(holders)), (np.arange(len(holders)), of)),
                shape=(len(holders), len(groups)),
            )
            pull = (weights[rest][:, holders] @ member).toarray()
            largest = int(np.argmax(np.bincount(of)))
            choice = np.where(pull.max(axis=1) > 0, pull.argmax(axis=1), largest)
        # The largest group keeps the community's label, the others get new ones.
        new_of_group = np.full(len(groups), -1, dtype=np.int64)
        order = np.argsort(-np.bincount(of), kind="stable")
        new_of_group[order[0]] = c
        new_of_group[order[1:]] = next_label + np.arange(len(groups) - 1)
        next_label += len(groups) - 1
        label[holders] = new_of_group[of]
        if len(rest):
            label[rest] = new_of_group[choice]
    return label, len(split_comms)


def _attach_outsiders(label: np.ndarray, weights: sp.csr_matrix, options):
    """Accounts outside rings join the ring that CPM says they belong to.

    Leiden stops at a local optimum, and the split changes ring sizes after it ran: an
    account left alone (or in a community smaller than ``min_ring_size``) whose weight to
    a ring ``R`` exceeds ``resolution · |R|`` (moving it there raises CPM quality) joins
    the ring where that gain is largest. Returns the labels and the number moved.
    """
    n = len(label)
    sizes = np.bincount(label[label >= 0], minlength=int(label.max(initial=0)) + 1)
    ring = (label >= 0) & (sizes[np.maximum(label, 0)] >= options.min_ring_size)
    outside = np.flatnonzero(~ring)
    if len(outside) == 0 or not ring.any():
        return label, 0
    rings, of = np.unique(label[ring], return_inverse=True)
    member = sp.csr_matrix((np.ones(int(ring.sum())), (np.flatnonzero(ring), of)),
                           shape=(n, len(rings)))
    pull = (weights[outside] @ member).tocoo()
    gain = pull.data - options.resolution * sizes[rings[pull.col]]
    good = gain > 0
    if not good.any():
        return label, 0
    row, col, gain = pull.row[good], pull.col[good], gain[good]
    # Best ring per account: sort by account, then gain (largest last).
    order = np.lexsort((-col, gain, row))
    last = np.r_[row[order][1:] != row[order][:-1], True]
    chosen = order[last]
    label = label.copy()
    label[outside[row[chosen]]] = rings[col[chosen]]
    return label, len(chosen)


def _merge_pieces(
    label: np.ndarray,
    comp: np.ndarray,
    evidence: sp.csr_matrix,
    identifiers: sp.csr_matrix | None,
    options: DetectionOptions,
):
    """Join Leiden communities by CPM at ``merge_resolution`` on the graph of communities.

    Accounts outside communities are pieces too: those of a component smaller than
    ``min_ring_size`` (of the strong weights, ``comp``) one piece per component (two
    ring members on their own card, whose other ties to the ring are light), any other
    a piece of one.
    Returns the new label per account (``-1`` still for accounts outside communities
    that joined nothing) and the number of communities joined with another.
    """
    gamma = options.merge_resolution
    piece = label.copy()
    alone = piece < 0
    small = np.bincount(comp)[comp] < options.min_ring_size
    # Small components by their own number, every other account alone by its row.
    key = np.where(small, comp, len(label) + np.arange(len(label)))[alone]
    piece[alone] = piece.max(initial=-1) + 1 + np.unique(key, return_inverse=True)[1]
    n, m = len(piece), int(piece.max(initial=-1)) + 1
    size = np.bincount(piece, minlength=m)
    # Pieces below merge_min_piece never join: leaving their accounts out of the
    # products skips their evidence rows and changes no sum between two larger pieces.
    at = np.flatnonzero(size[piece] >= options.merge_min_piece)
    member = sp.csr_matrix((np.ones(len(at)), (at, piece[at])), shape=(n, m))
    between = sp.triu(member.T @ evidence @ member, k=1).tocoo()
    a, b, w = between.row, between.col, between.data
    keep = (w / (size[a] * size[b]) >= gamma) & (
        np.minimum(size[a], size[b]) >= options.merge_min_piece
    )
    if identifiers is not None and options.merge_min_shared > 1:
        # Distinct rare cards/IPs held on both sides: one shared proxy IP is what a
        # household or VPN user next to a ring looks like; pieces of one ring share many.
        held = (member.T @ identifiers).tocsr()
        # Identifiers at least two accounts of a piece use, before counts become 0/1.
        own = held >= 2
        held.data[:] = 1
        # Only pairs still kept can change: the others (most pairs) are not looked at.
        dense = np.flatnonzero(keep)
        ka, kb = a[dense], b[dense]
        shared = np.asarray((held[ka].multiply(held[kb])).sum(axis=1)).ravel()
        enough = shared >= options.merge_min_shared
        if options.merge_min_coverage is not None:
            enough |= _covered(ka, kb, piece, held, identifiers, size,
                               options.merge_min_coverage)
        if options.merge_own_evidence_below > options.merge_min_piece:
            enough &= _own_evidence(ka, kb, size, own, held, options.merge_own_evidence_below)
        keep[dense] = enough
    a, b, w = a[keep], b[keep], w[keep]
    nodes = np.unique(np.r_[a, b])
    if len(nodes) == 0:
        return label, 0
    import leidenalg

    # Each node is a whole piece with its size, so Leiden can only group pieces, and
    # CPM's penalty γ₂·n_a·n_b for joining two pieces makes γ₂ a density between them.
    graph = _graph(
        len(nodes), np.column_stack([np.searchsorted(nodes, a), np.searchsorted(nodes, b)])
    )
    part = leidenalg.find_partition(
        graph,
        leidenalg.CPMVertexPartition,
        weights=w,
        node_sizes=size[nodes].tolist(),
        resolution_parameter=gamma,
        n_iterations=options.n_iterations,
        seed=options.seed,
    )
    group = np.asarray(part.membership, dtype=np.int64)
    joined = np.bincount(group)[group] >= 2
    target = np.arange(m)
    target[nodes[joined]] = m + group[joined]
    new = np.unique(target[piece], return_inverse=True)[1].astype(np.int64)
    new[alone & ~np.isin(piece, nodes[joined])] = -1
    return new, int(joined.sum())


def _own_evidence(a, b, size, own, held, below) -> np.ndarray:
    """Per piece pair ``(a, b)``: is each piece of fewer than ``below`` accounts held
    together by a rare card/IP that at least two of its accounts use (``own``) and the
    other piece does not hold (``held``)?

    Two benign customers of a ring's proxy exit are a piece held by that exit alone, the
    identifier they share with the ring; a pair of ring members is held by its own card and
    meets the ring through the exit or a sign-up burst.
    """
    ok = np.ones(len(a), dtype=bool)
    for x, y in ((a, b), (b, a)):
        small = size[x] < below
        if small.any():
            # Boolean pieces × identifiers: used by two of x's accounts and not held by y.
            apart = own[x[small]] > held[y[small]]
            ok[small] &= apart.getnnz(axis=1) > 0
    return ok


def _covered(a, b, piece, held, identifiers, size, min_coverage) -> np.ndarray:
    """Per piece pair ``(a, b)``: does at least ``min_coverage`` of each piece's accounts
    hold a rare card/IP that the other piece holds too (and the first one does)?"""
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    both = held[a].multiply(held[b]).tocsr()  # identifiers each pair shares
    both.data[:] = 1
    # Stored entries of hits: account i holds one of the identifiers shared by pair p
    # (a product of non-negative counts stores no zeros).
    hits = (identifiers @ both.T).tocoo()
    account, pair = hits.row, hits.col
    # Accounts of each pair's own pieces, counted straight from the hits: a piece ×
    # pair product would be read back at one entry per pair.
    covered_a = np.bincount(pair[piece[account] == a[pair]], minlength=len(a))
    covered_b = np.bincount(pair[piece[account] == b[pair]], minlength=len(b))
    return (covered_a >= min_coverage * size[a]) & (covered_b >= min_coverage * size[b])


def _evidence_components(
    label: np.ndarray, evidence: sp.csr_matrix, identifiers: sp.csr_matrix | None, options
):
    """Groups held together by card/IP evidence alone, among accounts left outside rings.

    CPM keeps a group only while its mean pairwise weight exceeds ``γ``: a ring whose
    members each share a card or an exit with two or three others (a chain), or one exit
    with all (a star of light edges), never is. Among the accounts whose community is
    smaller than ``min_ring_size``, per-ring evidence edges of at least
    ``evidence_component_weight`` are kept; accounts with fewer than
    ``evidence_component_degree`` kept edges are dropped once (a customer of a ring's
    residential exit hangs on by one tie), then accounts whose kept evidence sums to
    less than ``evidence_component_strength`` are peeled off, repeatedly; connected
    components of what is left with at least ``min_ring_size`` accounts become
    communities. Returns the labels and the number of accounts grouped.
    """
    sizes = np.bincount(label[label >= 0], minlength=int(label.max(initial=0)) + 1)
    outside = np.flatnonzero((label < 0) | (sizes[np.maximum(label, 0)] < options.min_ring_size))
    if len(outside) < options.min_ring_size:
        return label, 0
    sub = evidence[outside][:, outside]
    sub = sub.multiply(sub >= options.evidence_component_weight).tocsr()
    sub.eliminate_zeros()
    # Pendants (one strong tie) go once, without cascading: a proxy customer hangs on
    # a ring member by one tie, while peeling a chain's ends again and again would eat it.
    alive = np.diff(sub.indptr) >= options.evidence_component_degree
    if identifiers is not None:
        # Ties through as many distinct rare cards/IPs: a customer of a ring's exit has
        # several ties through that one exit, a chain member one card on each side.
        held = identifiers[outside].tocsr()
        near = (sub.astype(bool).astype(np.float64) @ held).tocsr()
        through = held.multiply(near > 0).tocsr()
        alive &= np.diff(through.indptr) >= options.evidence_component_degree
    while True:
        strength = np.asarray(sub @ alive.astype(np.float64)).ravel()
        weak = alive & (strength < options.evidence_component_strength)
        if not weak.any():
            break
        alive &= ~weak
    keep = sp.diags(alive.astype(np.float64))
    _, comp = connected_components(keep @ sub @ keep, directed=False)
    big = np.bincount(comp[alive], minlength=int(comp.max(initial=-1)) + 1)
    chosen = alive & (big[comp] >= options.min_ring_size)
    if not chosen.any():
        return label, 0
    label = label.copy()
    new = np.unique(comp[chosen], return_inverse=True)[1]
    label[outside[chosen]] = label.max(initial=-1) + 1 + new
    return label, int(chosen.sum())


def _partitions(jobs: list, options: DetectionOptions) -> Callable[[], list[np.ndarray]]:
    """Leiden membership of each ``(n_nodes, edges, weights)`` component, in order, from
    the function returned: Leiden starts now in children and that function collects them.

    Every component gets a generator seeded with ``options.seed``, so its rings depend on
    the seed and the component alone.
    """
    if not jobs:
        return list
    # igraph is imported here, not at the top, so reading settings (every command) does not
    # pay for it; the parent imports it once before the children fork.
    import igraph  # noqa: F401

    if options.implementation == "leidenalg":
        memberships = [_leidenalg(size, edges, weights, options) for size, edges, weights in jobs]
        return lambda: memberships
    # Components in parallel children (graphinv.detect.workers): same results, less wall.
    return start_forked(_igraph_all, jobs, options, cost=_leiden_cost)


def _leiden_cost(job: tuple) -> float:
    size, edges, _ = job
    return size + len(edges)


def _leidenalg(size: int, edges: np.ndarray, weights: np.ndarray, options) -> np.ndarray:
    import leidenalg

    kind = {"CPM": leidenalg.CPMVertexPartition,
            "modularity": leidenalg.RBConfigurationVertexPartition}[options.objective]
    part = leidenalg.find_partition(
        _graph(size, edges),
        kind,
        weights=weights,
        resolution_parameter=options.resolution,
        n_iterations=options.n_iterations,
        seed=options.seed,
    )
    return np.asarray(part.membership, dtype=np.int64)


def _igraph_all(jobs: list, options: DetectionOptions) -> list[np.ndarray]:
    """igraph's Leiden on every component; runs in child processes (:func:`start_forked`)."""
    import igraph as ig

    out = []
    for size, edges, weights in jobs:
        # igraph draws from one process-wide generator; this process is a throw-away
        # child, so seeding it per component touches no caller's state.
        ig.set_random_number_generator(random.Random(options.seed))
        part = _graph(size, edges).community_leiden(
            objective_function=options.objective,
            weights=weights,
            resolution=options.resolution,
            n_iterations=options.n_iterations,
        )
        out.append(np.asarray(part.membership, dtype=np.int64))
    return out


def _graph(size: int, edges: np.ndarray) -> ig.Graph:
    """An undirected igraph graph of ``size`` nodes and the ``(n, 2)`` ``edges``, in order.

    Through ``add_edges`` and Python ints: igraph's constructor walks a numpy array one
    element at a time (4.5 s for the 5M edges of a million-account sweep's largest
    component, against 1 s this way); the graph is the same, edge for edge.
    """
    import igraph as ig

    graph = ig.Graph(n=size)
    graph.add_edges(edges.tolist())
    return graph


def _inactive(account_ids: np.ndarray, platform: Platform, options) -> np.ndarray:
    """Per projection row: is the account's status one of ``inactive_statuses``."""
    accounts = platform.accounts
    if "status" not in accounts.columns or not options.inactive_statuses:
        return np.zeros(len(account_ids), dtype=bool)
    gone = accounts.loc[accounts["status"].isin(list(options.inactive_statuses)), "account_id"]
    # A hash lookup: numpy's isin sorts object arrays of strings, seconds at 1M accounts.
    return pd.Index(account_ids).isin(gone.astype(str))


def _number_rings(label: np.ndarray, account_ids: np.ndarray, min_size: int) -> np.ndarray:
    """Ring number per account (``-1`` if none): largest ring first, then by first account."""
    ring_of = np.full(len(label), -1, dtype=np.int64)
    inside = np.flatnonzero(label >= 0)
    sizes = np.bincount(label[inside])
    big = sizes >= min_size
    keep = inside[big[label[inside]]]
    if len(keep) == 0:
        return ring_of
    # account_ids are sorted, so the smallest index is the smallest id.
    first = np.full(len(sizes), len(label))
    np.minimum.at(first, label[keep], keep)
    ranked = np.flatnonzero(big)[np.lexsort((first[big], -sizes[big]))]
    number = np.full(len(sizes), -1, dtype=np.int64)
    number[ranked] = np.arange(len(ranked))
    ring_of[keep] = number[label[keep]]
    return ring_of


def _ring_ids(number: np.ndarray) -> np.ndarray:
    return np.array([f"ring-{i + 1:05d}" for i in number], dtype=object)


def _campaign_ids(number: np.ndarray) -> np.ndarray:
    return np.array([f"campaign-{i + 1:04d}" for i in number], dtype=object)


def _ring_table(weights: sp.csr_matrix, ring_of: np.ndarray, comp: np.ndarray) -> pd.DataFrame:
    n_rings = int(ring_of.max(initial=-1)) + 1
    coo = sp.triu(weights, k=1).tocoo()
    ri, rj, w = ring_of[coo.row], ring_of[coo.col], coo.data
    same = (ri == rj) & (ri >= 0)
    internal = np.bincount(ri[same], weights=w[same], minlength=n_rings)
    n_internal = np.bincount(ri[same], minlength=n_rings)
    cut = ri != rj
    external = np.zeros(n_rings)
    external += np.bincount(ri[cut & (ri >= 0)], weights=w[cut & (ri >= 0)], minlength=n_rings)
    external += np.bincount(rj[cut & (rj >= 0)], weights=w[cut & (rj >= 0)], minlength=n_rings)
    members = np.flatnonzero(ring_of >= 0)
    size = np.bincount(ring_of[members], minlength=n_rings)
    component = np.zeros(n_rings, dtype=np.int64)
    component[ring_of[members]] = comp[members]
    pairs = np.maximum(size * (size - 1) / 2, 1)
    total = 2 * internal + external
    return pd.DataFrame(
        {
            "ring_id": _ring_ids(np.arange(n_rings)),
            "size": size,
            "component": component,
            "internal_weight": internal,
            "density": internal / pairs,
            "edge_density": n_internal / pairs,
            "conductance": np.divide(external, total, out=np.zeros(n_rings), where=total > 0),
        }
    )


def _infrastructure(platform: Platform, index: pd.Index, options: DetectionOptions):
    """Distinct ``(token, account)`` uses of identifiers that can tie rings into campaigns.

    Returns token codes and projection rows (``-1`` for accounts not in the projection).
    """
    links = platform.links
    # Codes and Arrow lookups: the link columns are never turned into Python strings.
    value = factorize(links["value"])[0]
    account, names = pd.factorize(links["account_id"])
    token = np.full(len(links), -1, dtype=np.int64)
    of_kind = is_in(links["kind"], options.campaign_kinds)
    token[of_kind] = value[of_kind]
    ips = platform.ips
    if options.campaign_proxy_asn and ips is not None and "asn" in ips:
        flag = np.zeros(len(ips), dtype=bool)
        for column in ("is_proxy", "is_datacenter"):
            if column in ips:
                flag |= ips[column].fillna(False).astype(bool).to_numpy()
        proxied = ips.loc[flag & ips["asn"].notna().to_numpy(), ["ip", "asn"]]
        asn_of = pd.Series(proxied["asn"].to_numpy(), index=proxied["ip"].astype(str))
        asn_of = asn_of[~asn_of.index.duplicated()]
        is_ip = is_in(links["kind"], ["ip"])
        where = positions(links["value"][is_ip], asn_of.index)
        found = where >= 0
        hit = np.flatnonzero(is_ip)[found]
        # ASN tokens live above every identifier code.
        token[hit] = value.max(initial=0) + 1 + pd.factorize(asn_of.to_numpy()[where[found]])[0]
    used = token >= 0
    token = pd.factorize(token[used])[0]
    # Accounts outside the projection still count towards how widely a token is used.
    pairs, first = np.unique(
        token.astype(np.int64) * len(names) + account[used], return_index=True
    )
    rows = positions(names, index)
    return pairs // len(names), rows[account[used][first]]


def _campaigns(ring_of, n_rings, infrastructure, options):
    """Campaign number per ring, and identifiers shared by two or more rings per campaign,
    from the :func:`_infrastructure` tokens."""
    if n_rings == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    token, account = infrastructure
    n_tokens = int(token.max(initial=-1)) + 1
    degree = np.bincount(token, minlength=n_tokens)
    in_ring = (account >= 0) & (ring_of[account] >= 0)
    counts = sp.csr_matrix(
        (np.ones(int(in_ring.sum())), (ring_of[account[in_ring]], token[in_ring])),
        shape=(n_rings, n_tokens),
    )
    counts.sum_duplicates()
    size = np.bincount(ring_of[ring_of >= 0], minlength=n_rings)
    coo = counts.tocoo()
    uses = coo.data >= np.maximum(2, options.campaign_min_share * size[coo.row])
    held = np.bincount(coo.col[uses], weights=coo.data[uses], minlength=n_tokens)
    infra = held >= options.campaign_min_concentration * np.maximum(degree, 1)
    keep = uses & infra[coo.col]
    usage = sp.csr_matrix(
        (np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=(n_rings, n_tokens)
    )
    _, label = connected_components(usage @ usage.T, directed=False)
    # Number campaigns by total size, largest first, then by their first ring.
    total = np.bincount(label, weights=size)
    first = np.full(len(total), n_rings)
    np.minimum.at(first, label, np.arange(n_rings))
    ranked = np.lexsort((first, -total))
    number = np.empty(len(total), dtype=np.int64)
    number[ranked] = np.arange(len(total))
    campaign = number[label]
    rings_per_token = np.asarray(usage.sum(axis=0)).ravel()
    token_campaign = np.full(n_tokens, -1)
    token_campaign[coo.col[keep]] = campaign[coo.row[keep]]
    multi = rings_per_token >= 2
    shared = np.bincount(token_campaign[multi], minlength=len(total))
    return campaign, shared
