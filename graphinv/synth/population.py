"""Who is on the platform: accounts, the structures they belong to, and their sign-ups.

Accounts are laid out in blocks (extraction rings, abuse rings, benign structures, plain
individuals); public ids are assigned later in order of sign-up time, so the layout leaks
nothing.

Examples
--------
>>> import numpy as np
>>> from graphinv.synth.params import PRESETS
>>> pop = build_population(PRESETS["small"], rng=np.random.default_rng(0))
>>> len(pop.kind) == PRESETS["small"].n_accounts
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphinv.errors import ConfigError
from graphinv.synth.arrays import partition
from graphinv.synth.params import STYLE_COUNTS, SynthParams
from graphinv.synth.world import (
    COUNTRY_WEIGHTS,
    DAY,
    DISPOSABLE_MAIL,
    FREE_MAIL,
    FREE_MAIL_WEIGHTS,
    HOUR,
    PROXY_COUNTRIES,
    SIGNUP_PATHS,
    STYLES,
    TRAIT,
    K,
    S,
)

# How an account pays: what the infrastructure stage builds for it.
CARD_NONE, CARD_OWN, CARD_GROUP, CARD_RING, CARD_TESTER = range(5)
_SP = {name: i for i, name in enumerate(SIGNUP_PATHS)}
ADVERSARIAL_GROUPS = (K["extraction"], K["card_testing"], K["free_tier_farming"])


@dataclass(frozen=True)
class Population:
    """Per-account and per-group arrays. Seconds count from the window start.

    ``number`` is the public id number (``acct_0000001`` is 1), in order of sign-up.
    ``group`` is -1 for plain individuals; heavy users are groups of one. ``g_campaign``
    indexes ``campaign_names``; ``g_style`` indexes ``world.STYLES`` (0 for ordinary
    groups). ``successor`` maps a banned extraction account to the account that
    respawned it (-1 otherwise). ``active`` marks accounts with traffic in
    the window (only benign accounts are ever dormant).
    """

    kind: np.ndarray
    number: np.ndarray
    group: np.ndarray
    country: np.ndarray
    created: np.ndarray
    signup_path: np.ndarray
    card_mode: np.ndarray
    org: np.ndarray
    domain: np.ndarray
    suspended: np.ndarray
    traits: np.ndarray
    successor: np.ndarray
    ban_time: np.ndarray
    active: np.ndarray
    g_kind: np.ndarray
    g_size: np.ndarray
    g_style: np.ndarray
    g_start: np.ndarray
    g_campaign: np.ndarray
    g_country: np.ndarray
    g_number: np.ndarray
    campaign_names: tuple[str, ...]
    domains: tuple[str, ...]
    n_orgs: int


def _style_rings(params: SynthParams, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    """(style, size) of the harder rings, per campaign, carved out of its accounts."""
    wanted: list[tuple[int, tuple[int, int]]] = []
    for name in STYLE_COUNTS:
        style = S[name.removesuffix("s")]
        size_range = (
            params.hub_ring_size
            if style in (S["hub_ip_ring"], S["hub_template_ring"])
            else params.hard_ring_size
        )
        for _ in range(getattr(params, name)):
            wanted.append((style, size_range))
    left = np.array([c.n_accounts for c in params.campaigns], dtype=np.int64)
    out: list[list[tuple[int, int]]] = [[] for _ in params.campaigns]
    for style, (lo, hi) in wanted:
        if style == S["aperiodic_ring"]:
            ci = int(rng.choice(len(left), p=left / max(left.sum(), 1)))
            lo, hi = params.campaigns[ci].ring_size
        size = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
        size = min(max(size, lo), hi)
        fits = left >= size
        if not fits.any():
            raise ConfigError(
                f"campaigns have too few accounts left for a {STYLES[style]} of {size}; "
                "lower the harder-ring counts or raise campaign accounts"
            )
        if style != S["aperiodic_ring"] or not fits[ci]:
            weight = np.where(fits, left, 0)
            ci = int(rng.choice(len(left), p=weight / weight.sum()))
        out[ci].append((style, size))
        left[ci] -= size
    return out


def _blocks(params: SynthParams, rng: np.random.Generator) -> tuple[list, int]:
    """(kind, campaign, sizes, styles) blocks in layout order, and the number of individuals."""
    blocks = []
    for ci, (c, styled) in enumerate(zip(params.campaigns, _style_rings(params, rng), strict=True)):
        rest = c.n_accounts - sum(size for _, size in styled)
        plain = partition(rest, *c.ring_size, rng)
        sizes = np.concatenate([[size for _, size in styled], plain]).astype(np.int64)
        styles = np.concatenate([[style for style, _ in styled], np.zeros(len(plain))])
        # Ring numbers must not tell the styles apart.
        order = rng.permutation(len(sizes))
        blocks.append((K["extraction"], ci, sizes[order], styles[order].astype(np.int8)))
    nc = len(params.campaigns)
    for kind_code, camp, total, size in (
        (K["card_testing"], nc, params.card_testing_accounts, params.card_testing_ring_size),
        (K["free_tier_farming"], nc + 1, params.free_tier_farming_accounts, params.farm_ring_size),
    ):
        sizes = partition(total, *size, rng)
        blocks.append((kind_code, camp, sizes, np.zeros(len(sizes), dtype=np.int8)))
    n_benign = params.n_accounts - sum(int(b[2].sum()) for b in blocks)
    twins = {
        "office": (params.company_card_twins, params.company_card_size, S["company_card"]),
        "university": (params.campus_class_twins, params.campus_class_size, S["campus_class"]),
    }
    for kind, share, size in (
        ("enterprise_app", params.enterprise_share, params.enterprise_keys),
        ("university", params.university_share, params.university_size),
        ("office", params.office_share, params.office_size),
        ("household", params.household_share, params.household_size),
    ):
        sizes = partition(round(share * n_benign), *size, rng)
        styles = np.zeros(len(sizes), dtype=np.int8)
        if kind in twins:
            count, (lo, hi), style = twins[kind]
            extra = rng.integers(lo, hi + 1, count)
            order = rng.permutation(len(sizes) + count)
            sizes = np.concatenate([sizes, extra])[order]
            styles = np.concatenate([styles, np.full(count, style, dtype=np.int8)])[order]
        blocks.append((K[kind], -1, sizes, styles))
    heavy = round(params.heavy_user_share * n_benign)
    blocks.append((K["heavy_user"], -1, np.ones(heavy, dtype=np.int64), np.zeros(heavy, np.int8)))
    n_individuals = params.n_accounts - sum(int(b[2].sum()) for b in blocks)
    if n_individuals < 0:
        raise ConfigError("benign structure shares add up to more than the benign population")
    return blocks, n_individuals


def _created(
    pop_kind: np.ndarray,
    group: np.ndarray,
    g_kind: np.ndarray,
    w: int,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign-up seconds, burst flags, and each group's ban time (extraction rings only)."""
    n, ng = len(pop_kind), len(g_kind)
    # Organic growth: recent sign-ups are more common; the platform is two years old.
    age_scale, max_age = 300 * DAY, w + 730 * DAY
    u = rng.random(n) * -np.expm1(-max_age / age_scale)
    created = np.minimum(w + age_scale * np.log1p(-u), w - HOUR)
    burst = np.zeros(n, dtype=bool)
    g_t0 = np.full(ng, 0.0)
    ext, abuse = (
        g_kind == K["extraction"],
        np.isin(g_kind, [K["card_testing"], K["free_tier_farming"]]),
    )
    g_t0[ext] = rng.uniform(-40 * DAY, 2 * DAY, ext.sum())
    g_t0[abuse] = rng.uniform(-2 * DAY, w - 3 * DAY, abuse.sum())
    uni, ent = g_kind == K["university"], g_kind == K["enterprise_app"]
    g_t0[uni] = rng.uniform(-150 * DAY, -10 * DAY, uni.sum())
    g_t0[ent] = rng.uniform(-400 * DAY, -5 * DAY, ent.sum())
    in_group = group >= 0
    gk = np.where(in_group, g_kind[np.maximum(group, 0)], -1)
    t0 = g_t0[np.maximum(group, 0)]

    sel = gk == K["extraction"]
    created[sel] = t0[sel] + np.minimum(
        rng.exponential(params.burst_hours * HOUR / 3, sel.sum()), params.burst_hours * HOUR
    )
    sel = np.isin(gk, [K["card_testing"], K["free_tier_farming"]])
    created[sel] = t0[sel] + rng.exponential(2 * HOUR, sel.sum())
    burst |= np.isin(gk, ADVERSARIAL_GROUPS)
    # A class signs up at term start; an app's keys are provisioned by one script.
    sel = gk == K["university"]
    created[sel] = t0[sel] + rng.exponential(3 * DAY, sel.sum())
    burst[sel] = True
    sel = (gk == K["enterprise_app"]) & (rng.random(n) < 0.8)
    created[sel] = t0[sel] + rng.uniform(0, 600, sel.sum())
    burst[sel] = True
    ban = np.full(ng, np.inf)
    ban[ext] = rng.uniform(0.3 * w, 0.75 * w, ext.sum())
    return np.minimum(created, w - HOUR), burst, ban


def build_population(params: SynthParams, *, rng: np.random.Generator) -> Population:
    """Lay out every account with its kind, group, country, sign-up and payment mode.

    Parameters
    ----------
    params
        Resolved synth parameters.
    rng
        Source of randomness.

    Returns
    -------
    Population
        Per-account and per-group arrays.
    """
    blocks, n_ind = _blocks(params, rng)
    g_kind = np.concatenate([np.full(len(s), k) for k, _, s, _ in blocks]).astype(np.int8)
    g_campaign = np.concatenate([np.full(len(s), c) for _, c, s, _ in blocks]).astype(np.int16)
    g_size = np.concatenate([s for _, _, s, _ in blocks]).astype(np.int64)
    g_style = np.concatenate([st for *_, st in blocks]).astype(np.int8)
    g_start = np.cumsum(g_size) - g_size
    # Groups are numbered within their block: ring 0 of each campaign, household 0, …
    g_number = np.concatenate([np.arange(len(s)) for _, _, s, _ in blocks])
    ng, n = len(g_size), params.n_accounts
    w = params.window_days * DAY
    group = np.concatenate([np.repeat(np.arange(ng), g_size), np.full(n_ind, -1)])
    kind = np.concatenate([np.repeat(g_kind, g_size), np.full(n_ind, K["benign"])]).astype(np.int8)
    gi = np.maximum(group, 0)
    in_group = group >= 0

    g_country = rng.choice(len(COUNTRY_WEIGHTS), ng, p=COUNTRY_WEIGHTS)
    ext_g = g_kind == K["extraction"]
    g_country[ext_g] = rng.choice(PROXY_COUNTRIES, ext_g.sum())
    country = rng.choice(len(COUNTRY_WEIGHTS), n, p=COUNTRY_WEIGHTS)
    structured = in_group & np.isin(
        kind, [K["enterprise_app"], K["university"], K["office"], K["household"]]
    )
    country[structured] = g_country[gi[structured]]
    ext = kind == K["extraction"]
    claims = ext & (rng.random(n) < 0.8)
    country[claims] = g_country[gi[claims]]

    created, burst, ban = _created(kind, group, g_kind, w, params, rng)

    # Respawns: the last r members of a ring replace its first r members once banned.
    rank = np.where(in_group, np.arange(n) - g_start[gi], 0)
    n_resp = np.where(ext_g, np.floor(params.respawn_share * g_size + 0.5), 0).astype(np.int64)
    n_resp = np.minimum(n_resp, g_size // 2)
    banned = ext & (rank < n_resp[gi])
    respawned = ext & (rank >= g_size[gi] - n_resp[gi])
    successor = np.full(n, -1, dtype=np.int64)
    b_idx = np.flatnonzero(banned)
    successor[b_idx] = b_idx + g_size[gi[b_idx]] - n_resp[gi[b_idx]]
    ban_time = np.where(banned, ban[gi], np.inf)
    created[respawned] = np.minimum(
        ban[gi[respawned]] + rng.exponential(1.5 * HOUR, respawned.sum()), w - HOUR
    )
    style = np.where(in_group, g_style[gi], 0)
    # Camouflage belongs to ordinary rings: members of rings that share little have no
    # home life to hide behind, and a one-model operator mixes in no other traffic.
    camouflage = ext & ~respawned & ~banned & (rng.random(n) < params.camouflage_share)
    camouflage &= style == S["plain"]

    signup, program = _signup_paths(kind, rng, params)
    card_mode, traits = _payment(kind, group, g_kind, g_style, camouflage, params, rng)
    for st in np.unique(style[style > 0]):
        traits[style == st] |= TRAIT[STYLES[st]]
    for flag, name in (
        (burst, "burst_signup"),
        (program, "program_signup"),
        (camouflage, "camouflage"),
        (banned, "banned"),
        (respawned, "respawned"),
    ):
        traits[flag] |= TRAIT[name]
    benign = ~np.isin(kind, [*ADVERSARIAL_GROUPS, K["enterprise_app"]])
    for share, name in ((params.cgnat_share, "cgnat"), (params.vpn_share, "vpn")):
        traits[benign & (rng.random(n) < share)] |= TRAIT[name]
    traits[(kind == K["office"]) & (style != S["company_card"])] |= TRAIT["office_nat"]
    traits[kind == K["university"]] |= TRAIT["university_nat"]
    traits[kind == K["enterprise_app"]] |= TRAIT["enterprise_template"] | TRAIT["cloud_ip"]
    heavy = kind == K["heavy_user"]
    traits[heavy] |= TRAIT["heavy_traffic"]
    traits[heavy & (rng.random(n) < params.heavy_high_ratio_share)] |= TRAIT["high_output_ratio"]
    traits[heavy & (rng.random(n) < 0.5)] |= TRAIT["cloud_ip"]

    org, n_orgs, domain, domains = _orgs_and_domains(kind, group, g_kind, signup, params, rng)
    dormant = np.isin(kind, [K["benign"], K["household"], K["office"], K["university"]]) & (
        rng.random(n) < params.inactive_share
    )
    suspended = (rng.random(n) < 0.003) | ((kind == K["card_testing"]) & (rng.random(n) < 0.5))
    campaign_names = (
        *(c.name for c in params.campaigns),
        "card_testing_op",
        "free_tier_farm_op",
    )
    # Public ids follow sign-up order, as on a real platform; the layout stays hidden.
    number = np.empty(n, dtype=np.int64)
    number[np.lexsort((rng.random(n), created))] = np.arange(1, n + 1)
    return Population(
        kind=kind,
        number=number,
        group=group.astype(np.int64),
        country=country.astype(np.int8),
        created=created.astype(np.int64),
        signup_path=signup,
        card_mode=card_mode,
        org=org,
        domain=domain,
        suspended=suspended & ~banned,
        traits=traits | np.where(suspended & ~banned, TRAIT["suspended"], 0).astype(np.uint32),
        successor=successor,
        ban_time=ban_time,
        active=~dormant,
        g_kind=g_kind,
        g_size=g_size,
        g_style=g_style,
        g_start=g_start,
        g_campaign=g_campaign,
        g_country=g_country.astype(np.int8),
        g_number=g_number.astype(np.int64),
        campaign_names=campaign_names,
        domains=domains,
        n_orgs=n_orgs,
    )


def _signup_paths(
    kind: np.ndarray, rng: np.random.Generator, params: SynthParams
) -> tuple[np.ndarray, np.ndarray]:
    n = len(kind)
    path = rng.choice(4, n, p=[0.9, 0.05, 0.04, 0.01]).astype(np.int8)
    u = rng.random(n)
    sel = kind == K["university"]
    path[sel] = np.where(u[sel] < 0.7, _SP["education"], _SP["self_serve"])
    path[kind == K["enterprise_app"]] = _SP["enterprise"]
    path[kind == K["office"]] = np.where(u[kind == K["office"]] < 0.4, _SP["enterprise"], 0)
    # Education, startup and research programs are the easiest doors to farm.
    sel = kind == K["extraction"]
    programs = rng.choice([1, 2, 3], sel.sum(), p=[0.4, 0.35, 0.25])
    path[sel] = np.where(u[sel] < params.program_signup_share, programs, _SP["self_serve"])
    path[kind == K["card_testing"]] = _SP["self_serve"]
    sel = kind == K["free_tier_farming"]
    path[sel] = np.where(u[sel] < 0.3, _SP["education"], _SP["self_serve"])
    program = np.isin(path, [_SP["education"], _SP["startup_program"], _SP["research_access"]])
    return path, program


def _payment(
    kind: np.ndarray,
    group: np.ndarray,
    g_kind: np.ndarray,
    g_style: np.ndarray,
    camouflage: np.ndarray,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(kind)
    u = rng.random(n)
    mode = np.where(u < params.free_tier_share, CARD_NONE, CARD_OWN).astype(np.int8)
    traits = np.zeros(n, dtype=np.uint32)
    mode[kind == K["heavy_user"]] = CARD_OWN
    mode[kind == K["university"]] = np.where(u[kind == K["university"]] < 0.5, CARD_NONE, CARD_OWN)
    mode[kind == K["household"]] = CARD_GROUP
    traits[kind == K["household"]] |= TRAIT["household_card"]
    # Some companies bill every key to one corporate card.
    g_shared = rng.random(len(g_kind)) < params.office_shared_card_share
    g_shared |= g_style == S["company_card"]
    office_shared = (kind == K["office"]) & g_shared[np.maximum(group, 0)]
    mode[kind == K["office"]] = CARD_OWN
    mode[office_shared] = CARD_GROUP
    traits[office_shared] |= TRAIT["org_card"]
    mode[kind == K["enterprise_app"]] = CARD_GROUP
    traits[kind == K["enterprise_app"]] |= TRAIT["org_card"]
    mode[kind == K["extraction"]] = CARD_RING
    mode[camouflage] = CARD_OWN
    mode[kind == K["card_testing"]] = CARD_TESTER
    mode[kind == K["free_tier_farming"]] = CARD_NONE
    return mode, traits


def _orgs_and_domains(
    kind: np.ndarray,
    group: np.ndarray,
    g_kind: np.ndarray,
    signup: np.ndarray,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, np.ndarray, tuple[str, ...]]:
    n, gi = len(kind), np.maximum(group, 0)
    org_groups = np.isin(g_kind, [K["office"], K["university"], K["enterprise_app"]])
    g_org = np.full(len(g_kind), -1)
    g_org[org_groups] = np.arange(org_groups.sum())
    org = np.where(group >= 0, g_org[gi], -1)
    # Startup-program extraction accounts invent small fake companies, one to three keys each.
    startup = (kind == K["extraction"]) & (signup == _SP["startup_program"])
    n_fake = int(np.ceil(startup.sum() / 2))
    next_org = int(org_groups.sum())
    org[startup] = next_org + rng.integers(0, max(n_fake, 1), startup.sum())
    n_orgs = next_org + n_fake

    domains = list(FREE_MAIL) + list(DISPOSABLE_MAIL)
    suffix = {K["office"]: ".com", K["university"]: ".edu", K["enterprise_app"]: ".io"}
    stem = {K["office"]: "company", K["university"]: "univ", K["enterprise_app"]: "corp"}
    g_domain = np.full(len(g_kind), -1)
    for gid in np.flatnonzero(org_groups):
        g_domain[gid] = len(domains)
        domains.append(f"{stem[int(g_kind[gid])]}-{g_org[gid]:05d}{suffix[int(g_kind[gid])]}")
    fake_base = len(domains)
    domains += [
        f"{w}-{i:05d}.ai" for i, w in zip(range(n_fake), _startup_words(n_fake, rng), strict=True)
    ]
    domain = rng.choice(len(FREE_MAIL), n, p=FREE_MAIL_WEIGHTS)
    has_org_domain = (group >= 0) & (g_domain[gi] >= 0) & (rng.random(n) < 0.85)
    domain[has_org_domain] = g_domain[gi[has_org_domain]]
    domain[startup] = fake_base + org[startup] - next_org
    # Farmed student sign-ups borrow real university domains where there are some.
    uni_domains = g_domain[g_kind == K["university"]]
    edu = np.isin(kind, [K["extraction"], K["free_tier_farming"]]) & (signup == _SP["education"])
    if len(uni_domains):
        domain[edu] = rng.choice(uni_domains, edu.sum())
    farm = (kind == K["free_tier_farming"]) & ~edu
    domain[farm] = len(FREE_MAIL) + rng.integers(0, len(DISPOSABLE_MAIL), farm.sum())
    return org.astype(np.int64), n_orgs, domain.astype(np.int64), tuple(domains)


def _startup_words(n: int, rng: np.random.Generator) -> list[str]:
    words = np.array(["neural", "quant", "vector", "deep", "lumen", "axon", "tensor", "cortex"])
    tails = np.array(["labs", "ai", "works", "systems", "data", "mind"])
    a, b = rng.integers(0, len(words), n), rng.integers(0, len(tails), n)
    return [f"{x}{y}" for x, y in zip(words[a], tails[b], strict=True)]
