"""Investigator commands: ``queries``, ``ring``, ``case`` and ``browser-kit``.

Standalone click commands; the main group registers them (``cli.add_command``) and puts an
object with ``.get() -> Context`` in ``ctx.obj``. They only parse options and print; the
work is in :mod:`graphinv.investigate.querylib`, :mod:`graphinv.investigate.case` and
:mod:`graphinv.investigate.browser_kit`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from graphinv.output import csv_text, terminal_text

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import JustifyMethod

    from graphinv.context import Context

# Heavy modules (pandas, the Neo4j driver, plotting) are imported inside the commands that
# use them, so `graphinv --help` and unrelated commands start fast.

console = Console(soft_wrap=True)


def _context(*, read: bool = False) -> Context:
    """The command's context; ``read``: read-only, never creating an empty store, warning
    when the last load did not finish."""
    lazy = click.get_current_context().obj
    return lazy.reader() if read else lazy.get()


def _swept_context(*, writes: bool = False) -> Context:
    """The context of a command that reads a sweep: says so when the store has none.

    ``writes``: the command also records something (a review decision), so the store
    opens writable — still never created where none exists.
    """
    from graphinv.errors import GraphinvError

    lazy = click.get_current_context().obj
    if writes:
        lazy.require_store()
    context = lazy.get() if writes else lazy.reader()
    if context.store.read_sweeps().empty:
        where = click.get_current_context().obj.where()
        raise GraphinvError(f"no sweep in {where} (use --db PATH or --neo4j URI, or run "
                            "`graphinv sweep` first)")
    return context


# -- queries -------------------------------------------------------------------------------


@click.group("queries", invoke_without_command=True)
@click.pass_context
def queries(ctx: click.Context) -> None:
    """The saved investigator queries (Cypher, one YAML file each): list, show, run."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_queries)


@queries.command("list")
def list_queries() -> None:
    """List saved queries by category."""
    from graphinv.investigate.querylib import load_queries

    table = Table(title="Saved queries (graphinv queries show ID / run ID --param k=v)")
    for column in ("category", "id", "name", "parameters"):
        table.add_column(column, overflow="fold")
    for query in load_queries().values():
        params = ", ".join(
            p.name + ("" if p.required else f"={_text(p.default)}") for p in query.parameters
        )
        table.add_row(*(terminal_text(v) for v in (query.category, query.id, query.name, params)))
    console.print(table)


@queries.command("show")
@click.argument("query_id")
def show_query(query_id: str) -> None:
    """Print one saved query: description, parameters and Cypher."""
    from graphinv.investigate.querylib import get_query

    query = get_query(query_id)
    name, qid, category = (terminal_text(v) for v in (query.name, query.id, query.category))
    console.print(f"[bold]{name}[/] ({qid}, {category})\n{terminal_text(query.description)}\n")
    for p in query.parameters:
        default = "required" if p.required else f"default {_text(p.default)}"
        console.print(terminal_text(f"  ${p.name}: {p.type}, {default} — {p.description}"))
    console.print()
    click.echo(query.query)


@queries.command("run")
@click.argument("query_id")
@click.option("--param", "-p", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A parameter value (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def run_saved_query(query_id: str, pairs: tuple[str, ...], fmt: str) -> None:
    """Run a saved query on the Neo4j store (--neo4j URI or NEO4J_URI)."""
    from graphinv.investigate.querylib import QueryError, bind, get_query, run_query

    query = get_query(query_id)
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise QueryError(f"--param {pair!r}: write NAME=VALUE")
        values[name.strip()] = value
    bind(query, values)  # parameter errors before opening a store
    # Saved queries are Cypher: on the embedded store say so, rather than "no such file".
    frame = run_query(_context(read="://" in click.get_current_context().obj.where()).store,
                      query, params=values)
    if fmt == "json":
        # Numbers, booleans and lists stay JSON values; graph objects become their text.
        records = [{k: _json_value(v) for k, v in row.items()}
                   for row in frame.to_dict("records")]
        click.echo(json.dumps(records, indent=2, default=str))
        return
    frame = frame.map(_text) if len(frame) else frame
    if fmt == "csv":
        click.echo(csv_text(frame), nl=False)
    else:
        console.print(_table(frame, title=f"{terminal_text(query.name)} ({len(frame)} rows)"))


# -- ring ----------------------------------------------------------------------------------


@click.command("ring")
@click.argument("ring_id")
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
@click.option("--limit", default=25, show_default=True, help="Members and identifiers listed.")
def ring(ring_id: str, sweep_id: str | None, limit: int) -> None:
    """Show one ring: why it scored, what its members share, who they are."""
    from graphinv.investigate.case import Case

    case = Case(ring_id, context=_swept_context(), sweep_id=sweep_id)
    info = case.ring
    decision = case.decision
    text = {key: terminal_text(value) for key, value in info.items()}
    predecessors = ", ".join(terminal_text(p) for p in info["predecessors"]) or "none"
    lines = [
        f"rank {text['rank']} · score {info['score']:.2f} · {text['size']} accounts · "
        f"campaign {text['campaign_id']} · sweep {text['sweep_id']}",
        f"lineage: {terminal_text(info['status'] or 'new')} · predecessors: {predecessors}",
    ]
    if info["lineage_evidence"]:
        lines.append(f"evidence: {text['lineage_evidence']}")
    lines.append(f"review: {terminal_text(decision['disposition'])} "
                 f"({terminal_text(decision['priority'])}) · {terminal_text(decision['reason'])}"
                 + (f" · assignee {terminal_text(decision['assignee'])}"
                    if decision["assignee"] else ""))
    if decision["last_note"]:
        lines.append(f"last note: {terminal_text(decision['last_note'])}")
    console.print(Panel("\n".join(lines), title=f"Ring {text['ring_id']}"), highlight=False,
                  soft_wrap=False)
    breakdown = case.breakdown.loc[case.breakdown["contribution"] > 0,
                                   ["feature", "group", "contribution", "text"]]
    console.print(_table(breakdown.round(3), title="Why this score (contributions add up to it)"))
    cards = case.cards[["card", "type", "bin", "issuer_country", "prepaid", "members",
                        "outside_ring"]]
    console.print(_table(cards.head(limit),
                         title=f"Cards ({len(cards)}; top {min(limit, len(cards))})"))
    evidence = case.evidence_identifiers[
        ["kind", "value", "members", "outside_ring", "concentration", "first_seen", "last_seen"]
    ]
    # Cards, IPs and templates each get their share of the listing before other kinds.
    shown = evidence.groupby("kind", sort=False).head(max(limit // 3, 5)).head(limit)
    console.print(_table(shown, title=f"Shared identifiers that are evidence ({len(evidence)}; "
                                      f"{len(shown)} shown, cards first)"))
    hubs = case.hubs
    if len(hubs):
        console.print(f"Not evidence: {len(hubs)} hub identifier(s) mostly used outside the "
                      "ring, e.g. " + ", ".join(
                          f"{v} ({n:,} accounts)" for v, n in
                          hubs[["value", "platform_accounts"]].head(3).itertuples(index=False)),
                      highlight=False)
    members = case.members[[c for c in case.members.columns
                            if c in ("account_id", "created_at", "signup_path", "country",
                                     "status", "cards", "IPs", "prompt_templates",
                                     "requests")]]
    console.print(_table(members.head(limit),
                         title=f"Members ({len(members)}; first {min(limit, len(members))})"))
    where = click.get_current_context().obj
    flag = "" if where.where() == "./graphinv.duckdb" else (
        f" --neo4j {where.where()}" if "://" in where.where() else f" --db {where.where()}")
    flag, ring = terminal_text(flag), text["ring_id"]
    console.print(f"Case file: graphinv{flag} case {ring} --html case.html "
                  "--csv accounts.csv\n"
                  f"Decide:    graphinv{flag} review {ring} --set-status "
                  "confirmed --note '…'\n"
                  f"Share:     graphinv{flag} indicators {ring} --out "
                  f"{ring}.stix.json", highlight=False)


# -- case ----------------------------------------------------------------------------------


@click.command("case")
@click.argument("ring_id")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the HTML case file (plots embedded) here.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the accounts to action, with reasons, here.")
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
def case(ring_id: str, html_path: Path | None, csv_path: Path | None,
         sweep_id: str | None) -> None:
    """Export a case file on one ring for the enforcement team."""
    if html_path is None and csv_path is None:
        raise click.UsageError("give --html PATH, --csv PATH or both")
    from graphinv.investigate.case import Case

    opened = Case(ring_id, context=_swept_context(), sweep_id=sweep_id)
    if html_path is not None:
        console.print(f"Case file: {terminal_text(opened.to_html(html_path))}")
    if csv_path is not None:
        written = terminal_text(opened.to_csv(csv_path))
        console.print(f"Accounts to action: {written} ({len(opened.members)} rows)")
    console.print(terminal_text(repr(opened)))


# -- indicators ----------------------------------------------------------------------------


@click.command("indicators")
@click.argument("ring_id")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the STIX 2.1 bundle here (default: stdout).")
@click.option("--key-env", default="GRAPHINV_INDICATOR_KEY", show_default=True,
              help="Environment variable holding the key agreed with your partners.")
@click.option("--producer", default="graphinv user", show_default=True,
              help="Your organisation's name in the bundle.")
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
def indicators(ring_id: str, out_path: Path | None, key_env: str, producer: str,
               sweep_id: str | None) -> None:
    """Write a ring's cards, IPs and templates as keyed hashes in STIX 2.1, to share."""
    from graphinv.investigate.case import Case
    from graphinv.investigate.indicators import indicator_key, ring_indicators

    key = indicator_key(key_env)  # fail before reading anything without a key
    opened = Case(ring_id, context=_swept_context(), sweep_id=sweep_id)
    bundle = ring_indicators(opened, key=key, producer=producer)
    text = bundle.serialize(pretty=True)
    count = sum(1 for o in bundle.objects if o.type == "indicator")
    if out_path is None:
        click.echo(text)
        return
    out_path.write_text(text + "\n", encoding="utf-8")
    console.print(f"Wrote {count} indicator(s) of ring {ring_id} to {out_path} (STIX 2.1, "
                  f"values as HMAC-SHA256 under ${key_env}).")


# -- review --------------------------------------------------------------------------------


@click.command("review")
@click.argument("ring_id", required=False)
@click.option("--set-status", "status",
              type=click.Choice(["open", "in_progress", "confirmed", "dismissed", "actioned"]),
              help="Record a disposition for RING_ID.")
@click.option("--assignee", help="Assign RING_ID to someone ('' unassigns).")
@click.option("--note", help="Add a note to RING_ID (kept with who and when).")
@click.option("--by", "by", help="Who decides (default: your login name).")
@click.option("--margin", default=0.5, show_default=True, type=float,
              help="A dismissed ring alerts again above its size when dismissed × (1 + margin).")
@click.option("--all", "include_silent", is_flag=True,
              help="Also list silent rings (dismissed within the margin, below threshold).")
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
def review(ring_id: str | None, status: str | None, assignee: str | None, note: str | None,
           by: str | None, margin: float, include_silent: bool, sweep_id: str | None,
           fmt: str) -> None:
    """The review queue, or (with RING_ID and --set-status/--assignee/--note) a decision.

    Escalated first (a ring actioned before and back, a confirmed ring respawned), then
    alerts (undecided above threshold; dismissed but grown past the margin), then rings in
    review. Decisions carry across sweeps along ring lineage.
    """
    from graphinv.investigate import review as queue_module

    deciding = ring_id is not None and not (status is None and assignee is None and note is None)
    store = _swept_context(writes=deciding).store
    if ring_id is not None:
        if status is None and assignee is None and note is None:
            notes = queue_module.ring_notes(store, ring_id)
            console.print(_table(notes, title=f"Decisions on {ring_id} ({len(notes)})"))
            return
        event = queue_module.decide(store, ring_id, status=status, assignee=assignee,
                                    note=note, by=by, sweep_id=sweep_id)
        console.print(
            f"{ring_id}: {event['status'] or '(status unchanged)'}"
            + (f", assigned to {event['assignee']}" if event["assignee"] else "")
            + (f", note: {event['note']}" if event["note"] else "")
            + f" — by {event['by']} at {event['at']:%Y-%m-%d %H:%M} UTC "
            f"(sweep {event['sweep_id']}, {event['size']} accounts)"
        )
        return
    frame = queue_module.review_queue(store, sweep_id=sweep_id, margin=margin,
                                      include_silent=include_silent)
    if fmt == "json":
        click.echo(frame.to_json(orient="records", indent=2, date_format="iso"))
        return
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    table = Table(title=f"Review queue ({len(frame)} rings; margin {margin:.0%})",
                  caption="graphinv review RING --set-status dismissed --note '…'")
    justify: JustifyMethod
    for column, justify in (("priority", "left"), ("ring", "left"), ("score", "right"),
                            ("size", "right")):
        table.add_column(column, justify=justify, no_wrap=True)
    for column in ("lineage", "disposition", "assignee", "why it is here", "last note"):
        table.add_column(column, overflow="fold")
    colours = {"escalated": "bold red", "alert": "yellow", "in review": "cyan",
               "silent": "dim"}
    row: Any  # pandas-stubs types itertuples fields as scalars of any kind, even bytes
    for row in frame.itertuples(index=False):
        table.add_row(f"[{colours[row.priority]}]{row.priority}[/]", row.ring_id,
                      f"{row.score:.2f}", _text(row.size), row.lineage, row.disposition,
                      _text(row.assignee), row.reason, _text(row.last_note))
    console.print(table)


# -- browser kit ---------------------------------------------------------------------------


@click.command("browser-kit")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("browser-kit"), show_default=True,
              help="Write guide.html and graphinv.grass here (to serve or copy elsewhere).")
@click.option("--local/--no-local", default=True, show_default=True,
              help="Also install the kit into the local server (graphinv neo4j start).")
def browser_kit_command(out_dir: Path, local: bool) -> None:
    """Install the Neo4j Browser style and guide (local server), or write them for another."""
    from graphinv.investigate import browser_kit
    from graphinv.stores.neo4j.local import LocalNeo4j

    written = browser_kit.write_kit(out_dir)
    console.print(
        f"Wrote {terminal_text(written['guide'])} and {terminal_text(written['style'])}."
    )
    server = LocalNeo4j.from_env()
    if local and server.version() is not None:
        zipped = browser_kit.install_local(server.home, server.lib)
        console.print(
            f"Installed into the local server: {zipped}\n"
            "Restart it to serve the kit (graphinv neo4j stop && graphinv neo4j start); on "
            "connect, Browser then runs: "
            + browser_kit.post_connect_command(http_port=server.http_port)
        )
    elif local:
        console.print("No local server installed here (graphinv neo4j start installs one).")
    console.print(
        "Another Neo4j 5.26 server (HOST): copy the Browser zip to $NEO4J_HOME/web/"
        "neo4j-browser.zip (graphinv.investigate.browser_kit.browser_zip builds it from the "
        "server's "
        "lib/neo4j-browser-*.jar), then in neo4j.conf set\n"
        "  browser.remote_content_hostname_whitelist=guides.neo4j.com,localhost,HOST\n"
        "  browser.post_connect_cmd="
        + browser_kit.post_connect_command(http_port=7474, host="HOST")
        + f"\nand restart. Without server access: serve {terminal_text(out_dir)}/ from any "
        "whitelisted "
        f"host and type :play URL/guide.html, or paste :style and the content of "
        f"{terminal_text(written['style'].name)} into Browser. See docs/investigate.md."
    )


# -- printing ------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, *, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(terminal_text(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(terminal_text(_text(v)) for v in row))
    return table


def _json_value(value: Any) -> Any:
    """A query cell as JSON: numbers as numbers, missing as null, nodes and paths as text."""
    import neo4j.graph
    import numpy as np
    import pandas as pd

    if isinstance(value, neo4j.graph.Node | neo4j.graph.Relationship | neo4j.graph.Path):
        return _text(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _text(value: Any) -> str:
    """A readable cell: graph values by label and id, numbers short, missing as empty."""
    import neo4j.graph
    import pandas as pd

    if isinstance(value, neo4j.graph.Path):
        return " ".join(_text(n) for n in value.nodes)
    if isinstance(value, neo4j.graph.Node):
        label = next(iter(sorted(value.labels)), "")
        return f"({label} {value.get('id', value.element_id)})"
    if isinstance(value, neo4j.graph.Relationship):
        return f"[{value.type}]"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)
