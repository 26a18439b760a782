"""The ``graphinv`` command: a thin layer over :class:`graphinv.context.Context`.

Every command does its work through the context; this module only parses options and
prints. Errors graphinv raises on purpose print as ``Error: …`` with exit status 1; a
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from graphinv.cli.ingest import ingest_command
from graphinv.cli.investigate import (
    browser_kit_command,
    case,
    indicators,
    queries,
    review,
    ring,
)
from graphinv.errors import GraphinvError, InputError
from graphinv.output import csv_text, terminal_text, visible_controls, write_text

if TYPE_CHECKING:
    import pandas as pd

    from graphinv.context import Context

# The ranked table quotes the start of each explanation; `graphinv ring` gives all of it.
WHY_WIDTH = 110

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
            # Messages quote file names, headers and values: print them as plain text.
            err_console.print(f"[bold red]Error:[/] {terminal_text(error)}", highlight=False)
            ctx.exit(1)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "--neo4j", "neo4j_uri", metavar="URI",
    help="Use the Neo4j store at URI (credentials from NEO4J_USER / NEO4J_PASSWORD).",
)
@click.option(
    "--db", "db_path", type=click.Path(path_type=Path), default=Path("graphinv.duckdb"),
    show_default=True,
    help="The embedded store's DuckDB file. Given explicitly, it wins over NEO4J_URI; "
    "without it, NEO4J_URI (when set) picks Neo4j.",
)
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path),
    help="Settings TOML (default: ./graphinv.toml when present; env GRAPHINV_CONFIG).",
)
@click.option("--quiet", is_flag=True, help="No progress bars or spinners.")
@click.version_option(package_name="graphinv")
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    neo4j_uri: str | None,
    db_path: Path,
    config_path: Path | None,
    quiet: bool,
) -> None:
    """graphinv: find coordinated account rings that distil AI models."""
    explicit_db = ctx.get_parameter_source("db_path") is click.core.ParameterSource.COMMANDLINE
    if explicit_db and neo4j_uri:
        raise click.UsageError("--db and --neo4j name two different stores; give one")
    ctx.obj = _LazyContext(neo4j_uri, db_path, config_path, not quiet, env_store=not explicit_db)
    ctx.call_on_close(ctx.obj.close)


class _LazyContext:
    """Builds the Context (settings, store) only for commands that need one."""

    def __init__(
        self,
        neo4j_uri: str | None,
        db_path: Path,
        config_path: Path | None,
        progress: bool,
        *,
        env_store: bool = True,
    ) -> None:
        self._args = (neo4j_uri, db_path, config_path)
        self.progress = progress
        self.env_store = env_store
        self._context: Context | None = None
        self._announced = False

    def get(self, *, read_only: bool = False, announce: bool = True) -> Context:
        """The context; ``read_only`` for commands that only read (the embedded store then
        opens read-only, so they run during a sweep and on read-only media); ``announce``
        says on stderr which store the command works on."""
        if self._context is None:
            from graphinv.config import load_settings
            from graphinv.context import Context

            neo4j_uri, db_path, config_path = self._args
            self._context = Context(
                settings=load_settings(path=config_path),
                neo4j_uri=neo4j_uri,
                db_path=db_path,
                progress=self.progress,
                read_only=read_only,
                env_store=self.env_store,
            )
        if announce and not self._announced:
            self._announced = True
            err_console.print(terminal_text(self._context.store_description()), highlight=False)
        return self._context

    def where(self) -> str:
        """The store as the user named it: the Neo4j URI or ``./graphinv.duckdb``."""
        import os

        neo4j_uri, db_path, _ = self._args
        env_uri = os.environ.get("NEO4J_URI") if self.env_store else None
        return neo4j_uri or env_uri or _shown(Path(db_path))

    def require_store(self) -> None:
        import os

        neo4j_uri, db_path, _ = self._args
        env_uri = os.environ.get("NEO4J_URI") if self.env_store else None
        if neo4j_uri or env_uri or Path(db_path).exists():
            return
        raise GraphinvError(
            f"no sweep in {self.where()}: no such file (use --db PATH or --neo4j URI)"
        )

    def reader(self) -> Context:
        """The context of a read command: refuses to create an empty embedded store where
        none exists, opens read-only and warns when the last load did not finish."""
        self.require_store()
        context = self.get(read_only=True)
        warn_unfinished(context)
        return context

    def close(self) -> None:
        if self._context is not None:
            self._context.close()


def warn_unfinished(context: Context) -> None:
    """Warn on stderr that the store's last load did not finish (results may be stale)."""
    problem = context.load_warning()
    if problem is not None:
        err_console.print(
            f"[bold yellow]Warning:[/] {terminal_text(problem)}; what follows may not reflect it.",
            highlight=False,
        )


pass_context = click.make_pass_decorator(_LazyContext)


@cli.group()
def neo4j() -> None:
    """The local Neo4j 5.26 server (Maven Central jars, 127.0.0.1 only, password auth)."""


@neo4j.command("start")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for Bolt.")
@click.option(
    "--with-gds", "with_gds", is_flag=True,
    help="Also install Neo4j Graph Data Science (open edition, ~15 MB more); once installed, "
    "every start loads it (env GRAPHINV_NEO4J_GDS=1 does the same).",
)
def neo4j_start(timeout: float, with_gds: bool) -> None:
    """Install (first time) and start the local server; waits until Bolt answers."""
    import dataclasses

    from graphinv.investigate.browser_kit import connect_help, install_local
    from graphinv.stores.neo4j.local import LocalNeo4j

    server = LocalNeo4j.from_env()
    if with_gds:
        server = dataclasses.replace(server, gds=True)
    with console.status("Starting Neo4j (the first start downloads ~140 MB of jars)…"):
        status = server.start(timeout=timeout, web_kit=install_local)
    gds = server.loaded_gds_version()
    console.print(
        f"Neo4j {status.version} running (pid {status.pid})\n"
        f"  Bolt     {status.bolt_uri}\n  Browser  {status.browser_url}\n"
        f"  Home     {terminal_text(status.home)}\n"
        f"  GDS      {gds + ' loaded' if gds else 'not installed (start --with-gds)'}\n"
        + connect_help(bolt_uri=status.bolt_uri, password_file=server.password_file,
                       new_password=status.new_password),
        markup=False, highlight=False, soft_wrap=True,
    )


@neo4j.command("stop")
def neo4j_stop() -> None:
    """Stop the local server."""
    from graphinv.stores.neo4j.local import LocalNeo4j

    server = LocalNeo4j.from_env()
    console.print("Neo4j stopped." if server.stop() else "Neo4j was not running.")


@neo4j.command("status")
def neo4j_status() -> None:
    """Say whether the local server runs; exit status 0 when it does, 3 when it does not."""
    from graphinv.stores.neo4j.local import LocalNeo4j

    server = LocalNeo4j.from_env()
    status = server.status()
    if status.running:
        gds = server.loaded_gds_version()
        console.print(
            f"running (pid {status.pid}) at {status.bolt_uri}, Browser {status.browser_url}; "
            + (f"GDS {gds} loaded" if gds else "GDS not loaded")
        )
    else:
        gds = server.gds_version()
        console.print(
            f"not running (home {terminal_text(status.home)}, installed: {status.version or 'no'}, "
            f"GDS installed: {gds or 'no'})"
        )
    sys.exit(0 if status.running else 3)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", default="small", show_default=True, help="small, medium or case-24k.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--accounts", "n_accounts", type=int, help="Scale the preset to this many accounts.")
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv", "csv.gz"]), default="parquet",
    show_default=True,
)
@click.option(
    "--next-day", "previous_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Instead: the platform in this folder one day later (bans, respawns, growth, a split).",
)
@click.option("--delta", is_flag=True,
              help="With --next-day: write only the new or changed rows (an incremental load).")
@click.option("--logs", "with_logs", is_flag=True,
              help="Also write raw request logs (OUT/logs), the account export without them "
              "(OUT/base) and each request's planted template (OUT/request_labels.parquet).")
@pass_context
def synth(lazy: _LazyContext, out: Path, preset: str, seed: int, n_accounts: int | None,
          fmt: str, previous_dir: Path | None, delta: bool, with_logs: bool) -> None:
    """Write a synthetic platform with planted rings and ground truth (labels) to OUT."""
    from graphinv.ingest.load import read_dir
    from graphinv.synth import generate, next_day, next_day_delta, write_platform

    started = time.perf_counter()
    if with_logs:
        from graphinv.synth.logs import write_logs

        if previous_dir is not None or fmt != "parquet":
            raise click.UsageError("--logs writes Parquet tables of a new platform")
        with console.status(f"Rendering request logs of the {preset} platform (seed {seed})…"):
            summary = write_logs(out, preset=preset, seed=seed, n_accounts=n_accounts)
        console.print(f"{summary['requests']:,} requests in {summary['parts']} part(s) under "
                      f"{out / 'logs'}; {summary['templates']:,} planted templates, "
                      f"{summary['free_form']:,} free-form prompts; "
                      f"{time.perf_counter() - started:.1f} s, peak memory {_peak_mb():,.0f} MB")
        return
    if previous_dir is None:
        if delta:
            raise click.UsageError("--delta needs --next-day")
        with console.status(f"Generating the {preset} platform (seed {seed})…"):
            platform = generate(preset=preset, seed=seed, n_accounts=n_accounts)
        title = f"Synthetic platform '{preset}' (seed {seed}) in {out}"
    else:
        with console.status(f"Moving {terminal_text(previous_dir)} on by a day (seed {seed})…"):
            kinds = lazy.get(announce=False).settings.load.extra_kinds
            previous, quarantine = read_dir(previous_dir, extra_kinds=kinds)
            if quarantine.count():
                raise InputError(
                    f"{previous_dir} has {quarantine.count():,} invalid rows; "
                    "`graphinv load` it to see them in quarantine"
                )
            platform = next_day(previous, seed=seed)
            if delta:
                platform = next_day_delta(previous, platform)
        title = f"{previous_dir} one day later{' (new rows only)' if delta else ''} in {out}"
    written = write_platform(platform, out, fmt=fmt)
    table = Table(title=terminal_text(title))
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("MB", justify="right")
    for name, (rows, size) in written.items():
        table.add_row(name, f"{rows:,}", f"{size / 1e6:.1f}")
    console.print(table)
    console.print(f"{time.perf_counter() - started:.1f} s, peak memory {_peak_mb():,.0f} MB")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--quarantine", "quarantine_dir", type=click.Path(path_type=Path),
    help="Where rejected rows go (default: quarantine/ beside the store).",
)
@click.option("--kind", "extra_kinds", multiple=True, help="Accept this extra link kind.")
@click.option(
    "--pseudonymise", is_flag=True,
    help="Replace identifier values by keyed HMACs (key in GRAPHINV_PSEUDONYMISE_KEY).",
)
@click.option(
    "--bulk", is_flag=True,
    help="First load into the local Neo4j offline (neo4j-admin import; server stopped, "
    "database empty); starts the server after.",
)
@pass_context
def load(
    lazy: _LazyContext,
    folder: Path,
    quarantine_dir: Path | None,
    extra_kinds: tuple[str, ...],
    pseudonymise: bool,
    bulk: bool,
) -> None:
    """Validate the input tables in FOLDER and load them into the store.

    Exit status 0 when every row loaded, 3 when some rows went to quarantine.
    """
    import logging

    from graphinv.stores.neo4j.local import LocalNeo4j

    context = lazy.get()
    options: dict[str, Any] = {"quarantine_dir": quarantine_dir, "pseudonymise": pseudonymise,
               "extra_kinds": extra_kinds}
    # The driver retries transient errors (deadlocks between parallel batches) itself and
    # logs a warning for each; they are counted and summed up, not dumped on the console.
    retries = _RetryCounter()
    driver_log = logging.getLogger("neo4j.session")  # where the driver logs its retries
    driver_log.addFilter(retries)
    try:
        if bulk:
            from graphinv.investigate.browser_kit import install_local

            server = LocalNeo4j.from_env()
            with console.status("Importing offline with neo4j-admin, then starting Neo4j…"):
                # The kit goes in first: the import starts the server, which serves it from then.
                install_local(server.home, server.install())
                report = context.bulk_load(folder, server, **options)
        else:
            report = context.load(folder, **options)
    finally:
        # A failed load must not leave the filter swallowing later warnings.
        driver_log.removeFilter(retries)
    console.print(report.summary_table())
    if retries.count:
        console.print(f"{retries.count} transient Neo4j error(s) (e.g. deadlocks between "
                      "parallel batches) were retried by the driver and succeeded.")
    sys.exit(report.exit_code)


@cli.command()
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the full JSON report here ('-' for stdout).")
@click.option("--alert-threshold", type=float,
              help="Score at which a new or respawned ring exits 10 (default: scoring threshold).")
@click.option("--top", default=15, show_default=True, help="Rings shown in the table.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local",
              show_default=True,
              help="Where projection and Leiden run: here, or on Apache Spark (graphinv[spark]).")
@click.option("--input", "spark_input",
              help="With --engine spark: the loaded input folder's Parquet (path or URI).")
@click.option("--master", envvar="SPARK_MASTER", default="local[2]", show_default=True,
              help="With --engine spark: the Spark master URL (or SPARK_MASTER).")
@pass_context
def sweep(lazy: _LazyContext, json_path: Path | None, alert_threshold: float | None,
          top: int, engine: str, spark_input: str | None, master: str) -> None:
    """Find, score and record rings over everything loaded; report what changed.

    Exit status 0, or 10 when a new or respawned ring scores at the alert threshold.
    """
    from graphinv.investigate.review import alert_groups, review_queue

    detector = measure = None
    if engine == "spark":
        from graphinv.engines.spark import SparkDetector, SparkOptions

        if not spark_input:
            raise GraphinvError("--engine spark needs --input: the folder that was loaded")
        detector = SparkDetector(spark_input, options=SparkOptions(master=master))
        measure = detector.features
    elif spark_input:
        raise GraphinvError("--input is read by --engine spark only")
    context = lazy.get()
    report = context.sweep(alert_threshold=alert_threshold, detector=detector,
                           measure=measure)
    groups = alert_groups(context.store, report.alerts)
    queue = review_queue(context.store, alert_threshold=report.alert_threshold)
    if json_path is not None:
        data = report.to_dict()
        data["alert_groups"] = groups
        data["review"] = {
            "escalated": queue.loc[queue["priority"] == "escalated", "ring_id"].tolist(),
            "alerts": queue.loc[queue["priority"] == "alert", "ring_id"].tolist(),
            "in_review": queue.loc[queue["priority"] == "in review", "ring_id"].tolist(),
        }
        text = json.dumps(data, indent=2, default=str)
        if str(json_path) == "-":
            click.echo(text)
            sys.exit(report.exit_code)
        write_text(json_path, text)
    console.print(_rings_table(report.rings.head(top),
                               title=f"Sweep {terminal_text(report.sweep_id)}",
                               threshold=context.settings.scoring.threshold))
    counts, lineage = report.counts, report.lineage
    console.print(
        f"{counts['accounts']:,} accounts, {counts['links']:,} links → {counts['rings']:,} rings "
        f"({counts['accounts_in_rings']:,} accounts) in {counts['campaigns']:,} campaigns; "
        f"{counts['flagged_rings']:,} flagged at score ≥ {context.settings.scoring.threshold}."
    )
    console.print(
        "Since the last sweep: " + ", ".join(f"{n} {status}" for status, n in lineage.items() if n)
    )
    hubs = report.projection.get("hubs", {})
    if any(hubs.values()):
        console.print(
            "Hub identifiers not expanded into pairs: "
            + ", ".join(f"{n:,} {kind}" for kind, n in hubs.items() if n)
        )
    console.print(
        f"{sum(report.seconds.values()):.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items())
        + f"), peak memory {report.peak_memory_mb:,.0f} MB"
    )
    escalated = queue.loc[queue["priority"] == "escalated"]
    for decided_on, rows in escalated.groupby("decided_on", sort=False):
        console.print(
            f"[bold red]Escalated:[/] {decided_on} ({rows['disposition'].iloc[0]}, "
            f"{rows['decided_size'].iloc[0]} accounts when decided) is back as {len(rows)} "
            f"ring(s) / {int(rows['size'].sum())} accounts: {', '.join(rows['ring_id'])}",
            highlight=False,
        )
    if report.exit_code:
        console.print(f"[bold red]Alert:[/] {len(report.alerts)} new or respawned ring(s) "
                      f"score ≥ {report.alert_threshold}:", highlight=False)
        shown = 12
        for group in groups[:shown]:
            console.print(f"  {terminal_text(group['text'])}", highlight=False)
        if len(groups) > shown:
            rest = groups[shown:]
            console.print(f"  … and {len(rest)} more group(s), "
                          f"{sum(g['accounts'] for g in rest):,} accounts (--json for all)")
        campaigns = report.alert_campaigns
        console.print(
            f"  By operator: {len(campaigns)} campaign(s): "
            + "; ".join(f"{terminal_text(campaign)} ({len(rings)} ring(s))"
                        for campaign, rings in campaigns[["campaign_id", "rings"]].itertuples(
                            index=False)),
            highlight=False,
        )
    console.print(f"Review queue: {len(escalated)} escalated, "
                  f"{int((queue['priority'] == 'alert').sum())} alerting, "
                  f"{int((queue['priority'] == 'in review').sum())} in review — "
                  f"graphinv{_db_flag(lazy)} review")
    sys.exit(report.exit_code)


@cli.command()
@click.option("--sweep", "sweep_id", help="A past sweep (default: the latest).")
@click.option("--limit", default=20, show_default=True, help="Rings listed (table/json).")
@click.option("--members", is_flag=True, help="List account_id,ring_id for every ring member.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--wide", is_flag=True, help="Print each explanation in full.")
@pass_context
def rings(lazy: _LazyContext, sweep_id: str | None, limit: int, members: bool, fmt: str,
          wide: bool) -> None:
    """List ranked rings (or, with --members, every account in a ring)."""
    context = lazy.reader()
    if context.store.read_sweeps().empty:
        raise GraphinvError(f"no sweep in {lazy.where()} yet: run `graphinv sweep`")
    if members:
        frame = context.members(sweep_id=sweep_id)[["account_id", "ring_id"]]
    else:
        frame = context.rings(sweep_id=sweep_id).head(limit)
    if fmt == "csv":
        frame = frame if members else frame.drop(columns=["features"])
        click.echo(csv_text(frame), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    elif members:
        listing = frame.map(visible_controls).to_string(index=False)
        console.print(listing, markup=False, highlight=False)
    else:
        console.print(_rings_table(frame, title="Rings (latest sweep)" if not sweep_id
                                   else f"Rings of {terminal_text(sweep_id)}",
                                   threshold=context.settings.scoring.threshold, wide=wide))


@cli.command("evaluate")
@click.option("--labels", "labels_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding labels.csv / labels.parquet (ground truth).")
@click.option("--top-k", default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@pass_context
def evaluate_command(lazy: _LazyContext, labels_dir: Path, top_k: int, fmt: str) -> None:
    """Score the latest sweep's rings against ground truth (best-match F1, ARI, top-k, benign)."""
    evaluation = lazy.reader().evaluate(labels_dir, top_k=top_k)
    if fmt == "json":
        click.echo(json.dumps(evaluation.to_dict(), indent=2))
    else:
        console.print(evaluation.table())


@cli.command("fit-weights")
@click.option("--labels", "labels_dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding labels (past enforcement or synthetic ground truth).")
@click.option("--from-decisions", is_flag=True,
              help="Instead: investigators' decisions (confirmed/actioned = extraction, "
                   "dismissed = benign; see graphinv review).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Write the fitted [scoring] settings to this TOML file (else print them).")
@click.option("--seed", default=0, show_default=True, type=int)
@pass_context
def fit_weights_command(lazy: _LazyContext, labels_dir: Path | None, from_decisions: bool,
                        out: Path | None, seed: int) -> None:
    """Fit scoring weights to labelled rings (logistic regression, cross-validated)."""
    if (labels_dir is None) == (not from_decisions):
        raise click.UsageError("give --labels FOLDER or --from-decisions")
    context = lazy.reader() if from_decisions else lazy.get()
    if from_decisions:
        from graphinv.investigate.review import decision_labels

        labels = decision_labels(context.store)
        if labels.empty:
            raise InputError("no decided rings yet: graphinv review RING --set-status …")
        result = context.fit_weights(labels=labels, seed=seed)
    else:
        result = context.fit_weights(labels_dir, seed=seed)
    console.print(
        f"Fitted on {result.n_rings:,} rings ({result.n_positive:,} extraction); weights in "
        f"use were from {context.settings.source}."
    )
    console.print(result.metrics.describe().loc[["mean", "min", "max"]].round(3).to_string())
    config = result.config()
    text = f"[scoring]\nthreshold = {config['threshold']}\n\n[scoring.weights]\n" + "".join(
        f"{name} = {weight}\n" for name, weight in config["weights"].items()
    )
    if out is None:
        click.echo(text, nl=False)
    else:
        write_text(out, text)
        console.print(
            f"Wrote {terminal_text(out)}; use it with --config {terminal_text(out)} "
            "or as ./graphinv.toml."
        )


def _rings_table(frame: pd.DataFrame, *, title: str, threshold: float | None = None,
                 wide: bool = False) -> Table:
    """Ranked rings; a rule under the last ring at or above ``threshold`` (flagged)."""
    import pandas as pd

    caption = "`graphinv ring RING_ID` explains one ring in full"
    if threshold is not None:
        caption = f"rings above the line score ≥ {threshold} (flagged); " + caption
    table = Table(title=title, caption=caption)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("ring", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("campaign", no_wrap=True)
    table.add_column("why (strongest signals)", min_width=30, overflow="fold")
    rows = list(frame.itertuples(index=False))
    for i, row in enumerate(rows):
        score = getattr(row, "score", float("nan"))
        why = str(getattr(row, "explanation", "") or "")
        following = getattr(rows[i + 1], "score", float("nan")) if i + 1 < len(rows) else None
        crosses = (threshold is not None and pd.notna(score) and score >= threshold
                   and following is not None and not (following >= threshold))
        table.add_row(
            str(row.rank),
            terminal_text(row.ring_id),
            "" if pd.isna(score) else f"{score:.2f}",
            str(row.size),
            terminal_text(getattr(row, "status", "") or ""),
            terminal_text(getattr(row, "campaign_id", "") or ""),
            terminal_text(why if wide else _shorten(why, WHY_WIDTH)),
            end_section=crosses,
        )
    return table


def _shorten(text: str, width: int) -> str:
    """At most ``width`` characters, cut at a word boundary (never mid-word), with ``…``."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ;,") + " …"


def _db_flag(lazy: _LazyContext) -> str:
    """The store option to repeat in a suggested command ('' for the default file)."""
    neo4j_uri, db_path, _ = lazy._args
    if neo4j_uri:
        return f" --neo4j {neo4j_uri}"
    return "" if Path(db_path) == Path("graphinv.duckdb") else f" --db {db_path}"


class _RetryCounter:
    """A logging filter that swallows the driver's retry warnings and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def filter(self, record: object) -> bool:
        if "will be retried" in str(getattr(record, "msg", "")):
            self.count += 1
            return False
        return True


def _shown(path: Path) -> str:
    """A path as the user would type it: ``./graphinv.duckdb`` for a bare file name."""
    return str(path) if path.is_absolute() or path.parent != Path(".") else f"./{path}"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@cli.command()
@pass_context
def unlock(lazy: _LazyContext) -> None:
    """Remove the store's write lock left by a load or sweep that can no longer release it
    (a lost machine). A lock of a dead process on this host is taken over anyway."""
    holder = lazy.get().store.break_lock()
    if holder is None:
        console.print("No write lock to remove (the embedded store's lock ends with its holder).")
    else:
        console.print(f"Removed the write lock of {holder.describe()}.", markup=False,
                      highlight=False)


for command in (queries, ring, case, review, indicators, browser_kit_command, ingest_command):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point.

    Stores (DuckDB and its write-ahead log), quarantine files, exports and the local
    server's files hold identifiers, so everything the command creates is owner-only. Set
    here, not in the group, so that invoking the group in-process leaves the caller's umask.
    """
    os.umask(0o077)
    cli(prog_name="graphinv")


if __name__ == "__main__":
    main()

