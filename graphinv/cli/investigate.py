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

if TYPE_CHECKING:
    import pandas as pd

    from graphinv.context import Context

# Heavy modules (pandas, the Neo4j driver, plotting) are imported inside the commands that
# use them, so `graphinv --help` and unrelated commands start fast.

console = Console(soft_wrap=True)


def _context() -> Context:
    """The read-only context (these commands only read), warning of an unfinished load."""
    return click.get_current_context().obj.reader()


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
        table.add_row(query.category, query.id, query.name, params)
    console.print(table)


@queries.command("show")
@click.argument("query_id")
def show_query(query_id: str) -> None:
    """Print one saved query: description, parameters and Cypher."""
    from graphinv.investigate.querylib import get_query

    query = get_query(query_id)
    console.print(f"[bold]{query.name}[/] ({query.id}, {query.category})\n{query.description}\n")
    for p in query.parameters:
        default = "required" if p.required else f"default {_text(p.default)}"
        console.print(f"  ${p.name}: {p.type}, {default} — {p.description}")
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
    frame = run_query(_context().store, query, params=values)
    frame = frame.map(_text) if len(frame) else frame
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(frame.to_dict("records"), indent=2, default=str))
    else:
        console.print(_table(frame, title=f"{query.name} ({len(frame)} rows)"))


# -- ring ----------------------------------------------------------------------------------


@click.command("ring")
@click.argument("ring_id")
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
@click.option("--limit", default=25, show_default=True, help="Members and identifiers listed.")
def ring(ring_id: str, sweep_id: str | None, limit: int) -> None:
    """Show one ring: why it scored, what its members share, who they are."""
    from graphinv.investigate.case import Case

    case = Case(ring_id, context=_context(), sweep_id=sweep_id)
    info = case.ring
    console.print(Panel(
        f"rank {info['rank']} · score {info['score']:.2f} · {info['size']} accounts · "
        f"campaign {info['campaign_id']} · sweep {info['sweep_id']}",
        title=f"Ring {info['ring_id']}",
    ))
    breakdown = case.breakdown.loc[case.breakdown["contribution"] > 0,
                                   ["feature", "group", "contribution", "text"]]
    console.print(_table(breakdown.round(3), title="Why this score (contributions add up to it)"))
    shared = case.shared_identifiers[
        ["kind", "value", "members", "outside_ring", "concentration", "first_seen", "last_seen"]
    ]
    shown = min(limit, len(shared))
    console.print(_table(shared.head(limit),
                         title=f"Shared identifiers ({len(shared)}; top {shown})"))
    members = case.members[[c for c in case.members.columns
                            if c in ("account_id", "created_at", "signup_path", "country",
                                     "cards", "IPs", "prompt_templates", "requests")]]
    console.print(_table(members.head(limit),
                         title=f"Members ({len(members)}; first {min(limit, len(members))})"))
    console.print(f"Case file: graphinv case {info['ring_id']} --html case.html --csv accounts.csv")


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

    opened = Case(ring_id, context=_context(), sweep_id=sweep_id)
    if html_path is not None:
        console.print(f"Case file: {opened.to_html(html_path)}")
    if csv_path is not None:
        console.print(f"Accounts to action: {opened.to_csv(csv_path)} ({len(opened.members)} rows)")
    console.print(repr(opened))


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
    console.print(f"Wrote {written['guide']} and {written['style']}.")
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
        + f"\nand restart. Without server access: serve {out_dir}/ from any whitelisted "
        f"host and type :play URL/guide.html, or paste :style and the content of "
        f"{written['style'].name} into Browser. See docs/investigate.md."
    )


# -- printing ------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, *, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(_text(v) for v in row))
    return table


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
    return str(value)
