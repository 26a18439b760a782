"""Indicators to share with other platforms: a ring's cards, IPs and templates as STIX 2.1.

Values never leave raw: each is ``HMAC-SHA256(key, kind + "\\x1f" + value)`` (the same
construction as :mod:`graphinv.ingest.pseudonymise`), with a key the sharing partners agree
on, so a partner holding the key can check its own cards and IPs against the list while
nobody else learns them. Only the ring's evidence identifiers are shared (used by two or
more members, mostly by ring members): a hub such as a popular SDK or VPN exit is not.

The bundle holds an ``identity`` (who shares), one ``indicator`` per identifier (pattern on
the custom observable ``x-graphinv-keyed-identifier``) and a ``grouping`` of them carrying
the ring's score, rank, size and explanation, built with the ``stix2`` library.

Examples
--------
>>> key = b"shared-secret-key-0123"
>>> keyed_value("203.0.113.7", kind="ip", key=key)[:16]
'd7fa9cfc35b72b58'
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from graphinv.errors import ConfigError
from graphinv.ingest.pseudonymise import MIN_KEY_BYTES, pseudonym

if TYPE_CHECKING:
    from graphinv.investigate.case import Case

ENV_KEY = "GRAPHINV_INDICATOR_KEY"
SHARED_KINDS = ("payment_method", "ip", "prompt_fingerprint")
HASH_NAME = "HMAC-SHA256(key, kind + 0x1f + value), hex"
_NOUNS = {"payment_method": "payment method", "ip": "IP", "prompt_fingerprint": "prompt template"}


def indicator_key(env: str = ENV_KEY) -> bytes:
    """The sharing key from the environment variable ``env``.

    Raises
    ------
    ConfigError
        Unset or shorter than 16 bytes: indicators are never written unkeyed.
    """
    text = os.environ.get(env)
    if not text:
        raise ConfigError(f"set {env} to the key agreed with the partners you share with "
                          "(indicators are never written as raw values)")
    key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{env} must be at least {MIN_KEY_BYTES} bytes long")
    return key


def keyed_value(value: str, *, kind: str, key: bytes) -> str:
    """The keyed hash of one identifier value (see the module docstring)."""
    return pseudonym(value, kind=kind, key=key)


def ring_indicators(case: Case, *, key: bytes, producer: str = "graphinv user") -> Any:
    """A STIX 2.1 bundle of the ring's evidence cards, IPs and templates, keyed.

    Parameters
    ----------
    case
        The ring's case (its evidence identifiers, score and explanation).
    key
        The sharing key (:func:`indicator_key`).
    producer
        The name of the sharing organisation (the bundle's ``identity``).

    Returns
    -------
    stix2.Bundle
        ``str(bundle)`` is the JSON to share.
    """
    import stix2

    ring = case.ring
    evidence = case.evidence_identifiers
    evidence = evidence.loc[evidence["kind"].isin(SHARED_KINDS)]
    identity = stix2.Identity(name=producer, identity_class="organization")
    swept = case.provenance.get("sweep_at")
    valid_from = pd.Timestamp(swept).to_pydatetime() if swept else datetime.now()
    confidence = round(float(ring["score"]) * 100) if pd.notna(ring["score"]) else None
    indicators = []
    for kind, value, members, outside in evidence[
        ["kind", "value", "members", "outside_ring"]
    ].itertuples(index=False):
        digest = keyed_value(str(value), kind=kind, key=key)
        indicators.append(stix2.Indicator(
            name=f"{_NOUNS[kind]} of ring {ring['ring_id']}",
            description=(f"A {_NOUNS[kind]} used by {members} of the ring's "
                         f"{ring['size']} accounts ({outside} other accounts); value as "
                         f"{HASH_NAME}."),
            pattern=(f"[x-graphinv-keyed-identifier:kind = '{kind}' AND "
                     f"x-graphinv-keyed-identifier:hmac_sha256 = '{digest}']"),
            pattern_type="stix",
            indicator_types=["malicious-activity"],
            valid_from=valid_from,
            confidence=confidence,
            created_by_ref=identity.id,
            allow_custom=True,
            x_graphinv_kind=kind,
            x_graphinv_hash=HASH_NAME,
        ))
    grouping = stix2.Grouping(
        name=f"Account ring {ring['ring_id']} (model extraction)",
        description=str(ring["explanation"] or ""),
        context="suspicious-activity",
        object_refs=[i.id for i in indicators] or [identity.id],
        created_by_ref=identity.id,
        confidence=confidence,
        allow_custom=True,
        x_graphinv_ring_id=str(ring["ring_id"]),
        x_graphinv_score=None if confidence is None else round(float(ring["score"]), 4),
        x_graphinv_rank=int(ring["rank"]),
        x_graphinv_accounts=int(ring["size"]),
        x_graphinv_sweep_id=str(ring["sweep_id"]),
        x_graphinv_lineage=str(ring["status"] or "new"),
    )
    return stix2.Bundle(identity, *indicators, grouping, allow_custom=True)
