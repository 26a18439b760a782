"""The ``graphinv`` command: a thin layer over :class:`graphinv.context.Context`.

Every command does its work through the context; this module only parses options and
prints. Errors graphinv raises on purpose print as ``Error: …`` with exit status 1; a
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from graphinv.errors import GraphinvError
from graphinv.neo4j_local import LocalNeo4j

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class _Group(click.Group):
    """Turns a GraphinvError anywhere below into one ``Error: …`` line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GraphinvError as error:
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]Error:[/] {error}", highlight=False)
            ctx.exit(1)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="graphinv")
def cli(debug: bool) -> None:
    """graphinv: find coordinated account rings that distil AI models."""


@cli.group()
def neo4j() -> None:
    """The local Neo4j 5.26 server (Maven Central jars, 127.0.0.1 only, no auth)."""


@neo4j.command("start")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for Bolt.")
def neo4j_start(timeout: float) -> None:
    """Install (first time) and start the local server; waits until Bolt answers."""
    server = LocalNeo4j.from_env()
    with console.status("Starting Neo4j (the first start downloads ~140 MB of jars)…"):
        status = server.start(timeout=timeout)
    console.print(
        f"Neo4j {status.version} running (pid {status.pid})\n"
        f"  Bolt     {status.bolt_uri}\n  Browser  {status.browser_url}\n  Home     {status.home}"
    )


@neo4j.command("stop")
def neo4j_stop() -> None:
    """Stop the local server."""
    server = LocalNeo4j.from_env()
    console.print("Neo4j stopped." if server.stop() else "Neo4j was not running.")


@neo4j.command("status")
def neo4j_status() -> None:
    """Say whether the local server runs; exit status 0 when it does, 3 when it does not."""
    status = LocalNeo4j.from_env().status()
    if status.running:
        console.print(
            f"running (pid {status.pid}) at {status.bolt_uri}, Browser {status.browser_url}"
        )
    else:
        console.print(f"not running (home {status.home}, installed: {status.version or 'no'})")
    sys.exit(0 if status.running else 3)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="graphinv")


if __name__ == "__main__":
    main()

