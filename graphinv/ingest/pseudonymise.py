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
from graphinv.schema import Platform, Quarantine

ENV_KEY = "GRAPHINV_PSEUDONYMISE_KEY"
MIN_KEY_BYTES = 16
KEY_ID_MESSAGE = b"graphinv pseudonymisation key id v1"

# (table, column, kind): attribute columns that hold the same values as links of that kind.
# An IP prefix reveals the network as much as the IP does, so it is keyed too.
ATTRIBUTE_COLUMNS = (
    ("ips", "ip", "ip"),
    ("ips", "prefix", "ip_prefix"),
    ("payment_methods", "fingerprint", "payment_method"),
    ("prompt_fingerprints", "fingerprint", "prompt_fingerprint"),
)


def key_from_env() -> bytes:
    """The key in ``GRAPHINV_PSEUDONYMISE_KEY`` (UTF-8), for a load that asked to pseudonymise.

    Fails closed: asking to pseudonymise without a usable key is an error, never a load of
    raw values.

    Raises
    ------
    ConfigError
        The key is unset, empty or shorter than 16 bytes (too weak to stop guessing IPs,
        which are few).
    """
    text = os.environ.get(ENV_KEY)
    if text is None or not text.strip():
        state = "unset" if text is None else "empty"
        raise ConfigError(
            f"pseudonymisation was asked for but {ENV_KEY} is {state}; set it to a secret of "
            f"at least {MIN_KEY_BYTES} bytes (nothing was loaded)"
        )
    key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{ENV_KEY} must be at least {MIN_KEY_BYTES} bytes long")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key: HMAC of a fixed text under it; the key stays secret.

    A store records it to refuse a later load under another key (whose pseudonyms would
    never match the stored ones).

    Examples
    --------
    >>> key_id(b"0123456789abcdef")
    '4280b74476c8f73c'
    """
    return hmac.new(key, KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


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


def pseudonymise_quarantine(quarantine: Quarantine, *, key: bytes) -> Quarantine:
    """Quarantined rows with the same identifier columns keyed as in :func:`pseudonymise`.

    Quarantine files hold a row's original values as text; under pseudonymisation they
    must not keep the raw identifiers the store never sees. A link's value is keyed with
    the row's own (stripped) kind, valid or not, so a fixed row matches the loaded one.

    Examples
    --------
    >>> rows = pd.DataFrame({"reason": ["x"], "kind": [" ip"], "value": ["203.0.113.7"]})
    >>> q = pseudonymise_quarantine(Quarantine({"links": rows}), key=b"0123456789abcdef")
    >>> q.rows["links"]["value"].item() == pseudonym("203.0.113.7", kind="ip",
    ...                                                key=b"0123456789abcdef")
    True
    """
    changed: dict[str, pd.DataFrame] = {}
    for table, frame in quarantine.rows.items():
        frame = frame.copy()
        if table == "links" and "value" in frame:
            kinds = frame["kind"].astype("str").str.strip() if "kind" in frame else ""
            frame["value"] = [
                pseudonym(str(v).strip(), kind=str(k), key=key) if _present(v) else v
                for v, k in zip(frame["value"], pd.Series(kinds, index=frame.index), strict=True)
            ]
        for attribute_table, column, kind in ATTRIBUTE_COLUMNS:
            if table == attribute_table and column in frame:
                frame[column] = [
                    pseudonym(str(v).strip(), kind=kind, key=key) if _present(v) else v
                    for v in frame[column]
                ]
        changed[table] = frame
    return Quarantine(changed)


def _present(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _keyed(values: pd.Series, *, kind: str, key: bytes) -> pd.Series:
    distinct = values.dropna().unique()
    mapping = {v: pseudonym(str(v), kind=kind, key=key) for v in distinct}
    return values.map(mapping).astype("str")
