"""Hourly traffic: who sends what, when, from which address, with which template.

Each row is one account-hour-model slice with the IP and template it went through; the
assembly stage sums rows into ``usage`` and into the ``links`` of IPs and templates.

Examples
--------
>>> import numpy as np
>>> from graphinv.synth.params import PRESETS
>>> from graphinv.synth.population import build_population
>>> from graphinv.synth.infra import build_infrastructure
>>> p, rng = PRESETS["small"], np.random.default_rng(0)
>>> pop = build_population(p, rng=rng)
>>> rows = build_traffic(pop, build_infrastructure(pop, p, rng=rng), p, rng=rng)
>>> bool((rows.requests > 0).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from graphinv.synth.arrays import pick, ranks_in_groups
from graphinv.synth.infra import RING_TEMPLATES_PER_CATEGORY, Infrastructure
from graphinv.synth.params import SynthParams
from graphinv.synth.population import Population
from graphinv.synth.world import (
    COUNTRIES,
    HOUR,
    LITTLE_SHARED,
    TRAIT,
    K,
    S,
    activity_cdf,
    business_hours,
)

F1, MINI, F2 = 0, 1, 2
N_MODELS = 3


@dataclass(frozen=True)
class Rows:
    """Parallel int64 arrays, one element per account-hour-model slice.

    :func:`build_traffic` returns them sorted by :meth:`key`.
    """

    acc: np.ndarray
    hour: np.ndarray
    model: np.ndarray
    requests: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ip: np.ndarray
    tpl: np.ndarray

    def key(self, number: np.ndarray, window_hours: int) -> np.ndarray:
        """Sort key of (public account number, hour, model)."""
        return (number[self.acc] * window_hours + self.hour) * N_MODELS + self.model

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(
            *(
                np.concatenate([getattr(p, f.name) for p in parts]).astype(np.int64)
                for f in fields(Rows)
            )
        )


def build_traffic(
    pop: Population, infra: Infrastructure, params: SynthParams, *, rng: np.random.Generator
) -> Rows:
    """Generate every account's hourly traffic in the window.

    Parameters
    ----------
    pop, infra
        Outputs of the population and infrastructure stages.
    params
        Resolved synth parameters.
    rng
        Source of randomness.
    """
    rows = Rows.concat(
        [
            _ordinary(pop, infra, params, rng),
            _enterprise(pop, infra, params, rng),
            _extraction(pop, infra, params, rng),
            _card_testing(pop, infra, params, rng),
            _farming(pop, infra, params, rng),
        ]
    )
    # Sorted by (public id, hour, model). The bulk is already in order, so the stable
    # (run-merging) sort and the gathers below stay close to linear.
    order = np.argsort(rows.key(pop.number, params.window_days * 24), kind="stable")
    return Rows(*(getattr(rows, f.name)[order] for f in fields(Rows)))


def _models(hour: np.ndarray, params: SynthParams, rng: np.random.Generator) -> np.ndarray:
    """Benign model mix; the new model's share ramps up over three days after release."""
    release = params.release_day * 24 + 17
    ramp = np.clip((hour - release) / 72, 0, 1) * params.new_model_adoption
    u = rng.random(len(hour))
    return np.where(u < ramp, F2, np.where(rng.random(len(hour)) < 0.55, F1, MINI))


def _ordinary(pop: Population, infra: Infrastructure, params: SynthParams, rng) -> Rows:
    """Individuals, households, offices, universities, heavy users and camouflage traffic."""
    w = params.window_days * 24
    kind, traits = pop.kind, pop.traits
    camo = traits & TRAIT["camouflage"] > 0
    who = np.flatnonzero(
        pop.active
        & (
            np.isin(kind, [K["benign"], K["household"], K["office"], K["university"]])
            | (kind == K["heavy_user"])
            | camo
        )
    )
    # Rows come out ordered by public id and hour, which keeps later sorting cheap.
    who = who[np.argsort(pop.number[who])]
    heavy = kind[who] == K["heavy_user"]
    sigma = 1.0
    mu = np.log(params.benign_hours_mean) - sigma**2 / 2
    hours = np.ceil(rng.lognormal(mu, sigma, len(who)))
    hours[heavy] = rng.integers(80, 251, heavy.sum())
    hours = np.clip(hours, 1, w).astype(np.int64)
    acc = np.repeat(who, hours)
    first = np.clip(pop.created[acc] // HOUR + 1, 0, w - 1)
    # One search over all countries: country c's CDF is shifted up by c.
    cdf = activity_cdf(w)
    country = pop.country[acc].astype(np.int64)
    f0 = np.where(first > 0, cdf[country, np.maximum(first - 1, 0)], 0.0)
    u = f0 + rng.random(len(acc)) * (1 - f0)
    shifted = (cdf + np.arange(len(COUNTRIES))[:, None]).ravel()
    hour = np.searchsorted(shifted, u + country) - country * w
    # Batch jobs on cloud machines run around the clock.
    flat = (kind[acc] == K["heavy_user"]) & (traits[acc] & TRAIT["cloud_ip"] > 0)
    hour[flat] = first[flat] + (rng.random(flat.sum()) * (w - first[flat])).astype(np.int64)
    hour = np.clip(hour, 0, w - 1)
    position = np.repeat(np.arange(len(who)), hours)
    hour = np.sort(position * w + hour) - position * w

    req = np.ceil(rng.lognormal(np.log(params.benign_requests_per_hour) - 0.4, 0.9, len(acc)))
    is_heavy = kind[acc] == K["heavy_user"]
    req[is_heavy] = np.ceil(rng.uniform(0.2, 0.95, is_heavy.sum()) * params.rate_limit_per_hour)
    ratio_acc = rng.lognormal(np.log(0.35), 0.6, len(pop.kind))
    high = traits & TRAIT["high_output_ratio"] > 0
    ratio_acc[high] = rng.lognormal(np.log(3.0), 0.3, high.sum())
    per_req_in = rng.lognormal(np.log(700), 0.9, len(acc))
    inp = req * per_req_in
    out = inp * ratio_acc[acc] * rng.lognormal(0, 0.3, len(acc))
    ip, tpl = pick(*infra.acct_ip, acc, rng), pick(*infra.acct_tpl, acc, rng)
    first_row = np.cumsum(hours) - hours
    for chosen, first in ((ip, infra.first_ip), (tpl, infra.first_tpl)):
        forced = first[who] >= 0
        chosen[first_row[forced]] = first[who[forced]]
    return Rows(
        acc,
        hour,
        _models(hour, params, rng),
        req.astype(np.int64),
        np.maximum(inp, req).astype(np.int64),
        np.maximum(out, 1).astype(np.int64),
        ip,
        tpl,
    )


def _enterprise(pop: Population, infra: Infrastructure, params: SynthParams, rng) -> Rows:
    """Every key of an app sends the app's template through business hours."""
    w = params.window_days * 24
    keys = np.flatnonzero(pop.kind == K["enterprise_app"])
    parts = []
    for c, (_, offset, _) in enumerate(COUNTRIES):
        k = keys[pop.country[keys] == c]
        bh = business_hours(w, offset)
        on = rng.random((len(k), len(bh))) < 0.85
        on &= bh[None, :] * HOUR > pop.created[k][:, None]
        r, h = np.nonzero(on)
        parts.append((k[r], bh[h]))
    acc = np.concatenate([a for a, _ in parts]) if parts else np.zeros(0, int)
    hour = np.concatenate([h for _, h in parts]) if parts else np.zeros(0, int)
    req = np.ceil(rng.uniform(0.2, 0.7, len(acc)) * params.enterprise_rate_limit_per_hour)
    tpl = pick(*infra.acct_tpl, acc, rng)
    inp = req * (infra.tpl_tokens[tpl] + rng.lognormal(np.log(600), 0.5, len(acc)))
    out = inp * rng.uniform(0.05, 0.15, len(acc))
    return Rows(
        acc,
        hour,
        infra.enterprise_model[pop.group[acc]],
        req.astype(np.int64),
        inp.astype(np.int64),
        out.astype(np.int64),
        pick(*infra.acct_ip, acc, rng),
        tpl,
    )


def _extraction(pop: Population, infra: Infrastructure, params: SynthParams, rng) -> Rows:
    """Round-robin, near-limit, reasoning-heavy traffic sweeping capability categories."""
    w = params.window_days * 24
    limit = params.rate_limit_per_hour
    slots = np.flatnonzero((pop.kind == K["extraction"]) & (pop.traits & TRAIT["respawned"] == 0))
    g = pop.group[slots]
    camp = pop.g_campaign[g].astype(np.int64)
    camo = pop.traits[slots] & TRAIT["camouflage"] > 0
    weight = np.where(camo, params.camouflage_volume, 1.0)
    total = np.bincount(camp, weights=weight, minlength=len(params.campaigns))
    budget = np.array([c.n_requests for c in params.campaigns], dtype=float)
    share = budget[camp] * weight / np.maximum(total[camp], 1e-9)
    lo, hi = params.rate_limit_utilisation
    mean_req = (lo + hi) / 2 * limit
    hours = np.clip(np.round(share / mean_req), 1, w).astype(np.int64)
    hours[share < 1] = 0
    # Members take turns: member j works hours j, j+P, j+2P, … of the ring's cycle.
    period = np.maximum(w // np.maximum(hours, 1), 1)
    rank = slots - pop.g_start[g]
    phase = rng.integers(0, w, len(pop.g_kind))
    offset = (phase[g] + rank) % period
    acc = np.repeat(slots, hours)
    k = ranks_in_groups(hours)
    slot_of = np.repeat(np.arange(len(slots)), hours)
    start = np.clip(pop.created[acc] // HOUR + 1, 0, w - 1)
    base = offset[slot_of] + k * period[slot_of]
    hour = start + base * (w - start) // w
    jitter = rng.random(len(acc)) < 0.15
    hour[jitter] += rng.choice([-1, 1], jitter.sum())
    # Operators without a schedule: every turn lands hours off, so no period shows.
    lo_j, hi_j = params.aperiodic_jitter_hours
    g_jitter = rng.uniform(lo_j, hi_j, len(pop.g_kind))
    loose = pop.g_style[pop.group[acc]] == S["aperiodic_ring"]
    hour[loose] += np.round(rng.normal(0, g_jitter[pop.group[acc[loose]]])).astype(np.int64)
    hour = np.clip(hour, start, w - 1)
    # A banned member's later turns go to the account that replaced it.
    banned = hour * HOUR >= pop.ban_time[acc]
    heir = pop.successor[acc]
    acc = np.where(banned, heir, acc)
    keep = ~banned | (hour > pop.created[np.maximum(heir, 0)] // HOUR)
    acc, hour, slot_of = acc[keep], hour[keep], slot_of[keep]
    g = pop.group[acc]
    camp = pop.g_campaign[g].astype(np.int64)

    req = np.floor(rng.uniform(lo, hi, len(acc)) * limit).clip(1, limit)
    n_cat = np.array([len(c.categories) for c in params.campaigns])[camp]
    cat = (phase[g] // 7 + hour * n_cat // w) % n_cat
    shared = rng.random(len(acc)) < params.campaign_template_share
    tpl = np.where(
        shared,
        infra.campaign_tpl_base[camp] + cat,
        infra.ring_tpl_base[g]
        + cat * RING_TEMPLATES_PER_CATEGORY
        + rng.integers(0, RING_TEMPLATES_PER_CATEGORY, len(acc)),
    )
    inp = req * (infra.tpl_tokens[tpl] + rng.uniform(50, 400, len(acc)))
    out = req * rng.lognormal(np.log(2800), 0.35, len(acc))
    release = params.release_day * 24 + 17
    lag = np.array([c.pivot_lag_hours for c in params.campaigns])[camp]
    model = np.where((hour >= release + lag) & (rng.random(len(acc)) < 0.9), F2, F1)
    style = pop.g_style[g]
    # ... and one that never pivots: one model throughout.
    model[style == S["aperiodic_ring"]] = F1
    # Rings that share little vary their prompts per account (no ring or campaign
    # templates); a hub-template ring mostly sends its public hub template.
    loner = np.isin(style, LITTLE_SHARED)
    tpl[loner] = pick(*infra.acct_tpl, acc[loner], rng)
    hub = style == S["hub_template_ring"]
    on_hub = hub & (rng.random(len(acc)) < 0.6)
    tpl[on_hub] = infra.ring_hub_tpl[g[on_hub]]
    # The pool rotates: each day the ring works through the next few exits.
    p_off, p_items = infra.pool
    size = p_off[g + 1] - p_off[g]
    lo_d, hi_d = params.proxy_ips_per_day
    per_day = np.maximum(np.minimum(rng.integers(lo_d, hi_d + 1, len(pop.g_kind))[g], size), 1)
    j = (hour // 24 * per_day + rng.integers(0, 1 << 30, len(acc)) % per_day) % np.maximum(size, 1)
    ip = np.where(size > 0, p_items[np.minimum(p_off[g] + j, len(p_items) - 1)], -1)
    # Without a pool, each member goes through its own sticky exits.
    sticky = size == 0
    ip[sticky] = pick(*infra.acct_ip, acc[sticky], rng)
    return Rows(
        acc,
        hour,
        model,
        req.astype(np.int64),
        inp.astype(np.int64),
        out.astype(np.int64),
        ip,
        tpl,
    )


def _pool_pick(infra: Infrastructure, g: np.ndarray, rng) -> np.ndarray:
    p_off, p_items = infra.pool
    size = p_off[g + 1] - p_off[g]
    return p_items[p_off[g] + (rng.random(len(g)) * size).astype(np.int64)]


def _card_testing(pop: Population, infra: Infrastructure, params: SynthParams, rng) -> Rows:
    """A probe or two right after sign-up to see whether the key (and card) works."""
    w = params.window_days * 24
    testers = np.flatnonzero(pop.kind == K["card_testing"])
    n_rows = rng.integers(1, 3, len(testers))
    acc = np.repeat(testers, n_rows)
    hour = np.clip(pop.created[acc] // HOUR + 1 + ranks_in_groups(n_rows), 0, w - 1)
    req = rng.integers(1, 4, len(acc))
    return Rows(
        acc,
        hour,
        np.full(len(acc), MINI),
        req,
        req * rng.integers(5, 20, len(acc)),
        req * rng.integers(1, 10, len(acc)),
        _pool_pick(infra, pop.group[acc], rng),
        np.full(len(acc), infra.probe_tpl),
    )


def _farming(pop: Population, infra: Infrastructure, params: SynthParams, rng) -> Rows:
    """Each farm burns its accounts' free quota in lockstep on the ring's schedule."""
    w = params.window_days * 24
    quota, limit = params.free_tier_quota, params.rate_limit_per_hour
    per_row = max(1, min(limit // 2, 30))
    n_hours = max(1, quota // per_row)
    parts = []
    for gid in np.flatnonzero(pop.g_kind == K["free_tier_farming"]):
        members = pop.g_start[gid] + np.arange(pop.g_size[gid])
        start = int(np.clip(pop.created[members].max() // HOUR + 1, 0, w - 1))
        slots = np.sort(rng.choice(np.arange(start, w), min(n_hours, w - start), replace=False))
        on = rng.random((len(members), len(slots))) < 0.8
        r, h = np.nonzero(on)
        parts.append((members[r], slots[h]))
    acc = np.concatenate([a for a, _ in parts]) if parts else np.zeros(0, int)
    hour = np.concatenate([h for _, h in parts]) if parts else np.zeros(0, int)
    req = np.floor(rng.uniform(0.8, 1.0, len(acc)) * per_row).clip(1)
    inp = req * rng.uniform(150, 400, len(acc))
    return Rows(
        acc,
        hour,
        np.full(len(acc), MINI),
        req.astype(np.int64),
        inp.astype(np.int64),
        (inp * rng.uniform(1.0, 2.5, len(acc))).astype(np.int64),
        _pool_pick(infra, pop.group[acc], rng),
        rng.choice(infra.farm_tpl, len(acc)),
    )
