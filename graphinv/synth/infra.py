"""What accounts use: IP addresses, payment methods and prompt templates.

Benign hubs (CGNAT, VPN exits, NATs, popular templates) and adversary infrastructure
(residential proxy pools, prepaid cards, campaign templates) are drawn from the same
address space, ASNs, BINs and template table, so no single attribute separates them.

Examples
--------
>>> import numpy as np
>>> from graphinv.synth.params import PRESETS
>>> from graphinv.synth.population import build_population
>>> rng = np.random.default_rng(0)
>>> pop = build_population(PRESETS["small"], rng=rng)
>>> infra = build_infrastructure(pop, PRESETS["small"], rng=rng)
>>> bool(infra.ip_proxy.any())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphinv.synth.arrays import partition, ragged, ranks_in_groups
from graphinv.synth.params import CAPABILITY_SWEEP, SynthParams
from graphinv.synth.population import (
    CARD_GROUP,
    CARD_OWN,
    CARD_RING,
    CARD_TESTER,
    Population,
)
from graphinv.synth.world import COUNTRIES, LITTLE_SHARED, TRAIT, C, K, S

N_COUNTRIES = len(COUNTRIES)
_RES_PER_COUNTRY, _MOBILE_PER_COUNTRY, _N_CLOUD, _N_VPN = 3, 2, 6, 5
# Benign personal templates lean to chat, writing and coding.
_PERSONAL_CATEGORY_P = np.array([0.25, 0.1, 0.05, 0.15, 0.05, 0.2, 0.07, 0.05, 0.05, 0.03])
# Ring templates per capability category; the campaign adds one shared per category.
RING_TEMPLATES_PER_CATEGORY = 2


@dataclass(frozen=True)
class Infrastructure:
    """Identifier tables and who holds what.

    ``acct_ip``/``acct_tpl`` are ragged lists (offsets, items) of the IPs and templates an
    account's ordinary traffic draws from; ``pool`` is the ragged list of IPs each abuse
    ring (group) rotates through; ``first_ip``/``first_tpl`` the identifier an account's
    first active hour must use (-1: none). Card links are (account, card, first-seen second, tries).
    """

    ip_int: np.ndarray
    ip_asn: np.ndarray
    ip_country: np.ndarray
    ip_datacenter: np.ndarray
    ip_proxy: np.ndarray
    acct_ip: tuple[np.ndarray, np.ndarray]
    signup_ip: np.ndarray
    pool: tuple[np.ndarray, np.ndarray]
    tpl_category: np.ndarray
    tpl_reasoning: np.ndarray
    tpl_tokens: np.ndarray
    acct_tpl: tuple[np.ndarray, np.ndarray]
    campaign_tpl_base: np.ndarray
    ring_tpl_base: np.ndarray
    ring_hub_tpl: np.ndarray
    first_ip: np.ndarray
    first_tpl: np.ndarray
    farm_tpl: np.ndarray
    probe_tpl: int
    card_type: np.ndarray
    card_bin: np.ndarray
    card_country: np.ndarray
    card_prepaid: np.ndarray
    card_links: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    enterprise_model: np.ndarray
    traits: np.ndarray


class _Asns:
    """Synthetic ASNs: residential ISPs and mobile carriers per country, clouds, VPNs,
    and one network per university."""

    def __init__(self, n_universities: int, rng: np.random.Generator) -> None:
        n = N_COUNTRIES * (_RES_PER_COUNTRY + _MOBILE_PER_COUNTRY) + _N_CLOUD + _N_VPN
        n += n_universities
        self.number = rng.choice(np.arange(1_000, 400_000), n, replace=False)
        self.res0 = 0
        self.mobile0 = N_COUNTRIES * _RES_PER_COUNTRY
        self.cloud0 = self.mobile0 + N_COUNTRIES * _MOBILE_PER_COUNTRY
        self.vpn0 = self.cloud0 + _N_CLOUD
        self.uni0 = self.vpn0 + _N_VPN
        c = np.arange(N_COUNTRIES)
        self.country = np.concatenate(
            [
                np.repeat(c, _RES_PER_COUNTRY),
                np.repeat(c, _MOBILE_PER_COUNTRY),
                rng.choice([0, 4, 10], _N_CLOUD),
                rng.choice([0, 3, 4, 10], _N_VPN),
                np.zeros(n_universities, dtype=int),
            ]
        )
        self.datacenter = np.zeros(n, dtype=bool)
        self.datacenter[self.cloud0 : self.uni0] = True
        self.proxy = np.zeros(n, dtype=bool)
        self.proxy[self.vpn0 : self.uni0] = True

    def residential(self, country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (
            self.res0 + country * _RES_PER_COUNTRY + rng.integers(0, _RES_PER_COUNTRY, len(country))
        )

    def mobile(self, country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (
            self.mobile0
            + country * _MOBILE_PER_COUNTRY
            + rng.integers(0, _MOBILE_PER_COUNTRY, len(country))
        )

    def cloud(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.cloud0 + rng.integers(0, _N_CLOUD, n)

    def vpn(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.vpn0 + rng.integers(0, _N_VPN, n)


class _IpAlloc:
    """Hands out IP indices now and distinct addresses, per ASN, at the end."""

    def __init__(self) -> None:
        self.asn: list[np.ndarray] = []
        self.n = 0

    def new(self, asn: np.ndarray) -> np.ndarray:
        self.asn.append(asn.astype(np.int64))
        self.n += len(asn)
        return np.arange(self.n - len(asn), self.n)

    def addresses(self, n_asns: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        asn = np.concatenate(self.asn)
        need = np.bincount(asn, minlength=n_asns)
        hosts_per_block = 256 * 254
        blocks = np.ceil(3 * need / hosts_per_block).astype(np.int64) + 1
        first = np.setdiff1d(np.arange(1, 224), [10, 100, 127, 169, 172, 192, 198, 203])
        universe = (first[:, None] * 256 + np.arange(256)[None, :]).ravel()
        chosen = rng.choice(universe, int(blocks.sum()), replace=False)
        block_start = np.cumsum(blocks) - blocks
        ints = np.zeros(len(asn), dtype=np.int64)
        for a in np.flatnonzero(need):
            members = np.flatnonzero(asn == a)
            off = rng.choice(int(blocks[a]) * hosts_per_block, len(members), replace=False)
            block = chosen[block_start[a] + off // hosts_per_block]
            host = off % hosts_per_block
            ints[members] = (block << 16) + (host // 254) * 256 + host % 254 + 1
        return ints, asn


def _repeat_pick(counts: np.ndarray, pool_size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For owners with ``counts`` picks each from a pool of ``pool_size``: an index per pick."""
    return (rng.random(int(counts.sum())) * np.repeat(pool_size, counts)).astype(np.int64)


def _hub_public(
    ring_size: int, benign: np.ndarray, params: SynthParams, rng: np.random.Generator
) -> np.ndarray:
    """Benign accounts on a ring's hub identifier: the hub carries ``ring_hub_accounts``
    accounts in all (at most half of the active individuals on a small platform)."""
    lo, hi = params.ring_hub_accounts
    total = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
    count = min(max(total - ring_size, 0), len(benign) // 2)
    return rng.choice(benign, count, replace=False) if count else np.zeros(0, dtype=np.int64)


def _ring_cards(
    n: int, style: int, params: SynthParams, rng: np.random.Generator
) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """Who holds which of a ring's cards: ((member index, card index) pairs, cards).

    Ordinary rings pass each card among a few members; a star-card ring funds everyone
    from one card and a star-proxy ring gives everyone a card of their own; a funding
    tree's cards each fund an overlapping subset; a sparse ring's card ``j`` is held by
    members ``j`` and ``j + 1`` only, round the ring.
    """
    if style == S["star_card_ring"]:
        return (np.arange(n), np.zeros(n, dtype=np.int64)), 1
    if style == S["star_proxy_ring"]:
        return (np.arange(n), np.arange(n)), n
    if style == S["sparse_ring"]:
        j = np.arange(n)
        return (np.r_[j, (j + 1) % n], np.r_[j, j]), n
    if style == S["funding_tree_ring"]:
        k = max(3, round(n / 6))
        subset = rng.integers(max(2, n // 6), max(3, n // 2) + 1, k)
        who = np.concatenate([rng.choice(n, min(int(s), n), replace=False) for s in subset])
        card = np.repeat(np.arange(k), np.minimum(subset, n))
        unfunded = np.setdiff1d(np.arange(n), who)
        return (np.r_[who, unfunded], np.r_[card, rng.integers(0, k, len(unfunded))]), k
    sizes = partition(n, *params.accounts_per_card, rng)
    return (np.arange(n), np.repeat(np.arange(len(sizes)), sizes)), len(sizes)


def build_infrastructure(
    pop: Population, params: SynthParams, *, rng: np.random.Generator
) -> Infrastructure:
    """Build IPs, cards and templates, and what each account and ring uses.

    Parameters
    ----------
    pop
        The population from :func:`graphinv.synth.population.build_population`.
    params
        Resolved synth parameters.
    rng
        Source of randomness.
    """
    ips = _ips(pop, params, rng)
    tpls = _templates(pop, params, rng)
    cards = _cards(pop, params, rng)
    traits = ips.pop("traits") | tpls.pop("traits") | cards.pop("traits")
    g_ent = np.flatnonzero(pop.g_kind == K["enterprise_app"])
    enterprise_model = np.full(len(pop.g_kind), 0)
    enterprise_model[g_ent] = rng.choice([0, 1], len(g_ent), p=[0.4, 0.6])
    return Infrastructure(**ips, **tpls, **cards, enterprise_model=enterprise_model, traits=traits)


def _ips(pop: Population, params: SynthParams, rng: np.random.Generator) -> dict:
    n, kind, group, country = len(pop.kind), pop.kind, pop.group, pop.country.astype(np.int64)
    gi = np.maximum(group, 0)
    g_uni = np.flatnonzero(pop.g_kind == K["university"])
    asns = _Asns(len(g_uni), rng)
    alloc = _IpAlloc()
    own: list[tuple[np.ndarray, np.ndarray]] = []  # (account, ip) pairs
    traits = np.zeros(n, dtype=np.uint32)
    # An identifier an account's first hour goes through, so a hub or a class's NAT
    # carries every account it is meant to (not only those whose draws happen to hit it).
    first_ip = np.full(n, -1, dtype=np.int64)

    # Home lines: one per account, more as the ISP reassigns addresses and people roam
    # (cafés, travel); a household shares one line.
    homed = ~np.isin(
        kind, [K["enterprise_app"], K["card_testing"], K["free_tier_farming"], K["extraction"]]
    ) | ((kind == K["extraction"]) & (pop.traits & TRAIT["camouflage"] > 0))
    homed &= kind != K["household"]
    homed[(kind == K["university"]) & (rng.random(n) < 0.4)] = False
    acc = np.flatnonzero(homed)
    k = 1 + rng.poisson(params.home_ip_churn, len(acc))
    acc = np.repeat(acc, k)
    own.append((acc, alloc.new(asns.residential(country[acc], rng))))

    for gkind, lo, hi in (
        (K["household"], 1, 1),
        (K["office"], 1, 2),
        (K["university"], *params.university_nat_ips),
        (K["enterprise_app"], 2, 8),
    ):
        g_ids = np.flatnonzero(pop.g_kind == gkind)
        if gkind == K["office"]:
            # A remote company: its people work from home lines, only the card in common.
            g_ids = g_ids[pop.g_style[g_ids] != S["company_card"]]
        per = rng.integers(lo, hi + 1, len(g_ids))
        if gkind == K["university"]:
            per[pop.g_style[g_ids] == S["campus_class"]] = 1
        g_country = np.repeat(pop.g_country[g_ids].astype(np.int64), per)
        if gkind == K["university"]:
            asn = np.repeat(asns.uni0 + np.arange(len(g_ids)), per)
            asns.country[asns.uni0 :] = pop.g_country[g_ids]
        elif gkind == K["enterprise_app"]:
            asn = asns.cloud(int(per.sum()), rng)
        else:
            asn = asns.residential(g_country, rng)
        ips, start = alloc.new(asn), np.cumsum(per) - per
        members = np.flatnonzero((kind == gkind) & np.isin(group, g_ids))
        m_group = np.searchsorted(g_ids, group[members])
        # Each member reaches the group network through one or two of its addresses.
        picks = 1 + (rng.random(len(members)) < 0.3)
        m = np.repeat(members, picks)
        mg = np.repeat(m_group, picks)
        own.append((m, ips[start[mg] + _repeat_pick(picks, per[m_group], rng)]))
        if gkind == K["university"]:
            in_class = pop.g_style[group[members]] == S["campus_class"]
            first_ip[members[in_class]] = ips[start[m_group[in_class]]]

    # Mobile CGNAT: a carrier's few exits carry thousands of subscribers each.
    cg = np.flatnonzero(pop.traits & TRAIT["cgnat"] > 0)
    per_country = np.bincount(country[cg], minlength=N_COUNTRIES)
    cg_pool = np.maximum(1, np.ceil(per_country * 1.5 / params.cgnat_accounts_per_ip)).astype(int)
    cg_pool[per_country == 0] = 0
    pool_ips = alloc.new(asns.mobile(np.repeat(np.arange(N_COUNTRIES), cg_pool), rng))
    pool_start = np.cumsum(cg_pool) - cg_pool
    picks = 1 + (rng.random(len(cg)) < 0.5)
    m = np.repeat(cg, picks)
    pick = _repeat_pick(picks, cg_pool[country[cg]], rng)
    own.append((m, pool_ips[pool_start[country[m]] + pick]))

    # Commercial VPN exits, also used by free-tier farms.
    vp = np.flatnonzero(pop.traits & TRAIT["vpn"] > 0)
    n_vpn = max(2, int(np.ceil(len(vp) * 1.3 / params.vpn_accounts_per_ip)))
    vpn_ips = alloc.new(asns.vpn(n_vpn, rng))
    picks = 1 + (rng.random(len(vp)) < 0.3)
    own.append((np.repeat(vp, picks), vpn_ips[rng.integers(0, n_vpn, int(picks.sum()))]))

    heavy_cloud = np.flatnonzero((kind == K["heavy_user"]) & (pop.traits & TRAIT["cloud_ip"] > 0))
    picks = rng.integers(1, 4, len(heavy_cloud))
    own.append((np.repeat(heavy_cloud, picks), alloc.new(asns.cloud(int(picks.sum()), rng))))

    # Ring pools: residential proxy exits for extraction rings, cloud (and VPN) for abuse.
    # Rings that share little have no pool (each member keeps sticky exits of its own),
    # a star-proxy ring one exit, a hub-IP ring one carrier exit shared with the public.
    g_pool: list[tuple[np.ndarray, np.ndarray]] = []
    ext_g = np.flatnonzero(pop.g_kind == K["extraction"])
    style = pop.g_style[ext_g]
    size = np.maximum(5, np.ceil(pop.g_size[ext_g] * params.proxy_ips_per_member)).astype(int)
    size[np.isin(style, LITTLE_SHARED)] = 0
    size[style == S["star_proxy_ring"]] = 1
    proxy_ips = alloc.new(asns.residential(np.repeat(pop.g_country[ext_g].astype(int), size), rng))
    g_pool.append((np.repeat(ext_g, size), proxy_ips))
    hub_g = ext_g[style == S["hub_ip_ring"]]
    hub_ips = alloc.new(asns.mobile(pop.g_country[hub_g].astype(np.int64), rng))
    g_pool.append((hub_g, hub_ips))
    benign = np.flatnonzero((kind == K["benign"]) & pop.active)
    for gid, ip in zip(hub_g, hub_ips, strict=True):
        who = _hub_public(int(pop.g_size[gid]), benign, params, rng)
        own.append((who, np.full(len(who), ip)))
        traits[who] |= TRAIT["ring_hub_user"]
        first_ip[who] = ip
    sticky_style = np.setdiff1d(LITTLE_SHARED, [S["star_proxy_ring"], S["hub_ip_ring"]])
    g_style = np.where(group >= 0, pop.g_style[gi], 0)
    sticky = np.flatnonzero((kind == K["extraction"]) & np.isin(g_style, sticky_style))
    m = np.repeat(sticky, rng.integers(1, 3, len(sticky)))
    sticky_ips = alloc.new(asns.residential(pop.g_country[group[m]].astype(np.int64), rng))
    own.append((m, sticky_ips))
    # A sparse ring's chords: every third member of its first half shares one exit with
    # the member half the ring away, so each has two or three ring-mates in all.
    chords = []
    for gid in np.flatnonzero(pop.g_style == S["sparse_ring"]):
        half = int(pop.g_size[gid]) // 2
        a = pop.g_start[gid] + np.arange(0, half, 3)
        chords.append(np.stack([a, a + half], axis=1))
    if chords:
        pairs = np.concatenate(chords)
        chord_ips = alloc.new(
            asns.residential(pop.g_country[group[pairs[:, 0]]].astype(np.int64), rng)
        )
        own.append((pairs.ravel(), np.repeat(chord_ips, 2)))
        sticky_ips = np.concatenate([sticky_ips, chord_ips])
    for gkind, lo, hi in ((K["card_testing"], 2, 6), (K["free_tier_farming"], 3, 10)):
        g_ids = np.flatnonzero(pop.g_kind == gkind)
        per = rng.integers(lo, hi + 1, len(g_ids))
        g_pool.append((np.repeat(g_ids, per), alloc.new(asns.cloud(int(per.sum()), rng))))
    farms = np.flatnonzero(pop.g_kind == K["free_tier_farming"])
    g_pool.append((np.repeat(farms, 2), vpn_ips[rng.integers(0, n_vpn, 2 * len(farms))]))

    # Residential proxies are real people's lines: some exits carry benign customers too.
    proxy_ips = np.concatenate([proxy_ips, sticky_ips])
    shared = proxy_ips[rng.random(len(proxy_ips)) < params.proxy_ip_benign_share]
    if len(benign) and len(shared):
        users = rng.integers(1, 4, len(shared))
        who = rng.choice(benign, int(users.sum()))
        own.append((who, np.repeat(shared, users)))
        traits[who] |= TRAIT["residential_proxy_ip"]

    ints, ip_asn = alloc.addresses(len(asns.number), rng)
    proxy_flag = asns.proxy[ip_asn].copy()
    proxy_flag[proxy_ips] = rng.random(len(proxy_ips)) < params.proxy_flag_rate

    owner = np.concatenate([a for a, _ in own])
    item = np.concatenate([i for _, i in own])
    acct_ip = ragged(owner, item, n)
    # The sign-up address: an account's first line, or an exit of its ring's pool.
    g_owner = np.concatenate([g for g, _ in g_pool])
    pool = ragged(g_owner, np.concatenate([i for _, i in g_pool]), len(pop.g_kind))
    signup_ip = np.full(n, -1, dtype=np.int64)
    has = acct_ip[0][1:] > acct_ip[0][:-1]
    signup_ip[has] = acct_ip[1][acct_ip[0][:-1][has]]
    ringed = ~has & (group >= 0)
    ringed[ringed] = pool[0][gi[ringed] + 1] > pool[0][gi[ringed]]
    start, stop = pool[0][gi[ringed]], pool[0][gi[ringed] + 1]
    signup_ip[ringed] = pool[1][start + (rng.random(ringed.sum()) * (stop - start)).astype(int)]
    return {
        "ip_int": ints,
        "ip_asn": asns.number[ip_asn],
        "ip_country": asns.country[ip_asn],
        "ip_datacenter": asns.datacenter[ip_asn],
        "ip_proxy": proxy_flag,
        "acct_ip": acct_ip,
        "signup_ip": signup_ip,
        "first_ip": first_ip,
        "pool": pool,
        "traits": traits,
    }


def _templates(pop: Population, params: SynthParams, rng: np.random.Generator) -> dict:
    n, kind = len(pop.kind), pop.kind
    cats: list[np.ndarray] = []
    reasoning: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    next_id = 0

    def new(cat: np.ndarray, reason: np.ndarray, tok: np.ndarray) -> np.ndarray:
        nonlocal next_id
        cats.append(cat)
        reasoning.append(reason)
        tokens.append(tok)
        next_id += len(cat)
        return np.arange(next_id - len(cat), next_id)

    # Popular public templates ("summarise this", "translate", "explain step by step").
    p = params.popular_templates
    pop_cat = rng.choice([C["chat"], C["summarise"], C["translate"], C["writing"], C["coding"]], p)
    pop_cat[0] = C["chat"]
    pop_reason = np.zeros(p, dtype=bool)
    pop_reason[1 : min(p, 3)] = True
    pop_cat[pop_reason] = C["math"]
    popular = new(pop_cat, pop_reason, rng.integers(10, 200, p))
    zipf = 1.0 / np.arange(1, p + 1) ** 1.1
    zipf /= zipf.sum()

    styled = pop.active & ~np.isin(
        kind, [K["extraction"], K["card_testing"], K["free_tier_farming"], K["enterprise_app"]]
    ) | ((kind == K["extraction"]) & (pop.traits & TRAIT["camouflage"] > 0))
    acc = np.flatnonzero(styled)
    lo, hi = params.personal_templates
    k = rng.integers(lo, hi + 1, len(acc)) + np.where(kind[acc] == K["heavy_user"], 4, 0)
    owners = np.repeat(acc, k)
    pc_ = rng.choice(len(_PERSONAL_CATEGORY_P), len(owners), p=_PERSONAL_CATEGORY_P)
    reason_p = np.where(np.isin(pc_, [C["coding"], C["math"]]), 0.3, 0.1)
    personal = new(pc_, rng.random(len(owners)) < reason_p, rng.integers(10, 800, len(owners)))
    pairs = [(owners, personal)]
    traits = np.zeros(n, dtype=np.uint32)

    uses_popular = acc[rng.random(len(acc)) < params.popular_template_share]
    k = 1 + (rng.random(len(uses_popular)) < 0.4) + (rng.random(len(uses_popular)) < 0.2)
    owners = np.repeat(uses_popular, k)
    pairs.append((owners, popular[rng.choice(p, len(owners), p=zipf)]))
    traits[uses_popular] |= TRAIT["popular_template"]

    # A course hands its class the same few reasoning-heavy exercises.
    g_uni = np.flatnonzero(pop.g_kind == K["university"])
    per = rng.integers(2, 6, len(g_uni))
    # A class of one course: one exercise template, which every active student uses.
    per[pop.g_style[g_uni] == S["campus_class"]] = 1
    course = new(
        rng.choice([C["math"], C["coding"], C["science"]], int(per.sum())),
        np.ones(int(per.sum()), dtype=bool),
        rng.integers(50, 400, int(per.sum())),
    )
    start = np.cumsum(per) - per
    students = np.flatnonzero((kind == K["university"]) & styled)
    in_class = pop.g_style[pop.group[students]] == S["campus_class"]
    students = students[in_class | (rng.random(len(students)) < params.course_template_share)]
    sg = np.searchsorted(g_uni, pop.group[students])
    chosen = course[start[sg] + _repeat_pick(np.ones_like(sg), per[sg], rng)]
    pairs.append((students, chosen))
    first_tpl = np.full(n, -1, dtype=np.int64)
    in_class = pop.g_style[pop.group[students]] == S["campus_class"]
    first_tpl[students[in_class]] = chosen[in_class]
    traits[students] |= TRAIT["course_template"]

    # An enterprise app sends one long system prompt from every key.
    g_ent = np.flatnonzero(pop.g_kind == K["enterprise_app"])
    app = new(
        rng.choice([C["classification"], C["summarise"], C["chat"]], len(g_ent)),
        np.zeros(len(g_ent), dtype=bool),
        rng.integers(500, 3000, len(g_ent)),
    )
    keys = np.flatnonzero(kind == K["enterprise_app"])
    pairs.append((keys, app[np.searchsorted(g_ent, pop.group[keys])]))

    # Campaigns: one shared template per category, plus each ring's own.
    campaign_base = np.zeros(len(params.campaigns), dtype=np.int64)
    for ci, c in enumerate(params.campaigns):
        cat = np.array([C[x] for x in c.categories])
        campaign_base[ci] = new(
            cat, rng.random(len(cat)) < params.reasoning_share, rng.integers(50, 400, len(cat))
        )[0]
    ring_base = np.full(len(pop.g_kind), -1, dtype=np.int64)
    for gid in np.flatnonzero(pop.g_kind == K["extraction"]):
        c = params.campaigns[pop.g_campaign[gid]]
        cat = np.repeat([C[x] for x in c.categories], RING_TEMPLATES_PER_CATEGORY)
        ring_base[gid] = new(
            cat, rng.random(len(cat)) < params.reasoning_share, rng.integers(50, 400, len(cat))
        )[0]
    farm = new(np.full(3, C["writing"]), np.zeros(3, dtype=bool), rng.integers(100, 300, 3))

    # Rings that share little: two to four templates of each member's own.
    g_style = np.where(pop.group >= 0, pop.g_style[np.maximum(pop.group, 0)], 0)
    loners = np.flatnonzero((kind == K["extraction"]) & np.isin(g_style, LITTLE_SHARED))
    owners = np.repeat(loners, rng.integers(2, 5, len(loners)))
    sweep = np.array([C[x] for x in CAPABILITY_SWEEP])
    pairs.append(
        (
            owners,
            new(
                rng.choice(sweep, len(owners)),
                rng.random(len(owners)) < params.reasoning_share,
                rng.integers(50, 400, len(owners)),
            ),
        )
    )
    # A hub-template ring works through one public "explain step by step" template that
    # hundreds of benign users send too.
    hub_g = np.flatnonzero(pop.g_style == S["hub_template_ring"])
    hub_tpl = new(
        np.full(len(hub_g), C["reasoning_puzzles"]),
        np.ones(len(hub_g), dtype=bool),
        rng.integers(30, 120, len(hub_g)),
    )
    ring_hub_tpl = np.full(len(pop.g_kind), -1, dtype=np.int64)
    ring_hub_tpl[hub_g] = hub_tpl
    public = np.flatnonzero((kind == K["benign"]) & styled)
    for gid, tpl in zip(hub_g, hub_tpl, strict=True):
        who = _hub_public(int(pop.g_size[gid]), public, params, rng)
        pairs.append((who, np.full(len(who), tpl)))
        traits[who] |= TRAIT["ring_hub_user"]
        first_tpl[who] = tpl

    owner = np.concatenate([o for o, _ in pairs])
    item = np.concatenate([t for _, t in pairs])
    return {
        "tpl_category": np.concatenate(cats).astype(np.int64),
        "tpl_reasoning": np.concatenate(reasoning).astype(bool),
        "tpl_tokens": np.concatenate(tokens).astype(np.int64),
        "acct_tpl": ragged(owner, item, n),
        "campaign_tpl_base": campaign_base,
        "ring_tpl_base": ring_base,
        "ring_hub_tpl": ring_hub_tpl,
        "first_tpl": first_tpl,
        "farm_tpl": farm,
        "probe_tpl": int(popular[0]),
        "traits": traits,
    }


def _cards(pop: Population, params: SynthParams, rng: np.random.Generator) -> dict:
    n, mode, created = len(pop.kind), pop.card_mode, pop.created
    issuer_bins = rng.choice(np.arange(400_000, 560_000), 3_000, replace=False)
    prepaid_bins = rng.choice(
        np.setdiff1d(np.arange(400_000, 560_000), issuer_bins), 60, replace=False
    )
    types: list[np.ndarray] = []  # 0 card, 1 paypal, 2 invoice
    bins: list[np.ndarray] = []
    ctry: list[np.ndarray] = []
    prepaid: list[np.ndarray] = []
    links: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    traits = np.zeros(n, dtype=np.uint32)
    next_id = 0

    def new(t: np.ndarray, b: np.ndarray, c: np.ndarray, pre: np.ndarray) -> np.ndarray:
        nonlocal next_id
        types.append(t)
        bins.append(b)
        ctry.append(c)
        prepaid.append(pre)
        next_id += len(t)
        return np.arange(next_id - len(t), next_id)

    def std(count: int, country: np.ndarray, prepaid_share: float) -> np.ndarray:
        t = np.where(rng.random(count) < 0.15, 1, 0)
        pre = (t == 0) & (rng.random(count) < prepaid_share)
        b = np.where(pre, rng.choice(prepaid_bins, count), rng.choice(issuer_bins, count))
        return new(t, np.where(t == 0, b, -1), country, pre)

    delay = rng.uniform(30, 900, n)
    own = np.flatnonzero(mode == CARD_OWN)
    links.append(
        (
            own,
            std(len(own), pop.country[own], params.benign_prepaid_share),
            created[own] + delay[own],
            np.zeros(len(own)),
        )
    )

    grp = np.flatnonzero(mode == CARD_GROUP)
    g_ids, inv = np.unique(pop.group[grp], return_inverse=True)
    g_card = std(len(g_ids), pop.g_country[g_ids], params.household_prepaid_share)
    ent = pop.g_kind[g_ids] == K["enterprise_app"]
    types[-1][ent], bins[-1][ent], prepaid[-1][ent] = 2, -1, False
    links.append((grp, g_card[inv], created[grp] + delay[grp], np.zeros(len(grp))))

    # Prepaid cards passed around a ring, each among a few members; respawns inherit theirs.
    ring = np.flatnonzero((mode == CARD_RING) & (pop.traits & TRAIT["respawned"] == 0))
    ring = ring[np.lexsort((rng.random(len(ring)), pop.group[ring]))]
    groups, counts = np.unique(pop.group[ring], return_counts=True)
    holders: list[np.ndarray] = []
    card_of: list[np.ndarray] = []
    card_group: list[np.ndarray] = []
    for g, members in zip(groups, np.split(ring, np.cumsum(counts)[:-1]), strict=True):
        idx, n_cards = _ring_cards(len(members), int(pop.g_style[g]), params, rng)
        holders.append(members[idx[0]])
        card_of.append(idx[1] + sum(len(c) for c in card_group))
        card_group.append(np.full(n_cards, g))
    holder = np.concatenate(holders) if holders else np.zeros(0, dtype=np.int64)
    ring_card = np.concatenate(card_of) if card_of else np.zeros(0, dtype=np.int64)
    c_group = np.concatenate(card_group) if card_group else np.zeros(0, dtype=np.int64)
    camp = pop.g_campaign[c_group]
    camp_bins = rng.choice(prepaid_bins, (len(params.campaigns), 3))
    pre = rng.random(len(c_group)) < params.prepaid_share
    b = np.where(
        pre,
        camp_bins[camp, rng.integers(0, 3, len(c_group))],
        rng.choice(issuer_bins, len(c_group)),
    )
    cards = new(np.zeros(len(c_group), dtype=int), b, pop.g_country[c_group], pre)
    ring_card = cards[ring_card]
    links.append((holder, ring_card, created[holder] + delay[holder], np.zeros(len(holder))))
    heir = pop.successor[holder] >= 0
    links.append(
        (
            pop.successor[holder][heir],
            ring_card[heir],
            created[pop.successor[holder][heir]] + 60,
            np.zeros(heir.sum()),
        )
    )

    # Card testers run lists of stolen numbers from a few BINs, minutes apart.
    testers = np.flatnonzero(mode == CARD_TESTER)
    k = rng.integers(params.cards_per_tester[0], params.cards_per_tester[1] + 1, len(testers))
    who = np.repeat(testers, k)
    g_bins = rng.choice(issuer_bins, (len(pop.g_kind), 2))
    b = g_bins[pop.group[who], rng.integers(0, 2, len(who))]
    cards = new(
        np.zeros(len(who), dtype=int),
        b,
        rng.integers(0, N_COUNTRIES, len(who)),
        rng.random(len(who)) < 0.1,
    )
    step = ranks_in_groups(k) * rng.uniform(20, 120, len(who))
    links.append((who, cards, created[who] + step, rng.integers(1, 4, len(who)).astype(float)))

    owner = np.concatenate([a for a, *_ in links])
    card_prepaid = np.concatenate(prepaid)
    card = np.concatenate([c for _, c, *_ in links])
    traits[owner[card_prepaid[card]]] |= TRAIT["prepaid_card"]
    return {
        "card_type": np.concatenate(types),
        "card_bin": np.concatenate(bins),
        "card_country": np.concatenate(ctry),
        "card_prepaid": card_prepaid,
        "card_links": (
            owner,
            card,
            np.concatenate([t for *_, t, _ in links]).astype(np.int64),
            np.concatenate([x for *_, x in links]).astype(np.int64),
        ),
        "traits": traits,
    }
