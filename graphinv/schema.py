"""The input contract: which tables a platform export holds, and the columns of each.

One generic ``links`` table carries every identifier an account uses (card, IP, prompt
fingerprint, device, …), so a new identifier kind is a configuration change, not a code
change. Timestamps are UTC. The synthetic generator writes exactly these tables and the
loader validates against them.

Examples
--------
>>> from graphinv.schema import TABLES
>>> [c.name for c in TABLES["links"].columns]
['account_id', 'kind', 'value', 'first_seen', 'last_seen', 'count']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

ColumnType = Literal["string", "timestamp", "int", "float", "bool"]

# Kinds with their own node label and relationship type in Neo4j; any other kind declared
# in config becomes (:Identifier {kind}) through -[:USES]->.
CORE_LINK_KINDS = ("payment_method", "ip", "prompt_fingerprint")


@dataclass(frozen=True)
class Column:
    """One column of an input table."""

    name: str
    type: ColumnType
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One input table: its columns, the columns that identify a row, and whether it must exist."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    required: bool = True
    description: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            (
                Column("account_id", "string", description="unique account id"),
                Column("created_at", "timestamp", description="sign-up time, UTC"),
                Column("email_domain", "string", False),
                Column("country", "string", False, "ISO 3166-1 alpha-2"),
                Column("org_id", "string", False, "organisation the key belongs to"),
                Column(
                    "signup_path",
                    "string",
                    False,
                    "self_serve, education, startup_program, research_access, enterprise, …",
                ),
                Column("verification_tier", "string", False),
                Column("status", "string", False, "active, suspended, banned, …"),
            ),
            key=("account_id",),
            description="one row per account (API key holder)",
        ),
        TableSpec(
            "links",
            (
                Column("account_id", "string"),
                Column("kind", "string", description="payment_method, ip, prompt_fingerprint, …"),
                Column("value", "string", description="the identifier (card fingerprint, IP, …)"),
                Column("first_seen", "timestamp"),
                Column("last_seen", "timestamp"),
                Column("count", "int", description="times seen between first and last"),
            ),
            key=("account_id", "kind", "value"),
            description="account uses identifier",
        ),
        TableSpec(
            "usage",
            (
                Column("account_id", "string"),
                Column("hour", "timestamp", description="start of the hour, UTC"),
                Column("model", "string"),
                Column("requests", "int"),
                Column("input_tokens", "int"),
                Column("output_tokens", "int"),
            ),
            key=("account_id", "hour", "model"),
            description="hourly traffic aggregates; only active hours",
        ),
        TableSpec(
            "ips",
            (
                Column("ip", "string"),
                Column("asn", "int", False),
                Column("prefix", "string", False),
                Column("is_datacenter", "bool", False),
                Column("is_proxy", "bool", False),
                Column("country", "string", False),
            ),
            key=("ip",),
            required=False,
            description="attributes of IP values in links",
        ),
        TableSpec(
            "payment_methods",
            (
                Column("fingerprint", "string"),
                Column("type", "string", False, "card, paypal, …"),
                Column("bin", "string", False, "first 6 digits of a card"),
                Column("issuer_country", "string", False),
                Column("prepaid", "bool", False),
            ),
            key=("fingerprint",),
            required=False,
            description="attributes of payment_method values in links",
        ),
        TableSpec(
            "prompt_fingerprints",
            (
                Column("fingerprint", "string"),
                Column("category", "string", False, "coding, math, agentic, chat, …"),
                Column("elicits_reasoning", "bool", False),
                Column("template_tokens", "int", False),
            ),
            key=("fingerprint",),
            required=False,
            description="attributes of prompt_fingerprint values in links",
        ),
        TableSpec(
            "labels",
            (
                Column("account_id", "string"),
                Column("ring_id", "string", description="true ring / benign structure id"),
                Column(
                    "kind",
                    "string",
                    description="extraction, card_testing, free_tier_farming, household, …",
                ),
                Column("campaign_id", "string", False),
                Column(
                    "traits",
                    "string",
                    False,
                    "semicolon-separated traps the account sits in: cgnat, vpn, office_nat, "
                    "university_nat, camouflage, …",
                ),
            ),
            key=("account_id",),
            required=False,
            description="ground truth or past enforcement; never read by the detector",
        ),
    )
}


@dataclass(frozen=True)
class Platform:
    """A platform's tables in memory, as pandas DataFrames with the columns of ``TABLES``.

    Timestamps are tz-aware UTC, ids are strings. Optional tables are None when absent.
    """

    accounts: pd.DataFrame
    links: pd.DataFrame
    usage: pd.DataFrame
    ips: pd.DataFrame | None = None
    payment_methods: pd.DataFrame | None = None
    prompt_fingerprints: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables that are present, by name."""
        return {
            name: frame
            for name in TABLES
            if (frame := getattr(self, name)) is not None
        }
