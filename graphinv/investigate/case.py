"""A case on one ring, for analysts in a notebook and for the enforcement hand-off.

:class:`Case` reads a ring of a sweep from either store and lays out the evidence as
pandas frames (members, shared identifiers, activity timeline, score breakdown), draws it
with matplotlib, and exports a self-contained HTML case file and a CSV of the accounts to
action, each with its reason.

The score breakdown is recomputed with :func:`graphinv.score.scoring.score_rings` over the
store's platform, because stores keep each ring's feature values and explanation but not
the per-feature baselines and weights; features are measured against the whole platform,
so opening a case reads the whole platform once (seconds on a small platform, minutes on a
million accounts over Bolt).

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
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd

from graphinv.config import Settings
from graphinv.errors import RingNotFound
from graphinv.schema import Platform
from graphinv.score.scoring import score_rings
from graphinv.stores.base import Store

if TYPE_CHECKING:
    from graphinv.context import Context

__all__ = ["Case"]

TEMPLATE_PATH = Path(__file__).parent / "data" / "case.html"
# Colours match the Neo4j Browser style (graphinv/data/graphinv.grass).
KIND_COLOURS = {
    "account": "#4C8EDA",
    "payment_method": "#FFC454",
    "ip": "#57C7E3",
    "prompt_fingerprint": "#F16667",
}
OTHER_KIND_COLOUR = "#8DCC93"
GROUP_COLOURS = {"infrastructure": "#FFC454", "traffic": "#57C7E3", "content": "#F16667"}
# An identifier counts as a reason for enforcement when at least this share of all its
# users are ring members: an SDK or VPN exit shared with thousands of others is no reason.
MIN_CONCENTRATION = 0.5
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
        settings = settings or (context.settings if context is not None else None) or Settings()
        rings = store.read_rings(sweep_id=sweep_id)
        found = rings.loc[rings["ring_id"] == str(ring_id)]
        if found.empty:
            where = f"sweep {sweep_id}" if sweep_id else "the latest sweep"
            raise RingNotFound(f"ring {ring_id!r} is not in {where}")
        self.ring: pd.Series = found.iloc[0][
            ["ring_id", "sweep_id", "rank", "score", "size", "campaign_id", "explanation"]
        ]
        member_ids = store.read_ring_members(str(ring_id), sweep_id=self.ring["sweep_id"])
        platform = store.read_platform()
        ring_members = pd.DataFrame(
            {"ring_id": str(ring_id), "account_id": member_ids["account_id"]}
        )
        self.identifiers = _identifiers(ring_members, platform)
        self.timeline = _timeline(ring_members, platform)
        self.members = _members(ring_members, platform, self.timeline)
        scores = score_rings(ring_members, platform, options=settings.scoring)
        self.breakdown = (
            scores.contributions.drop(columns="ring_id")
            .sort_values("contribution", ascending=False, kind="stable")
            .reset_index(drop=True)
        )
        links = platform.links
        self._links = links.loc[links["account_id"].isin(ring_members["account_id"])]

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
    def enforcement(self) -> pd.DataFrame:
        """One row per account to action: ``account_id, ring_id, sweep_id, ring_rank,
        ring_score, reason`` (the ring's top reasons and what the account shares)."""
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
        ties = best.groupby("account_id")[["kind", "value", "members"]].apply(
            lambda rows: "; ".join(
                f"shares {KIND_NOUNS.get(k, k)} {v} with {n - 1} other member(s)"
                for k, v, n in rows.itertuples(index=False)
            )
        )
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
        ax = ax or plt.subplots(figsize=(10, max(3.0, 0.18 * min(top, len(self.members)) + 1.5)))[1]
        usage = self.timeline
        if usage.empty:
            ax.text(0.5, 0.5, "no usage recorded", ha="center", va="center")
            return ax.figure
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
        ax.figure.colorbar(image, ax=ax, label="share of the member's requests")
        ax.figure.tight_layout()
        return ax.figure

    def plot_graph(self, *, ax: plt.Axes | None = None, max_identifiers: int = 40) -> plt.Figure:
        """Members and the identifiers they share (used by two or more members)."""
        ax = ax or plt.subplots(figsize=(10, 8))[1]
        shared = self.shared_identifiers.head(max_identifiers)
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
        ax.figure.tight_layout()
        return ax.figure

    def plot_contributions(self, *, ax: plt.Axes | None = None) -> plt.Figure:
        """Each feature's contribution to the score, labelled with ring value vs baseline."""
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
        ax.figure.tight_layout()
        return ax.figure

    # -- export --------------------------------------------------------------------------

    def to_html(self, path: Path) -> Path:
        """Write one self-contained HTML case file (plots embedded as PNG, evidence tables)."""
        ring = self.ring
        figures = {
            "contributions": self.plot_contributions(),
            "graph": self.plot_graph(),
            "activity": self.plot_activity(),
        }
        images = {name: _png(figure) for name, figure in figures.items()}
        reasons = self.breakdown.loc[self.breakdown["contribution"] > 0, "text"].head(6)
        page = Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(
            title=html.escape(f"Case file: ring {ring['ring_id']}"),
            ring_id=html.escape(str(ring["ring_id"])),
            rank=html.escape(str(ring["rank"])),
            score=f"{ring['score']:.2f}",
            size=html.escape(str(ring["size"])),
            campaign=html.escape(str(ring["campaign_id"])),
            sweep=html.escape(str(ring["sweep_id"])),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            reasons="\n".join(f"<li>{html.escape(r)}</li>" for r in reasons),
            breakdown=_table(self.breakdown.drop(columns="text").round(4)),
            shared=_table(self.shared_identifiers.head(60)),
            members=_table(self.members),
            enforcement=_table(self.enforcement[["account_id", "reason"]]),
            **{f"img_{name}": data for name, data in images.items()},
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        return path

    def to_csv(self, path: Path) -> Path:
        """Write the accounts to action with the reason for each (see :attr:`enforcement`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.enforcement.to_csv(path, index=False)
        return path


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
    used = links.loc[links.set_index(["kind", "value"]).index.isin(
        grouped.set_index(["kind", "value"]).index)]
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


# -- html helpers ------------------------------------------------------------------------


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="evidence", na_rep="")


def _number(value: Any) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"
