"""Load rate into each store for a synthetic platform (a benchmark, not a test).

Builds a platform with numpy (about 10 links and 4 usage hours per account; identifier
pools sized so cards are shared by a few accounts and IPs by many), then times:

* the embedded store (DuckDB file),
* Neo4j over Bolt (batched ``UNWIND $rows``, first load into an empty graph, then a
  reload of the same frames, which MERGEs every row and changes nothing),
* the offline ``neo4j-admin database import full`` path.

Neo4j runs in a throw-away local server (ports 17688/17475) so the shared one is untouched.
Besides the whole load's rate, the table gives the rate of the relationship step alone
(``links s``, ``link rels/s``: links written once both ends exist), and the 1-minute load
average right after each step: on a shared machine it says how much CPU the server had.

Run::

    .venv/bin/python bench/bench_load.py --accounts 100000 --batch-size 20000
    .venv/bin/python bench/bench_load.py --preset case-24k --skip-bulk --skip-reload
"""

from __future__ import annotations

import argparse
import os
import platform as host
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from graphinv.schema import TABLES, Platform, conform
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j.bulk import bulk_import
from graphinv.stores.neo4j.local import LocalNeo4j
from graphinv.stores.neo4j.store import DEFAULT_WRITERS, Neo4jStore

JARS = Path(__file__).resolve().parents[1] / ".neo4j" / "lib"
START = np.datetime64("2024-01-01T00:00:00", "s")


def synthetic(n_accounts: int, seed: int = 0) -> Platform:
    """A platform of ``n_accounts`` with ~10 links and ~4 usage rows per account."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("acct-", np.arange(n_accounts).astype(str)).astype(object)
    created = START + rng.integers(0, 300 * 86400, n_accounts).astype("timedelta64[s]")
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "created_at": pd.to_datetime(created, utc=True),
            "country": rng.choice(["US", "DE", "IN", "BR", "GB"], n_accounts),
            "signup_path": rng.choice(["self_serve", "education", "startup_program"], n_accounts),
        }
    )
    parts = []
    # (kind, links per account, pool size): cards are shared by ~2, IPs by ~5, templates by many.
    for kind, per, pool in (
        ("payment_method", 1, n_accounts // 2),
        ("ip", 5, n_accounts),
        ("prompt_fingerprint", 3, max(1000, n_accounts // 50)),
        ("device", 1, n_accounts // 2),
    ):
        account = np.repeat(np.arange(n_accounts), per)
        value = rng.integers(0, pool, len(account))
        first = START + rng.integers(0, 300 * 86400, len(account)).astype("timedelta64[s]")
        last = first + rng.integers(0, 30 * 86400, len(account)).astype("timedelta64[s]")
        part = pd.DataFrame(
            {
                "account_id": ids[account],
                "kind": kind,
                "value": np.char.add(f"{kind[:3]}-", value.astype(str)).astype(object),
                "first_seen": pd.to_datetime(first, utc=True),
                "last_seen": pd.to_datetime(last, utc=True),
                "count": rng.integers(1, 500, len(account)),
            }
        )
        parts.append(part.drop_duplicates(["account_id", "kind", "value"]))
    links = pd.concat(parts, ignore_index=True)
    hours = 4
    account = np.repeat(np.arange(n_accounts), hours)
    offset = np.tile(np.arange(hours), n_accounts) + rng.integers(0, 5000, n_accounts).repeat(hours)
    usage = pd.DataFrame(
        {
            "account_id": ids[account],
            "hour": pd.to_datetime(START + (offset * 3600).astype("timedelta64[s]"), utc=True),
            "model": "model-a",
            "requests": rng.integers(1, 100, len(account)),
            "input_tokens": rng.integers(10, 10_000, len(account)),
            "output_tokens": rng.integers(10, 10_000, len(account)),
        }
    )
    return Platform(
        conform(accounts, TABLES["accounts"]),
        conform(links, TABLES["links"]),
        conform(usage, TABLES["usage"]),
    )


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        host.processor(),
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {ram:.0f} GiB RAM, {cpu}"


def platforms(args: argparse.Namespace) -> Iterator[tuple[int, Platform]]:
    """The platforms to load: a synth preset when asked, else numpy-built ones per size."""
    if args.preset:
        from graphinv.synth import generate

        platform = generate(preset=args.preset, seed=0)
        yield len(platform.accounts), platform
        return
    for n in args.accounts:
        yield n, synthetic(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000])
    parser.add_argument("--preset", help="load graphinv.synth.generate(preset=…) instead")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=DEFAULT_WRITERS)
    parser.add_argument("--skip-bulk", action="store_true")
    parser.add_argument("--skip-reload", action="store_true")
    args = parser.parse_args()
    console = Console(width=160)
    table = Table(
        title=f"graphinv load benchmark — {machine()}, batch {args.batch_size:,}, "
        f"{args.writers} writer session(s)"
    )
    columns = ("accounts", "store", "rows", "relationships", "seconds", "rows/s", "rels/s",
               "links s", "link rels/s", "load avg")
    for column in columns:
        table.add_column(column, justify="left" if column == "store" else "right")

    def add(
        n: int, name: str, rows: int, rels: int, seconds: float, links: tuple[int, float] = (0, 0)
    ) -> None:
        load = os.getloadavg()[0]
        written, link_seconds = links
        link_rate = f"{written / link_seconds:,.0f}" if link_seconds else ""
        table.add_row(
            f"{n:,}",
            name,
            f"{rows:,}",
            f"{rels:,}",
            f"{seconds:.1f}",
            f"{rows / seconds:,.0f}",
            f"{rels / seconds:,.0f}",
            f"{link_seconds:.1f}" if link_seconds else "",
            link_rate,
            f"{load:.1f}",
        )
        console.print(f"{name}: {rows:,} rows, {rels:,} rels in {seconds:.1f} s (load {load:.1f})")

    for n, platform in platforms(args):
        rows = sum(len(f) for f in platform.tables().values())
        n_links = len(platform.links)
        console.print(f"{n:,} accounts: {rows:,} rows, {n_links:,} links")
        with tempfile.TemporaryDirectory() as tmp:
            with EmbeddedStore(Path(tmp) / "bench.duckdb") as store:
                stats = store.load(platform, progress=False)
                add(n, "embedded (DuckDB)", stats.total_rows, stats.relationships, stats.seconds)
                stats = store.load(platform, progress=False)
                add(
                    n,
                    "embedded reload (merge)",
                    stats.total_rows,
                    stats.relationships,
                    stats.seconds,
                )
            server = LocalNeo4j(
                home=Path(tmp) / "neo4j",
                jars=JARS,
                bolt_port=17688,
                http_port=17475,
                heap="2g",
                pagecache="2g",
            )
            try:
                server.start()
                with Neo4jStore.connect(
                    server.bolt_uri, auth=server.auth, batch_size=args.batch_size,
                    writers=args.writers,
                ) as store:
                    stats = store.load(platform, progress=True)
                    add(
                        n,
                        "neo4j Bolt, first load",
                        stats.total_rows,
                        stats.relationships,
                        stats.seconds,
                        (n_links, stats.steps["links"]),
                    )
                    if not args.skip_reload:
                        links_only = Platform(
                            platform.accounts.iloc[:0], platform.links, platform.usage.iloc[:0]
                        )
                        stats = store.load(links_only, progress=True)
                        add(
                            n,
                            "neo4j Bolt, links reload (MERGE)",
                            stats.total_rows,
                            stats.relationships,
                            stats.seconds,
                            (n_links, stats.steps["links"]),
                        )
            finally:
                server.stop()
            if not args.skip_bulk:
                bulk = LocalNeo4j(
                    home=Path(tmp) / "neo4j-bulk", jars=JARS, bolt_port=17688, http_port=17475
                )
                result = bulk_import(platform, server=bulk, heap="2g")
                add(n, "neo4j-admin import (offline)", rows, result.relationships, result.seconds)
    console.print(table)


if __name__ == "__main__":
    main()
