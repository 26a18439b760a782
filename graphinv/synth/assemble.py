"""From generated arrays to the input-contract tables (graphinv.schema.TABLES).

Traffic slices are capped at the account's hourly rate limit, summed into ``usage`` and into
the IP and template ``links``; public account ids follow sign-up order.

Examples
--------
>>> from graphinv.synth import generate
>>> platform = generate(preset="small", seed=1)
>>> set(platform.labels["kind"]) >= {"extraction", "card_testing", "free_tier_farming"}
True
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graphinv.schema import Platform
from graphinv.synth.arrays import dotted_quads, group_by, hex_ids, numbered, ranks_in_groups
from graphinv.synth.infra import Infrastructure, build_infrastructure
from graphinv.synth.params import SynthParams, resolve_params
from graphinv.synth.population import CARD_NONE, Population, build_population
from graphinv.synth.traffic import N_MODELS, Rows, build_traffic
from graphinv.synth.world import (
    CATEGORIES,
    COUNTRY_CODES,
    HOUR,
    KINDS,
    LITTLE_SHARED,
    MODELS,
    SIGNUP_PATHS,
    TRAITS,
    K,
    trait_names,
)

_GROUP_NAMES = {
    K["card_testing"]: ("cardtest_ring", 3),
    K["free_tier_farming"]: ("farm_ring", 3),
    K["enterprise_app"]: ("enterprise_", 5),
    K["university"]: ("university_", 4),
    K["office"]: ("office_", 5),
    K["household"]: ("household_", 6),
    K["heavy_user"]: ("heavy_", 6),
}


def generate(
    *, preset: str = "small", seed: int = 0, n_accounts: int | None = None, **overrides: object
) -> Platform:
    """Generate a synthetic AI-API platform with planted campaigns and ground truth.

    Parameters
    ----------
    preset
        ``small`` (tests, demo), ``medium`` (~100k accounts) or ``case-24k`` (1M accounts,
        ~24k fraudulent accounts in three campaigns).
    seed
        Same seed, same tables.
    n_accounts
        Platform size; the preset's absolute counts scale with it.
    **overrides
        Any field of :class:`graphinv.synth.params.SynthParams`.

    Returns
    -------
    Platform
        All seven tables of the input contract, ``labels`` included.

    Raises
    ------
    ConfigError
        Unknown preset or parameter, or a value out of range.

    Examples
    --------
    >>> p = generate(preset="small", seed=0, n_accounts=2_000)
    >>> len(p.accounts)
    2000
    """
    params = resolve_params(preset=preset, n_accounts=n_accounts, **overrides)
    return build_platform(params, seed=seed)


def build_platform(params: SynthParams, *, seed: int = 0) -> Platform:
    """Run the stages (population, infrastructure, traffic, assembly) for resolved params.

    Examples
    --------
    >>> from graphinv.synth.params import PRESETS
    >>> len(build_platform(PRESETS["small"], seed=3).labels) == PRESETS["small"].n_accounts
    True
    """
    # Independent streams per stage: changing one stage leaves the others' draws alone.
    r_pop, r_infra, r_traffic, r_out = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    pop = build_population(params, rng=r_pop)
    infra = build_infrastructure(pop, params, rng=r_infra)
    rows = build_traffic(pop, infra, params, rng=r_traffic)
    return assemble(pop, infra, rows, params, rng=r_out)


def _utc(seconds: np.ndarray, start: int) -> pd.Series:
    return pd.Series(
        (seconds + start).astype("datetime64[s]").astype("datetime64[us]")
    ).dt.tz_localize("UTC")


def _text(values: pa.Array) -> pd.Series:
    return pd.Series(values, dtype="str")


def _vocab(words: tuple[str, ...] | list[str], codes: np.ndarray) -> pd.Series:
    return _text(pa.array(list(words), pa.string()).take(pa.array(codes)))


def _aggregate(
    key: np.ndarray, t_first: np.ndarray, t_last: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order, starts, ukey = group_by(key)
    return (
        ukey,
        np.minimum.reduceat(t_first[order], starts) if len(starts) else t_first[:0],
        np.maximum.reduceat(t_last[order], starts) if len(starts) else t_last[:0],
        np.add.reduceat(count[order], starts) if len(starts) else count[:0],
    )


def _cap(rows: Rows, number: np.ndarray, limits: np.ndarray, w: int) -> tuple[Rows, np.ndarray]:
    """Scale each account-hour down to its rate limit; ``rows`` are sorted by key."""
    key = rows.key(number, w)
    ah = key // N_MODELS
    starts = np.flatnonzero(np.r_[True, ah[1:] != ah[:-1]])
    total = np.add.reduceat(rows.requests, starts)
    factor = np.minimum(1.0, limits[rows.acc[starts]] / total)
    over = np.flatnonzero(factor < 1)
    if not len(over):
        return rows, key
    # Only the few account-hours over the limit change.
    sizes = np.diff(np.r_[starts, len(ah)])
    idx = np.repeat(starts[over], sizes[over]) + ranks_in_groups(sizes[over])
    f = np.repeat(factor[over], sizes[over])
    req, inp, out = rows.requests.copy(), rows.input_tokens.copy(), rows.output_tokens.copy()
    new = np.floor(req[idx] * f).astype(np.int64)
    scale = new / np.maximum(req[idx], 1)
    req[idx], inp[idx], out[idx] = (
        new,
        (inp[idx] * scale).astype(np.int64),
        (out[idx] * scale).astype(np.int64),
    )
    capped = Rows(rows.acc, rows.hour, rows.model, req, inp, out, rows.ip, rows.tpl)
    keep = req > 0
    return Rows(*(getattr(capped, f.name)[keep] for f in fields(Rows))), key[keep]


def assemble(
    pop: Population,
    infra: Infrastructure,
    rows: Rows,
    params: SynthParams,
    *,
    rng: np.random.Generator,
) -> Platform:
    """Turn the stage outputs into a :class:`graphinv.schema.Platform`."""
    n, w = len(pop.kind), params.window_days * 24
    start = int(pd.Timestamp(params.window_start).timestamp())
    end = w * HOUR - 1
    number = pop.number
    width = max(7, len(str(n)))
    ids = numbered("acct_", np.arange(n + 1), width)  # ids[number] is the public id

    limits = np.where(
        pop.kind == K["enterprise_app"],
        params.enterprise_rate_limit_per_hour,
        params.rate_limit_per_hour,
    ).astype(float)
    rows, key = _cap(rows, number, limits, w)

    # usage: rows are sorted by key, so equal keys are adjacent.
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, int)
    u_acc, u_hour, u_model = rows.acc[starts], rows.hour[starts], rows.model[starts]
    usage = pd.DataFrame(
        {
            "account_id": _text(ids.take(pa.array(number[u_acc]))),
            "hour": _utc(u_hour * HOUR, start),
            "model": _vocab(MODELS, u_model),
            "requests": np.add.reduceat(rows.requests, starts),
            "input_tokens": np.add.reduceat(rows.input_tokens, starts),
            "output_tokens": np.add.reduceat(rows.output_tokens, starts),
        }
    )
    rows_per_acc = np.bincount(u_acc, minlength=n)
    last_hour = np.full(n, -1, dtype=np.int64)
    last_hour[u_acc] = u_hour  # sorted by hour within account: the last write wins

    # Requests land anywhere inside their hour.
    t = rows.hour * HOUR + rng.integers(0, HOUR, len(rows.hour))
    # (kind, public account number, value index, first seen, last seen, count)
    links: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    signup = infra.signup_ip >= 0
    ip_acc = np.r_[rows.acc, np.flatnonzero(signup)]
    ip_val = np.r_[rows.ip, infra.signup_ip[signup]]
    ip_t = np.r_[t, np.clip(pop.created[signup], None, end)]
    ip_n = np.r_[rows.requests, np.ones(signup.sum(), dtype=np.int64)]
    ok = ip_val >= 0
    links.append(("ip", *_link_rows(number, ip_acc[ok], ip_val[ok], ip_t[ok], ip_t[ok], ip_n[ok])))
    links.append(
        ("prompt_fingerprint", *_link_rows(number, rows.acc, rows.tpl, t, t, rows.requests))
    )
    c_acc, c_card, c_t0, c_tries = infra.card_links
    c_t0 = np.minimum(c_t0, end)
    active_until = np.where(last_hour[c_acc] >= 0, last_hour[c_acc] * HOUR + HOUR - 1, c_t0)
    c_last = np.where(c_tries > 0, c_t0, np.maximum(c_t0, active_until))
    c_n = np.where(c_tries > 0, c_tries, 1 + rows_per_acc[c_acc] // 5)
    links.append(("payment_method", *_link_rows(number, c_acc, c_card, c_t0, c_last, c_n)))

    values = {
        "ip": dotted_quads(infra.ip_int),
        "prompt_fingerprint": hex_ids("pf_", len(infra.tpl_category), rng, 6),
        "payment_method": hex_ids("pm_", len(infra.card_type), rng, 8),
    }
    used = {kind: np.flatnonzero(np.bincount(val, minlength=1)) for kind, _, val, *_ in links}
    c_acc, c_val, c_first, c_last, c_n = _clients(pop, last_hour, rows_per_acc, params, rng)
    links.append(("api_client", *_link_rows(number, c_acc, c_val, c_first, c_last, c_n)))
    values["api_client"] = pa.array(_client_names(params.api_clients), pa.string())
    link_frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "account_id": _text(ids.take(pa.array(num))),
                    "kind": _text(pa.repeat(pa.scalar(kind), len(num))),
                    "value": _text(values[kind].take(pa.array(val))),
                    "first_seen": _utc(first, start),
                    "last_seen": _utc(last, start),
                    "count": count.astype(np.int64),
                }
            )
            for kind, num, val, first, last, count in links
        ],
        ignore_index=True,
    )
    return Platform(
        accounts=_accounts(pop, number, ids, start, params),
        links=link_frame,
        usage=usage,
        ips=_ips(infra, values["ip"], used["ip"], rng),
        payment_methods=_cards(infra, values["payment_method"], used["payment_method"], rng),
        prompt_fingerprints=_templates(
            infra, values["prompt_fingerprint"], used["prompt_fingerprint"], rng
        ),
        labels=_labels(pop, infra, number, ids),
    )


def _client_names(n: int) -> list[str]:
    stems = ("python-sdk/1.", "node-sdk/4.", "httpx/0.2", "curl/8.", "go-sdk/0.", "java-sdk/2.")
    return [f"{stems[i % len(stems)]}{i // len(stems)}.{(7 * i) % 10}" for i in range(n)]


def _clients(
    pop: Population,
    last_hour: np.ndarray,
    rows_per_acc: np.ndarray,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """One API client (SDK and version) per account: request metadata.

    Most people run a handful of current SDKs; each campaign's tooling pins a rare, old one
    that a few benign stragglers also still run. Camouflaged members, and rings that share
    little, use popular ones.
    """
    n, m = len(pop.kind), params.api_clients
    zipf = 1.0 / np.arange(1, m + 1) ** 1.3
    client = rng.choice(m, n, p=zipf / zipf.sum())
    rare = rng.integers(m // 2, m, len(pop.campaign_names))
    ext = (pop.kind == K["extraction"]) & (
        pop.traits & np.uint32(1 << TRAITS.index("camouflage")) == 0
    )
    # Rings that share little run stock clients too.
    g_style = np.where(pop.group >= 0, pop.g_style[np.maximum(pop.group, 0)], 0)
    ext &= ~np.isin(g_style, LITTLE_SHARED)
    g_campaign = pop.g_campaign[np.maximum(pop.group, 0)]
    pinned = ext & (rng.random(n) < 0.9)
    client[pinned] = rare[g_campaign[pinned]]
    acc = np.arange(n)
    end = params.window_days * 24 * HOUR - 1
    first = np.clip(pop.created + rng.integers(0, 3 * HOUR, n), 0, end)
    last = np.where(last_hour >= 0, last_hour * HOUR + rng.integers(0, HOUR, n), first)
    first = np.minimum(first, last)
    return acc, client, first, last, np.maximum(rows_per_acc, 1)


def _link_rows(
    number: np.ndarray,
    acc: np.ndarray,
    val: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(public account number, value index, first, last, count), one per account and value."""
    n_val = int(val.max()) + 1 if len(val) else 1
    key, f, la, c = _aggregate(number[acc] * n_val + val, first, last, count)
    return key // n_val, key % n_val, f, la, c


def _accounts(
    pop: Population, number: np.ndarray, ids: pa.Array, start: int, params: SynthParams
) -> pd.DataFrame:
    order = np.argsort(number)
    tier = np.where(pop.card_mode == CARD_NONE, 0, 1)
    tier[np.isin(pop.signup_path, [2, 3])] = 2
    tier[pop.kind == K["enterprise_app"]] = 3
    status = np.where(pop.traits & np.uint32(1 << TRAITS.index("banned")) > 0, 2, 0)
    status[pop.suspended] = 1
    orgs = numbered("org_", np.arange(max(pop.n_orgs, 1)), 6)
    org = pop.org[order]
    org_ids = orgs.take(pa.array(np.maximum(org, 0), mask=org < 0))
    return pd.DataFrame(
        {
            "account_id": _text(ids.take(pa.array(number[order]))),
            "created_at": _utc(pop.created[order], start),
            "email_domain": _vocab(pop.domains, pop.domain[order]),
            "country": _vocab(COUNTRY_CODES, pop.country[order]),
            "org_id": _text(org_ids),
            "signup_path": _vocab(SIGNUP_PATHS, pop.signup_path[order]),
            "verification_tier": _vocab(
                ("free", "standard", "verified", "enterprise"), tier[order]
            ),
            "status": _vocab(("active", "suspended", "banned"), status[order]),
        }
    )


def _labels(
    pop: Population, infra: Infrastructure, number: np.ndarray, ids: pa.Array
) -> pd.DataFrame:
    order = np.argsort(number)
    g_name = []
    for kind, num, camp in zip(pop.g_kind, pop.g_number, pop.g_campaign, strict=True):
        if kind == K["extraction"]:
            g_name.append(f"{pop.campaign_names[camp]}_ring{num:03d}")
        else:
            stem, width = _GROUP_NAMES[int(kind)]
            g_name.append(f"{stem}{num:0{width}d}")
    group = pop.group[order]
    ring = pa.array([*g_name, ""], pa.string()).take(
        pa.array(np.where(group >= 0, group, len(g_name)))
    )
    g_camp = np.where(pop.g_campaign >= 0, pop.g_campaign, len(pop.campaign_names))
    camp = np.where(group >= 0, g_camp[np.maximum(group, 0)], len(pop.campaign_names))
    traits = (pop.traits | infra.traits)[order]
    combos, inv = np.unique(traits, return_inverse=True)
    return pd.DataFrame(
        {
            "account_id": _text(ids.take(pa.array(number[order]))),
            "ring_id": _text(ring),
            "kind": _vocab(KINDS, pop.kind[order]),
            "campaign_id": _vocab([*pop.campaign_names, ""], camp),
            "traits": _vocab([trait_names(m) for m in combos], inv),
        }
    )


def _shuffled(used: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Table order must not echo generation order (ring pools were allocated together).
    return rng.permutation(used)


def _ips(infra: Infrastructure, text: pa.Array, used: np.ndarray, rng) -> pd.DataFrame:
    i = _shuffled(used, rng)
    prefix = dotted_quads(infra.ip_int[i] & ~np.int64(255))
    return pd.DataFrame(
        {
            "ip": _text(text.take(pa.array(i))),
            "asn": infra.ip_asn[i].astype(np.int64),
            "prefix": _text(pc.binary_join_element_wise(prefix, "/24", "")),
            "is_datacenter": infra.ip_datacenter[i].astype(bool),
            "is_proxy": infra.ip_proxy[i].astype(bool),
            "country": _vocab(COUNTRY_CODES, infra.ip_country[i]),
        }
    )


def _cards(infra: Infrastructure, text: pa.Array, used: np.ndarray, rng) -> pd.DataFrame:
    i = _shuffled(used, rng)
    b = infra.card_bin[i]
    bins = pa.array(b.astype(np.int64)).cast(pa.string())
    return pd.DataFrame(
        {
            "fingerprint": _text(text.take(pa.array(i))),
            "type": _vocab(("card", "paypal", "invoice"), infra.card_type[i]),
            "bin": _text(pc.if_else(pa.array(b < 0), pa.scalar(None, pa.string()), bins)),
            "issuer_country": _vocab(COUNTRY_CODES, infra.card_country[i]),
            "prepaid": infra.card_prepaid[i].astype(bool),
        }
    )


def _templates(infra: Infrastructure, text: pa.Array, used: np.ndarray, rng) -> pd.DataFrame:
    i = _shuffled(used, rng)
    return pd.DataFrame(
        {
            "fingerprint": _text(text.take(pa.array(i))),
            "category": _vocab(CATEGORIES, infra.tpl_category[i]),
            "elicits_reasoning": infra.tpl_reasoning[i].astype(bool),
            "template_tokens": infra.tpl_tokens[i].astype(np.int64),
        }
    )
