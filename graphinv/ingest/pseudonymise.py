"""Keyed pseudonyms for identifier values, so raw IPs and card fingerprints stay out of the graph.

Each value becomes ``HMAC-SHA256(key, kind + "\\x1f" + value)`` in hex. The same value of the
same kind always gets the same pseudonym under one key, in ``links`` and in the attribute
tables alike, so sharing (what detection needs) survives while the raw value does not.
Without the key a pseudonym cannot be reversed or recomputed from a guessed value; keep the
key in a secret store and pass it through ``GRAPHINV_PSEUDONYMISE_KEY``.

Examples
--------
>>> pseudonym("203.0.113.7", kind="ip", key=b"0123456789abcdef")[:16]
'0d94f734ee83d96f'
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os

import pandas as pd

from graphinv.errors import ConfigError
from graphinv.schema import Platform

ENV_KEY = "GRAPHINV_PSEUDONYMISE_KEY"
MIN_KEY_BYTES = 16

# (table, column, kind): attribute columns that hold the same values as links of that kind.
# An IP prefix reveals the network as much as the IP does, so it is keyed too.
ATTRIBUTE_COLUMNS = (
    ("ips", "ip", "ip"),
    ("ips", "prefix", "ip_prefix"),
    ("payment_methods", "fingerprint", "payment_method"),
    ("prompt_fingerprints", "fingerprint", "prompt_fingerprint"),
)


def key_from_env() -> bytes | None:
    """The key in ``GRAPHINV_PSEUDONYMISE_KEY`` (UTF-8), or None when it is unset.

    Raises
    ------
    ConfigError
        The key is shorter than 16 bytes (too weak to stop guessing IPs, which are few).
    """
    text = os.environ.get(ENV_KEY)
    if not text:
        return None
    key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{ENV_KEY} must be at least {MIN_KEY_BYTES} bytes long")
    return key


def pseudonym(value: str, *, kind: str, key: bytes) -> str:
    """The pseudonym of one identifier value of one kind."""
    message = f"{kind}\x1f{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def pseudonymise(platform: Platform, *, key: bytes) -> Platform:
    """Replace identifier values in ``links`` and the attribute tables with their pseudonyms.

    Account ids, timestamps and counts are left alone.

    Examples
    --------
    >>> links = pd.DataFrame({"account_id": ["a"], "kind": ["ip"], "value": ["203.0.113.7"]})
    >>> ips = pd.DataFrame({"ip": ["203.0.113.7"], "prefix": [None]})
    >>> p = pseudonymise(Platform(pd.DataFrame(), links, pd.DataFrame(), ips=ips),
    ...                  key=b"0123456789abcdef")
    >>> p.links["value"].item() == p.ips["ip"].item(), p.ips["prefix"].isna().item()
    (True, True)
    """
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes")
    changes: dict[str, pd.DataFrame] = {}
    links = platform.links.copy()
    # Hash each distinct (kind, value) once: identifier values repeat across many accounts.
    for kind, rows in links.groupby("kind", sort=False).groups.items():
        links.loc[rows, "value"] = _keyed(links.loc[rows, "value"], kind=str(kind), key=key)
    changes["links"] = links
    for table, column, kind in ATTRIBUTE_COLUMNS:
        frame = changes.get(table, getattr(platform, table))
        if frame is None or column not in frame:
            continue
        frame = frame.copy()
        frame[column] = _keyed(frame[column], kind=kind, key=key)
        changes[table] = frame
    return dataclasses.replace(platform, **changes)


def _keyed(values: pd.Series, *, kind: str, key: bytes) -> pd.Series:
    distinct = values.dropna().unique()
    mapping = {v: pseudonym(str(v), kind=kind, key=key) for v in distinct}
    return values.map(mapping).astype("str")
