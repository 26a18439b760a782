"""A case on one ring, for analysts in a notebook and for the enforcement hand-off.

:class:`Case` reads a ring of a sweep from either store and lays out the evidence as
pandas frames (members, shared identifiers, activity timeline, score breakdown), draws it
with matplotlib, and exports a self-contained HTML case file and a CSV of the accounts to
action, each with its reason.

The score breakdown (per feature: value, platform baseline, suspicion, weight,
contribution) is the one the sweep stored with the ring, and the evidence comes from the
ring's neighbourhood (:meth:`~graphinv.stores.base.Store.read_neighbourhood`: its
members' rows and every link on an identifier they use), so opening a case never reads
the whole platform. A sweep written by an older graphinv stored no breakdown: then the
case scores the ring again with :func:`graphinv.score.scoring.score_rings` over the whole
platform, as it always did.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from graphinv.context import Context
>>> from graphinv.synth import generate, write_platform
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = write_platform(generate(preset="small", seed=5, n_accounts=1500), Path(tmp) / "in")
...     with Context(db_path=Path(tmp) / "g.duckdb", use_env=False, progress=False) as ctx:
...         _ = ctx.load(Path(tmp) / "in")
...         _ = ctx.sweep()
...         case = Case(ctx.rings()["ring_id"].iloc[0], context=ctx)
...         html = case.to_html(Path(tmp) / "case.html")
...         csv = case.to_csv(Path(tmp) / "accounts.csv")
>>> int(case.ring["rank"]), len(case.members) == int(case.ring["size"])
(1, True)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from graphinv.config import Settings
from graphinv.errors import MissingExtra, RingNotFound
from graphinv.output import write_csv, write_text
from graphinv.schema import Platform
from graphinv.score.scoring import score_rings
from graphinv.stores.base import Store

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from graphinv.context import Context

__all__ = ["Case"]

TEMPLATE_PATH = Path(__file__).parent / "data" / "case.html"
# Colours match the Neo4j Browser style (graphinv/data/graphinv.grass).
KIND_COLOURS = {
    "account": "#4C8EDA",
    "payment_method": "#FFC454",
    "ip": "#57C7E3",
    "prompt_fingerprint": "#6DCE9E",
}
OTHER_KIND_COLOUR = "#DA7FC2"
GROUP_COLOURS = {"infrastructure": "#FFC454", "traffic": "#57C7E3", "content": "#6DCE9E"}
# Above this many members the graph draws accounts grouped by the identifiers they share.
AGGREGATE_ABOVE = 50
KIND_ORDER = {"payment_method": 0, "ip": 1, "prompt_fingerprint": 2}
# An identifier counts as a reason for enforcement when at least this share of all its
# users are ring members: an SDK or VPN exit shared with thousands of others is no reason.
MIN_CONCENTRATION = 0.5
# The case file's plots: template name -> Case method; resolution of their PNGs.
_PLOTS = {
    "contributions": "plot_contributions",
    "graph": "plot_graph",
    "activity": "plot_activity",
    "by_date": "plot_activity_by_date",
}
PNG_DPI = 110
KIND_NOUNS = {"payment_method": "card", "ip": "IP", "prompt_fingerprint": "prompt template"}


class Case:
    """The evidence on one ring of a sweep.

    Parameters
    ----------
    ring_id
        The ring (ids are stable across sweeps).
    context
        A :class:`graphinv.context.Context`; its store and scoring settings are used.
    store
        A store to read from instead of a context (see :meth:`open`).
    sweep_id
        The sweep to read the ring from; the latest by default.
    settings
        Scoring settings for the breakdown (the context's, else defaults).

    Attributes
    ----------
    ring : Series
        ``ring_id, sweep_id, rank, score, size, campaign_id, explanation``.
    members : DataFrame
        One row per account: sign-up details, identifiers used, requests, activity span.
    identifiers : DataFrame
        Every identifier members use: ``kind, value, members, share, platform_accounts,
        outside_ring, concentration, count, first_seen, last_seen``; most telling first
        (members weighted by the share of the identifier's users inside the ring).
    timeline : DataFrame
        Members' hourly usage: ``hour, account_id, model, requests, input_tokens,
        output_tokens``.
    breakdown : DataFrame
        Per feature: ``feature, group, value, baseline, suspicion, weight, contribution,
        text``; ``contribution`` sums to the score.
    """

    def __init__(
        self,
        ring_id: str,
        *,
        context: Context | None = None,
        store: Store | None = None,
        sweep_id: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if (context is None) == (store is None):
            raise TypeError("give exactly one of context= or store=")
        store = context.store if context is not None else store
        assert store is not None  # exactly one of context= or store= (checked above)
        settings = settings or (context.settings if context is not None else None) or Settings()
        rings = store.read_rings(sweep_id=sweep_id)
        if rings.empty and sweep_id is None:
            raise RingNotFound("no sweep in the store yet: run `graphinv sweep` first")
        found = rings.loc[rings["ring_id"] == str(ring_id)]
        if found.empty:
            where = f"sweep {sweep_id}" if sweep_id else "the latest sweep"
            raise RingNotFound(f"ring {ring_id!r} is not in {where}")
        self.ring: pd.Series = found.iloc[0][
            ["ring_id", "sweep_id", "rank", "score", "size", "campaign_id", "explanation",
             "flagged", "status", "predecessors", "lineage_evidence"]
        ]
        self._store = store
        self._settings = settings
        self._rings = rings
        member_ids = store.read_ring_members(str(ring_id), sweep_id=self.ring["sweep_id"])
        ring_members = pd.DataFrame(
            {"ring_id": str(ring_id), "account_id": member_ids["account_id"]}
        )
        stored = store.read_breakdown(str(ring_id), sweep_id=str(self.ring["sweep_id"]))
        if stored is None:
            # A sweep written before breakdowns were stored: score again, over everything.
            platform = store.read_platform()
            scores = score_rings(ring_members, platform, options=settings.scoring)
            stored = (
                scores.contributions.drop(columns="ring_id")
                .sort_values("contribution", ascending=False, kind="stable")
                .reset_index(drop=True)
            )
        else:
            platform = store.read_neighbourhood(ring_members["account_id"].tolist())
        self.breakdown = stored
        self.identifiers = _identifiers(ring_members, platform)
        self.timeline = _timeline(ring_members, platform)
        self.members = _members(ring_members, platform, self.timeline)
        links = platform.links
        self._links = links.loc[links["account_id"].isin(ring_members["account_id"])]
        self.cards = _cards(self.identifiers, self._links, platform)
        self.templates = _templates(self.identifiers, platform)
        self.collateral = _collateral(self.evidence_identifiers, links, ring_members)
        self.siblings = _siblings(self.ring, rings, store, links)
        self.totals = _totals(self.timeline, self.members, prices=settings.case.prices)
        self._banned = int((self.members["status"] == "banned").sum()) if (
            "status" in self.members) else 0
        # Everything else read from the store now, so the case outlives an open store.
        self._sweeps = store.read_sweeps()
        self._history = self._read_history()
        self._read_review()

    def _read_history(self) -> list[tuple[Any, str]]:
        """(time, event) for each sweep that found a ring under this id."""
        rows = []
        for sweep_id, at in self._sweeps[["sweep_id", "at"]].itertuples(index=False):
            rings = (self._rings if sweep_id == self.ring["sweep_id"]
                     else self._store.read_rings(sweep_id=sweep_id))
            here = rings.loc[rings["ring_id"] == self.ring["ring_id"]]
            if len(here):
                found = here.iloc[0]
                rows.append((at, f"sweep {sweep_id} finds it: {found['size']} "
                                       f"accounts, score {found['score']:.2f}, "
                                       f"{found['status'] or 'new'}"))
        return rows

    def _read_review(self) -> None:
        from graphinv.investigate.review import review_queue, ring_notes

        queue = review_queue(self._store, sweep_id=str(self.ring["sweep_id"]),
                             include_silent=True).set_index("ring_id")
        row = queue.loc[str(self.ring["ring_id"])]
        self._decision = {k: row[k] for k in ("priority", "disposition", "decided_on",
                                              "assignee", "reason", "last_note")}
        self._notes = ring_notes(self._store, str(self.ring["ring_id"]))

    @classmethod
    def open(
        cls,
        ring_id: str,
        *,
        store: Store,
        sweep_id: str | None = None,
        settings: Settings | None = None,
    ) -> Case:
        """A case read straight from a store (embedded or Neo4j).

        Examples
        --------
        With a running Neo4j server::

            from graphinv.stores import open_store
            store = open_store(neo4j_uri="bolt://127.0.0.1:7687")
            Case.open("R-78380aa0741d", store=store).breakdown.head(3)
        """
        return cls(ring_id, store=store, sweep_id=sweep_id, settings=settings)

    def __repr__(self) -> str:
        ring = self.ring
        return (
            f"Case(ring {ring['ring_id']}, rank {ring['rank']}, score {ring['score']:.2f}, "
            f"{len(self.members)} accounts, sweep {ring['sweep_id']})"
        )

    # -- evidence ------------------------------------------------------------------------

    @property
    def shared_identifiers(self) -> pd.DataFrame:
        """Identifiers at least two members use: what ties the ring together."""
        return self.identifiers.loc[self.identifiers["members"] >= 2].reset_index(drop=True)

    @property
    def evidence_identifiers(self) -> pd.DataFrame:
        """Shared identifiers that are evidence: mostly (≥ 50 %) used by ring members.

        Cards first, then IPs, templates and other kinds; a hub (an SDK user agent on
        thousands of accounts, a VPN exit) is not evidence and is left out.
        """
        shared = self.shared_identifiers
        telling = shared.loc[shared["concentration"] >= MIN_CONCENTRATION]
        order = telling["kind"].map(KIND_ORDER).fillna(len(KIND_ORDER))
        return telling.assign(_k=order).sort_values(
            ["_k", "members", "value"], ascending=[True, False, True], kind="stable"
        ).drop(columns="_k").reset_index(drop=True)

    @property
    def hubs(self) -> pd.DataFrame:
        """Shared identifiers mostly used outside the ring: not evidence (see above)."""
        shared = self.shared_identifiers
        return shared.loc[shared["concentration"] < MIN_CONCENTRATION].sort_values(
            "platform_accounts", ascending=False).reset_index(drop=True)

    @property
    def decision(self) -> dict[str, Any]:
        """The ring's review state (own or inherited along its lineage; see ``review``):
        ``priority, disposition, decided_on, assignee, reason, last_note``."""
        return dict(self._decision)

    @property
    def notes(self) -> pd.DataFrame:
        """Every decision event on the ring id: who, when, status, assignee, note."""
        return self._notes.copy()

    def decide(
        self,
        *,
        status: str | None = None,
        assignee: str | None = None,
        note: str | None = None,
        by: str | None = None,
    ) -> dict[str, Any]:
        """Record a decision on this ring (see :func:`graphinv.investigate.review.decide`)."""
        from graphinv.investigate.review import decide

        event = decide(self._store, str(self.ring["ring_id"]), status=status,
                       assignee=assignee, note=note, by=by, sweep_id=str(self.ring["sweep_id"]))
        self._read_review()
        return event

    @property
    def events(self) -> pd.DataFrame:
        """A dated timeline: sign-ups, first and last activity, each sweep that found the
        ring (with its lineage status), and every decision (``at, event``)."""
        rows = []
        created = self.members["created_at"].dropna()
        if len(created):
            rows.append((created.min(), f"first member signs up ({len(created)} sign-ups "
                                        f"until {created.max():%Y-%m-%d})"))
            rows.append((created.max(), "last member signs up"))
        if len(self.timeline):
            hours = self.timeline["hour"]
            rows.append((hours.min(), "first recorded request"))
            rows.append((hours.max(), "last recorded request"))
        rows.extend(self._history)
        notes = self.notes[["at", "by", "status", "assignee", "note"]]
        for at, by, status, assignee, text in notes.itertuples(index=False):
            said = ", ".join(x for x in (status, assignee and f"assigned to {assignee}", text)
                             if x)
            rows.append((at, f"{by}: {said}"))
        if self._banned:
            rows.append((pd.NaT, f"{self._banned} member(s) have status banned"))
        frame = pd.DataFrame(rows, columns=["at", "event"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame.sort_values("at", kind="stable", na_position="last").reset_index(drop=True)

    @property
    def provenance(self) -> dict[str, Any]:
        """What a third party needs to check the case: sweep, settings, code, commands."""
        sweeps = self._sweeps.set_index("sweep_id")
        sweep_id = str(self.ring["sweep_id"])
        params: dict[str, Any] = (
            sweeps["params"][sweep_id] if sweep_id in sweeps.index else {}
        )
        where = getattr(self._store, "path", None)
        store = f"--db {where}" if where is not None else "--neo4j BOLT_URI"
        ring_id = self.ring["ring_id"]
        return {
            "sweep_id": sweep_id,
            "sweep_at": str(sweeps.loc[sweep_id, "at"]) if sweep_id in sweeps.index else None,
            "store": self._store.backend,
            "code_version": params.get("code_version"),
            "settings_source": params.get("settings_source"),
            "data_window": params.get("data_window"),
            "settings": params.get("settings", {}),
            "input_files": self._input_files(
                sweeps.loc[sweep_id, "at"] if sweep_id in sweeps.index else None
            ),
            "commands": [
                f"graphinv {store} load INPUT_FOLDER",
                f"graphinv {store} sweep --json sweep.json",
                f"graphinv {store} ring {ring_id} --sweep {sweep_id}",
                f"graphinv {store} case {ring_id} --sweep {sweep_id} --html case.html "
                "--csv accounts.csv",
            ],
        }

    def _input_files(self, sweep_at: Any) -> str:
        """The loads the sweep ran on, each with its source and every file's SHA-256."""
        cutoff = pd.Timestamp(sweep_at) if sweep_at is not None else None
        if cutoff is not None and cutoff.tzinfo is None:
            cutoff = cutoff.tz_localize("UTC")
        loads = [
            record
            for record in self._store.load_history()
            if cutoff is None or (record.finished is not None and record.finished <= cutoff)
        ]
        if not loads:
            return (
                "not recorded (the store was loaded before graphinv kept file hashes); hash "
                "the input folder (sha256sum) when you hand this file over"
            )
        return "\n".join(
            f"{record.load_id} from {record.source}: "
            + "; ".join(f"{file.name} sha256 {file.sha256} ({file.bytes:,} bytes)"
                        for file in record.files)
            for record in loads
        )

    @property
    def enforcement(self) -> pd.DataFrame:
        """One row per account to action: ``account_id, ring_id, sweep_id, ring_rank,
        ring_score, reason`` (the ring's top reasons and what the account shares)."""
        return self._enforcement.copy()

    @cached_property
    def _enforcement(self) -> pd.DataFrame:
        # Built once: the HTML and the CSV both carry it.
        ring = self.ring
        top = self.breakdown.loc[self.breakdown["contribution"] > 0, "text"].head(2)
        ring_reason = (
            f"member of ring {ring['ring_id']} (rank {ring['rank']}, score {ring['score']:.2f}, "
            f"{ring['size']} accounts): " + "; ".join(top)
        )
        telling = self.shared_identifiers.loc[
            self.shared_identifiers["concentration"] >= MIN_CONCENTRATION,
            ["kind", "value", "members"],
        ]
        # shared_identifiers is already most telling first; merge keeps that order per account.
        shared = telling.merge(self._links, on=["kind", "value"])
        best = shared.groupby(["account_id", "kind"], sort=False).head(1)
        said = ("shares " + best["kind"].map(KIND_NOUNS).fillna(best["kind"]).astype(str)
                + " " + best["value"].astype(str) + " with "
                + (best["members"] - 1).astype(str) + " other member(s)")
        ties = said.groupby(best["account_id"], sort=False).agg("; ".join)
        out = pd.DataFrame({"account_id": self.members["account_id"]})
        out["ring_id"] = ring["ring_id"]
        out["sweep_id"] = ring["sweep_id"]
        out["ring_rank"] = ring["rank"]
        out["ring_score"] = round(float(ring["score"]), 4)
        own = out["account_id"].map(ties).fillna("")
        out["reason"] = [ring_reason + (f" | {t}" if t else "") for t in own]
        return out

    # -- plots ---------------------------------------------------------------------------

    def plot_activity(self, *, ax: plt.Axes | None = None, top: int = 40) -> plt.Figure:
        """Heat map of each member's share of requests by hour of day (UTC).

        A ring run by one operator shows the same pattern on every row; a 24/7 pipeline
        fills every column.
        """
        plt = _pyplot()
        ax = ax or plt.subplots(figsize=(10, max(3.0, 0.18 * min(top, len(self.members)) + 1.5)))[1]
        usage = self.timeline
        if usage.empty:
            ax.text(0.5, 0.5, "no usage recorded", ha="center", va="center")
            return _figure(ax)
        by_hour = usage.assign(hod=usage["hour"].dt.hour).pivot_table(
            index="account_id", columns="hod", values="requests", aggfunc="sum", fill_value=0
        ).reindex(columns=range(24), fill_value=0)
        busiest = by_hour.sum(axis=1).sort_values(ascending=False).index[:top]
        share = by_hour.loc[busiest].div(by_hour.loc[busiest].sum(axis=1), axis=0)
        image = ax.imshow(share.to_numpy(), aspect="auto", cmap="magma_r", vmin=0)
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlabel("hour of day (UTC)")
        ax.set_yticks(range(len(share)))
        ax.set_yticklabels(share.index, fontsize=6)
        ax.set_title(f"Ring {self.ring['ring_id']}: share of each member's requests by hour "
                     f"({len(share)} busiest of {len(self.members)} members)")
        _figure(ax).colorbar(image, ax=ax, label="share of the member's requests")
        _figure(ax).tight_layout()
        return _figure(ax)

    def plot_activity_by_date(self, *, ax: plt.Axes | None = None) -> plt.Figure:
        """Requests per day (UTC) of the ring, and how many members were active each day."""
        plt = _pyplot()
        ax = ax or plt.subplots(figsize=(10, 3.2))[1]
        usage = self.timeline
        if usage.empty:
            ax.text(0.5, 0.5, "no usage recorded", ha="center", va="center")
            return _figure(ax)
        days = usage.assign(day=usage["hour"].dt.floor("D")).groupby("day").agg(
            requests=("requests", "sum"), active=("account_id", "nunique"))
        ax.bar(days.index, days["requests"], width=0.8, color=KIND_COLOURS["account"])
        ax.set_ylabel("requests per day")
        twin = ax.twinx()
        twin.plot(days.index, days["active"], color="#E0413A", marker=".", linewidth=1)
        twin.set_ylabel("members active", color="#E0413A")
        ax.set_title(f"Ring {self.ring['ring_id']}: activity by date (UTC)")
        _figure(ax).autofmt_xdate()
        _figure(ax).tight_layout()
        return _figure(ax)

    def plot_graph(self, *, ax: plt.Axes | None = None, max_identifiers: int = 40) -> plt.Figure:
        """Members and the evidence identifiers they share (cards, IPs, templates first).

        Above ``AGGREGATE_ABOVE`` members, accounts that share exactly the same drawn
        identifiers are one node labelled with their number, so a 500-account ring stays
        readable.
        """
        plt = _pyplot()
        ax = ax or plt.subplots(figsize=(10, 8))[1]
        shared = self.evidence_identifiers.head(max_identifiers)
        if len(self.members) > AGGREGATE_ABOVE:
            return self._plot_aggregated(ax, shared)
        # Only small rings get a force layout; importing networkx costs a few tenths of a
        # second, which a large ring's case need not pay.
        import networkx as nx

        edges = self._links.merge(shared[["kind", "value"]], on=["kind", "value"])
        graph = nx.Graph()
        for account in self.members["account_id"]:
            graph.add_node(("account", account), kind="account")
        for kind, value in shared[["kind", "value"]].itertuples(index=False):
            graph.add_node((kind, value), kind=kind)
        graph.add_edges_from(
            (("account", a), (k, v))
            for a, k, v in edges[["account_id", "kind", "value"]].itertuples(index=False)
        )
        position = nx.spring_layout(graph, seed=0, k=1.5 / np.sqrt(max(graph.number_of_nodes(), 1)))
        colours = [KIND_COLOURS.get(graph.nodes[n]["kind"], OTHER_KIND_COLOUR) for n in graph]
        sizes = [18 if graph.nodes[n]["kind"] == "account" else 30 + 12 * graph.degree(n)
                 for n in graph]
        nx.draw_networkx_edges(graph, position, ax=ax, alpha=0.25, width=0.6)
        nx.draw_networkx_nodes(graph, position, ax=ax, node_color=colours, node_size=sizes,
                               edgecolors="#333333", linewidths=0.3)
        labels = {n: n[1] for n in graph if n[0] != "account" and graph.degree(n) >= 3}
        nx.draw_networkx_labels(graph, position, labels=labels, ax=ax, font_size=6)
        for kind, colour in [*KIND_COLOURS.items(), ("other", OTHER_KIND_COLOUR)]:
            ax.scatter([], [], c=colour, label=KIND_NOUNS.get(kind, kind), edgecolors="#333333")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"Ring {self.ring['ring_id']}: {len(self.members)} accounts and the "
                     f"{len(shared)} most shared identifiers")
        ax.set_axis_off()
        _figure(ax).tight_layout()
        return _figure(ax)

    def _plot_aggregated(self, ax: plt.Axes, shared: pd.DataFrame) -> plt.Figure:
        """Identifiers in a column per kind, account groups (same identifiers) beside them."""
        from matplotlib.collections import LineCollection

        edges = self._links.merge(shared[["kind", "value"]], on=["kind", "value"])
        keyed = edges.assign(key=edges["kind"] + "\0" + edges["value"]).groupby("account_id")
        # pandas-stubs wants scalar results from agg; a tuple per group is fine at run time.
        signature = keyed["key"].agg(lambda keys: tuple(sorted(keys)))  # type: ignore[type-var]
        groups = signature.reset_index().groupby("key")["account_id"].size()
        groups = groups.sort_values(ascending=False)
        loose = len(self.members) - int(groups.sum())
        kinds = sorted(shared["kind"].unique(), key=lambda k: KIND_ORDER.get(k, 9))
        position: dict[tuple[str, str], tuple[float, float]] = {}
        for column, kind in enumerate(kinds):
            values = shared.loc[shared["kind"] == kind, "value"].tolist()
            for row, value in enumerate(values):
                position[(kind, value)] = (column * 2.0, -row * 1.0 * 20 / max(len(values), 1))
        xs = [x for x, _ in position.values()] or [0.0]
        right = max(xs) + 3.0
        # One collection per kind of mark, not an artist per line or dot: drawing cost
        # grows with the number of artists far more than with the number of points.
        segments = []
        group_y = [-i * 20 / max(len(groups), 1) for i in range(len(groups))]
        for (keys, count), y in zip(groups.items(), group_y, strict=True):
            # The group keys are the tuples of "kind\0value" built above.
            for key in cast(tuple[str, ...], keys):
                kind, value = key.split("\0", 1)
                segments.append([position[(kind, value)], (right, y)])
            ax.text(right + 0.2, y, f"{count} account{'s' if count > 1 else ''}",
                    va="center", fontsize=6)
        ax.add_collection(LineCollection(segments, colors="#999999", alpha=0.35,
                                         linewidths=0.6, zorder=2))
        ax.scatter([right] * len(groups), group_y, s=30 + 8 * groups.to_numpy(),
                   c=KIND_COLOURS["account"], edgecolors="#333333", linewidths=0.3, zorder=3)
        members = shared.set_index(["kind", "value"])["members"]
        for (kind, value), (x, y) in position.items():
            ax.text(x - 0.15, y, f"{value} ({members[(kind, value)]})", ha="right",
                    va="center", fontsize=5.5)
        if position:
            ax.scatter([x for x, _ in position.values()], [y for _, y in position.values()],
                       s=[40 + 6 * members[key] for key in position],
                       c=[KIND_COLOURS.get(kind, OTHER_KIND_COLOUR) for kind, _ in position],
                       edgecolors="#333333", linewidths=0.3, zorder=3)
        for kind, colour in [*KIND_COLOURS.items(), ("other", OTHER_KIND_COLOUR)]:
            ax.scatter([], [], c=colour, label=KIND_NOUNS.get(kind, kind), edgecolors="#333333")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"Ring {self.ring['ring_id']}: {len(self.members)} accounts in "
                     f"{len(groups)} groups sharing the same identifiers"
                     + (f" ({loose} share none drawn)" if loose else "")
                     + f"; {len(shared)} evidence identifiers (members using each)")
        ax.set_axis_off()
        _figure(ax).tight_layout()
        return _figure(ax)

    def plot_contributions(self, *, ax: plt.Axes | None = None) -> plt.Figure:
        """Each feature's contribution to the score, labelled with ring value vs baseline."""
        plt = _pyplot()
        ax = ax or plt.subplots(figsize=(10, 6))[1]
        rows = self.breakdown.iloc[::-1]
        colours = [GROUP_COLOURS.get(g, "#A5ABB6") for g in rows["group"]]
        ax.barh(rows["feature"], rows["contribution"], color=colours, edgecolor="#333333",
                linewidth=0.4)
        for y, (value, base, contribution) in enumerate(
            rows[["value", "baseline", "contribution"]].itertuples(index=False)
        ):
            ax.text(contribution, y, f"  ring {_number(value)} · platform {_number(base)}",
                    va="center", fontsize=7)
        for group, colour in GROUP_COLOURS.items():
            ax.barh([], [], color=colour, label=group)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xlim(0, max(float(rows["contribution"].max()), 0.01) * 1.8)
        ax.set_xlabel("contribution to the score (all bars add up to the score)")
        ax.set_title(f"Ring {self.ring['ring_id']}: score {self.ring['score']:.2f}, "
                     "feature by feature against the platform baseline")
        _figure(ax).tight_layout()
        return _figure(ax)

    def _pngs(self, names: list[str]) -> list[str]:
        """The named plots (keys of ``_PLOTS``) as base64 PNG, for the HTML case file."""
        plt = _pyplot()
        # Drawn at the dpi they are saved at: tight_layout and savefig then share one
        # renderer, and its cache of text extents, instead of laying out every label twice.
        with plt.rc_context({"figure.dpi": PNG_DPI}):
            return [_png(getattr(self, _PLOTS[name])()) for name in names]

    # -- export --------------------------------------------------------------------------

    def to_html(self, path: Path) -> Path:
        """Write one self-contained, print-safe HTML case file (plots embedded as PNG).

        Every table prints in full (no scroll boxes; header rows repeat on each page), so a
        PDF of the page carries every member and every piece of evidence.
        """
        from graphinv.detect.workers import Forked, default_processes

        ring = self.ring
        _pyplot()  # imported once, before any fork
        # Drawing is most of a case file's CPU: with a second core, a forked child draws
        # the two busiest plots while this process draws the others and lays out the page.
        images: dict[str, str] = {}
        aside = ["graph", "activity"] if default_processes() > 1 else []
        pending = Forked(self._pngs, aside) if aside else None
        here = [name for name in _PLOTS if name not in aside]
        images.update(zip(here, self._pngs(here), strict=True))
        reasons = self.breakdown.loc[self.breakdown["contribution"] > 0, "text"].head(6)
        decision = self.decision
        provenance = self.provenance
        totals = self.totals
        hubs = self.hubs
        hub_text = (
            f"{len(hubs)} shared identifier(s) are hubs, mostly used outside the ring, and are "
            "not counted as evidence: " + "; ".join(
                f"{KIND_NOUNS.get(k, k)} {v} ({n:,} accounts)"
                for k, v, n in hubs[["kind", "value", "platform_accounts"]].head(5)
                .itertuples(index=False))
            if len(hubs) else "No hub identifiers among the shared ones.")
        predecessors = ", ".join(ring["predecessors"]) or "none"
        lineage = (f"{ring['status'] or 'new'}; predecessors: {predecessors}"
                   + (f"; {ring['lineage_evidence']}" if ring["lineage_evidence"] else ""))
        totals_rows = pd.DataFrame(
            [(k.replace("_", " "), _cell(v)) for k, v in totals.items()],
            columns=["total", "value"])
        settings = provenance["settings"]
        provenance_rows = pd.DataFrame(
            [("sweep", f"{provenance['sweep_id']} at {provenance['sweep_at']}"),
             ("store", provenance["store"]),
             ("code version", f"graphinv {provenance['code_version']}"),
             ("settings", f"from {provenance['settings_source']}; scoring threshold "
                          f"{settings.get('scoring', {}).get('threshold')}, detection "
                          f"resolution {settings.get('detection', {}).get('resolution')}, "
                          f"seed {settings.get('detection', {}).get('seed')}"),
             ("data window", " to ".join(map(str, provenance["data_window"] or []))),
             ("input files", provenance["input_files"])],
            columns=["item", "value"])
        if pending is not None:
            images.update(zip(aside, pending.result(), strict=True))
        page = Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(
            title=html.escape(f"Case file: ring {ring['ring_id']}"),
            ring_id=html.escape(str(ring["ring_id"])),
            rank=html.escape(str(ring["rank"])),
            score=f"{ring['score']:.2f}",
            size=html.escape(str(ring["size"])),
            campaign=html.escape(str(ring["campaign_id"])),
            sweep=html.escape(str(ring["sweep_id"])),
            disposition=html.escape(str(decision["disposition"])),
            decision=html.escape(f"{decision['reason']}"
                                 + (f"; assigned to {decision['assignee']}"
                                    if decision["assignee"] else "")
                                 + (f"; last note {decision['last_note']}"
                                    if decision["last_note"] else "")),
            lineage=html.escape(lineage),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            reasons="\n".join(f"<li>{html.escape(r)}</li>" for r in reasons),
            breakdown=_table(self.breakdown.drop(columns="text").round(4)),
            totals=_table(totals_rows),
            cards=_table(self.cards),
            evidence=_table(self.evidence_identifiers),
            hubs=html.escape(hub_text),
            collateral=_table(self.collateral),
            templates=_table(self.templates.loc[self.templates["members"] >= 2]),
            template_categories=_table(_categories(self.templates)),
            siblings=_table(self.siblings),
            events=_table(self.events.assign(at=self.events["at"].map(_cell))),
            members=_table(self.members),
            enforcement=_table(self.enforcement[["account_id", "reason"]]),
            provenance=_table(provenance_rows),
            commands=html.escape("\n".join(provenance["commands"])),
            **{f"img_{name}": data for name, data in images.items()},
        )
        return write_text(Path(path), page)

    def to_csv(self, path: Path) -> Path:
        """Write the accounts to action with the reason for each (see :attr:`enforcement`).

        Owner-only, never through a symbolic link, formula-like cells neutralised
        (:func:`graphinv.output.write_csv`).
        """
        return write_csv(self.enforcement, Path(path))


# -- frames ------------------------------------------------------------------------------


def _identifiers(members: pd.DataFrame, platform: Platform) -> pd.DataFrame:
    links = platform.links
    mine = links.loc[links["account_id"].isin(members["account_id"])]
    grouped = mine.groupby(["kind", "value"], as_index=False).agg(
        members=("account_id", "nunique"),
        count=("count", "sum"),
        first_seen=("first_seen", "min"),
        last_seen=("last_seen", "max"),
    )
    used = links.merge(grouped[["kind", "value"]], on=["kind", "value"])
    everyone = used.groupby(["kind", "value"])["account_id"].nunique().rename("platform_accounts")
    grouped = grouped.join(everyone, on=["kind", "value"])
    grouped["share"] = (grouped["members"] / len(members)).round(3)
    grouped["outside_ring"] = grouped["platform_accounts"] - grouped["members"]
    grouped["concentration"] = (grouped["members"] / grouped["platform_accounts"]).round(3)
    # A card shared by 3 members and nobody else says more than an SDK string that 100
    # members share with 5,000 other accounts: rank by members weighted by concentration.
    order = (grouped["members"] * grouped["concentration"]).rename("_evidence")
    columns = ["kind", "value", "members", "share", "platform_accounts", "outside_ring",
               "concentration", "count", "first_seen", "last_seen"]
    return grouped.join(order).sort_values(
        ["_evidence", "kind", "value"], ascending=[False, True, True]
    )[columns].reset_index(drop=True)


def _timeline(members: pd.DataFrame, platform: Platform) -> pd.DataFrame:
    usage = platform.usage
    mine = usage.loc[usage["account_id"].isin(members["account_id"])]
    columns = ["hour", "account_id", "model", "requests", "input_tokens", "output_tokens"]
    return mine[columns].sort_values(["hour", "account_id", "model"]).reset_index(drop=True)


def _members(members: pd.DataFrame, platform: Platform, timeline: pd.DataFrame) -> pd.DataFrame:
    accounts = platform.accounts.set_index("account_id").reindex(members["account_id"])
    links = platform.links.loc[platform.links["account_id"].isin(members["account_id"])]
    used = links.pivot_table(index="account_id", columns="kind", values="value",
                             aggfunc="nunique", fill_value=0)
    used = used.rename(columns=lambda k: f"{KIND_NOUNS.get(k, k)}s".replace(" ", "_"))
    activity = timeline.groupby("account_id").agg(
        requests=("requests", "sum"),
        output_tokens=("output_tokens", "sum"),
        first_active=("hour", "min"),
        last_active=("hour", "max"),
        active_hours=("hour", "nunique"),
    )
    out = accounts.join(used).join(activity)
    counts = [c for c in out.columns if c in used.columns or c in ("requests", "output_tokens",
                                                                     "active_hours")]
    out[counts] = out[counts].fillna(0).astype("int64")
    return out.reset_index().rename(columns={"index": "account_id"})


def _cards(identifiers: pd.DataFrame, links: pd.DataFrame, platform: Platform) -> pd.DataFrame:
    """The ring's payment methods with type, BIN, issuer country and prepaid flag."""
    cards = identifiers.loc[identifiers["kind"] == "payment_method",
                            ["value", "members", "platform_accounts", "outside_ring",
                             "first_seen", "last_seen"]].rename(columns={"value": "card"})
    described = platform.payment_methods
    if described is not None and len(cards):
        cards = cards.merge(described.rename(columns={"fingerprint": "card"}), on="card",
                            how="left")
    columns = ["card", "type", "bin", "issuer_country", "prepaid", "members",
               "outside_ring", "first_seen", "last_seen"]
    return cards.reindex(columns=columns).sort_values(
        ["members", "card"], ascending=[False, True]).reset_index(drop=True)


def _templates(identifiers: pd.DataFrame, platform: Platform) -> pd.DataFrame:
    """The prompt templates members send, with category and reasoning elicitation."""
    templates = identifiers.loc[identifiers["kind"] == "prompt_fingerprint",
                                ["value", "members", "outside_ring", "count"]].rename(
        columns={"value": "template", "count": "times_sent"})
    described = platform.prompt_fingerprints
    if described is not None and len(templates):
        templates = templates.merge(described.rename(columns={"fingerprint": "template"}),
                                    on="template", how="left")
    columns = ["template", "category", "elicits_reasoning", "members", "outside_ring",
               "times_sent"]
    return templates.reindex(columns=columns).reset_index(drop=True)


def _categories(templates: pd.DataFrame) -> pd.DataFrame:
    """Template categories: how many templates and sends, and whether they elicit reasoning."""
    if templates.empty:
        return pd.DataFrame(columns=["category", "templates", "times_sent", "elicit_reasoning"])
    return templates.groupby(templates["category"].fillna("(not described)")).agg(
        templates=("template", "nunique"),
        times_sent=("times_sent", "sum"),
        elicit_reasoning=("elicits_reasoning", lambda v: int(v.fillna(False).astype(bool).sum())),
    ).sort_values("times_sent", ascending=False).reset_index()


def _collateral(evidence: pd.DataFrame, links: pd.DataFrame,
                members: pd.DataFrame) -> pd.DataFrame:
    """Accounts outside the ring on each evidence identifier: who else an action touches."""
    keys = evidence[["kind", "value"]]
    on = links.merge(keys, on=["kind", "value"])
    outside = on.loc[~on["account_id"].isin(members["account_id"])]
    grouped = outside.groupby(["kind", "value"], sort=False)["account_id"].agg(
        outside_accounts="nunique", accounts=lambda a: ", ".join(sorted(a.unique())[:20]))
    return keys.merge(grouped.reset_index(), on=["kind", "value"]).reset_index(drop=True)


def _siblings(ring: pd.Series, rings: pd.DataFrame, store: Store,
              links: pd.DataFrame) -> pd.DataFrame:
    """Other rings of the ring's campaign, and the cards and IPs each shares with it."""
    columns = ["ring_id", "rank", "score", "size", "status", "shared_cards", "shared_ips",
               "why_grouped"]
    campaign = ring["campaign_id"]
    if campaign is None or pd.isna(campaign) or str(campaign) in ("", "None", "nan"):
        return pd.DataFrame(columns=columns)
    others = rings.loc[(rings["campaign_id"] == campaign) & (rings["ring_id"] != ring["ring_id"])]
    if others.empty:
        return pd.DataFrame(columns=columns)
    # The campaign's rings only: a sweep's every member would be most of the read.
    members = store.read_members(sweep_id=str(ring["sweep_id"]),
                                 ring_ids=[*others["ring_id"], ring["ring_id"]])
    infra = links.loc[links["kind"].isin(["payment_method", "ip"])].merge(members,
                                                                          on="account_id")
    mine = infra.loc[infra["ring_id"] == ring["ring_id"], ["kind", "value"]].drop_duplicates()
    theirs = infra.loc[infra["ring_id"] != ring["ring_id"]].merge(mine, on=["kind", "value"])
    shared = theirs.groupby(["ring_id", "kind"])["value"].nunique().unstack(fill_value=0)
    out = others[["ring_id", "rank", "score", "size", "status"]].copy()
    out["shared_cards"] = out["ring_id"].map(shared.get("payment_method", {})).fillna(0)
    out["shared_ips"] = out["ring_id"].map(shared.get("ip", {})).fillna(0)
    out[["shared_cards", "shared_ips"]] = out[["shared_cards", "shared_ips"]].astype("int64")
    out["why_grouped"] = [
        f"shares {c} card(s) and {i} IP(s) with {ring['ring_id']}" if c or i
        else "linked through other rings of the campaign"
        for c, i in zip(out["shared_cards"], out["shared_ips"], strict=True)
    ]
    return out[columns].sort_values("rank").reset_index(drop=True)


def _totals(
    timeline: pd.DataFrame, members: pd.DataFrame, *, prices: Mapping[str, tuple[float, float]]
) -> dict[str, Any]:
    """Requests, tokens, models, activity span and estimated spend of the whole ring."""
    return {
        "accounts": len(members),
        "requests": int(timeline["requests"].sum()),
        "input_tokens": int(timeline["input_tokens"].sum()),
        "output_tokens": int(timeline["output_tokens"].sum()),
        "models": ", ".join(sorted(timeline["model"].unique())),
        "first_request": timeline["hour"].min() if len(timeline) else None,
        "last_request": timeline["hour"].max() if len(timeline) else None,
        "spend": _spend(timeline, prices),
    }


def _spend(timeline: pd.DataFrame, prices: Mapping[str, tuple[float, float]]) -> str:
    """Estimated spend at the configured list prices, naming the models without one."""
    if not prices:
        return ("not estimated: set [case.prices] in graphinv.toml (US dollars per million "
                "input and output tokens, per model)")
    tokens = timeline.groupby("model")[["input_tokens", "output_tokens"]].sum()
    priced = tokens.index.isin(list(prices))
    dollars = sum(
        (row.input_tokens * prices[str(model)][0] + row.output_tokens * prices[str(model)][1])
        / 1e6
        for model, row in tokens.loc[priced].iterrows()
    )
    text = f"${dollars:,.2f} at list prices"
    unpriced = sorted(map(str, tokens.index[~priced]))
    if unpriced:
        text += f" (no price for {', '.join(unpriced)}: their tokens are not counted)"
    return text


# -- html helpers ------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot, or a clear error naming the extra that installs it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra(
            "plots and HTML case files need matplotlib: pip install 'graphinv[notebooks]'"
        ) from exc
    return plt


def _figure(ax: plt.Axes) -> plt.Figure:
    """The top-level figure ``ax`` draws on (``ax.figure`` may be a sub-figure)."""
    figure = ax.get_figure(root=True)
    if figure is None:
        raise ValueError("the axes are not on a figure")
    return figure


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    # zlib level 3 instead of 6: the same pixels, a few percent larger, far less CPU.
    figure.savefig(buffer, format="png", dpi=PNG_DPI, pil_kwargs={"compress_level": 3})
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="evidence", na_rep="")


def _cell(value: Any) -> str:
    """A table cell: timestamps to the minute, integers with separators."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp | datetime):
        return f"{pd.Timestamp(value):%Y-%m-%d %H:%M} UTC"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return str(value)


def _number(value: Any) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"
