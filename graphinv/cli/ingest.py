"""``graphinv ingest LOGS OUT``: raw request logs to a folder in the input contract.

A standalone click command; :mod:`graphinv.cli.main` registers it. Heavy modules load
inside the command.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from graphinv.errors import ConfigError

console = Console(soft_wrap=True)


@click.command("ingest")
@click.argument("logs", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--base", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Account export in the input contract (accounts; optional links of other "
              "kinds, ips, payment_methods, labels) copied into OUT; log rows of other "
              "accounts are quarantined.")
@click.option("--pseudonymise", is_flag=True,
              help="Write keyed HMACs instead of IPs, user agents, fingerprints and cards "
              "(key in GRAPHINV_PSEUDONYMISE_KEY; refuses to run without it).")
@click.option("--max-request-bytes", default=1 << 20, show_default=True, type=int,
              help="Requests larger than this are quarantined.")
@click.option("--assignments", is_flag=True,
              help="Also write OUT/ingest_state/assignments.parquet (request id → "
              "fingerprints) for evaluation.")
@click.option("--workers", type=click.IntRange(min=0),
              show_default="the CPUs this process may use, at most 2",
              help="Threads (or processes, see --parallel) that parse, validate and "
              "fingerprint chunks while the main process clusters (0: all in one thread; the "
              "output is the same for any number).")
@click.option("--parallel", type=click.Choice(["threads", "processes"]),
              show_default="processes where the platform can fork, else threads",
              help="Workers as forked processes (each prepared chunk handed back as arrays) "
              "or threads (nothing copied, but they share one GIL).")
@click.option("--chunk-mb", default=64, show_default=True, type=click.IntRange(min=1),
              help="JSON read per chunk; smaller needs less memory, larger less CPU.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the report as JSON here ('-' for stdout).")
def ingest_command(logs: tuple[Path, ...], out: Path, base: Path | None, pseudonymise: bool,
                   max_request_bytes: int, assignments: bool, workers: int | None,
                   parallel: str | None, chunk_mb: int, json_path: Path | None) -> None:
    """Read request logs (LOGS: .jsonl, .jsonl.gz, .parquet files or folders) and write
    usage, links (ip, api_client, prompt_fingerprint) and prompt_fingerprints to OUT.

    Prompt text is never written. Running again with new log files appends to OUT (files
    already ingested are skipped). Exit status 0 when every row was ingested, 3 when some
    went to OUT/quarantine/request_logs.csv.
    """
    from graphinv.ingest.logs import ingest_logs
    from graphinv.ingest.pseudonymise import ENV_KEY, key_from_env

    key = None
    if pseudonymise:
        key = key_from_env()
        if key is None:
            raise ConfigError(f"--pseudonymise needs the key in {ENV_KEY} (unset or empty)")
    if max_request_bytes < 1:
        raise click.BadParameter("must be at least 1", param_hint="--max-request-bytes")
    with console.status(f"Ingesting {len(logs)} log path(s) into {out}…"):
        report = ingest_logs(list(logs), out, base=base, pseudonymise_key=key,
                             max_request_bytes=max_request_bytes,
                             keep_assignments=assignments, workers=workers,
                             parallel=parallel, chunk_bytes=chunk_mb << 20)
    table = Table(title=f"graphinv ingest → {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("files ingested", f"{len(report.files):,}"),
        ("files skipped (already ingested)", f"{len(report.skipped_files):,}"),
        ("requests read", f"{report.requests_read:,}"),
        ("requests ingested", f"{report.requests_ingested:,}"),
        ("requests quarantined", f"{report.requests_quarantined:,}"),
        ("free-form texts (no template)", f"{report.free_form_requests:,}"),
        ("templates (new)", f"{report.templates:,} ({report.new_templates:,})"),
        *((f"{name} rows", f"{n:,}") for name, n in report.rows_written.items()),
        ("time", f"{report.seconds:.1f} s, {report.rate:,.0f} requests/s"),
        ("peak memory", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    if report.quarantine_file:
        table.caption = f"quarantine: {report.quarantine_file}"
    console.print(table)
    if json_path is not None:
        text = json.dumps(report.to_dict(), indent=2)
        if str(json_path) == "-":
            click.echo(text)
        else:
            json_path.write_text(text + "\n")
    sys.exit(report.exit_code)
