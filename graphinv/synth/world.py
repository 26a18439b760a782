"""Fixed facts of the synthetic world: codes, countries, models, rhythms, traits.

Examples
--------
>>> KINDS.index("extraction")
0
>>> trait_names(TRAIT["cgnat"] | TRAIT["vpn"])
'cgnat;vpn'
"""

from __future__ import annotations

import numpy as np

# Label kinds; the first three are adversarial.
KINDS = (
    "extraction",
    "card_testing",
    "free_tier_farming",
    "enterprise_app",
    "university",
    "office",
    "household",
    "heavy_user",
    "benign",
)
K = {name: i for i, name in enumerate(KINDS)}
ADVERSARIAL = (K["extraction"], K["card_testing"], K["free_tier_farming"])

TRAITS = (
    "cgnat",
    "vpn",
    "office_nat",
    "university_nat",
    "household_card",
    "org_card",
    "enterprise_template",
    "popular_template",
    "course_template",
    "heavy_traffic",
    "high_output_ratio",
    "cloud_ip",
    "prepaid_card",
    "residential_proxy_ip",
    "burst_signup",
    "program_signup",
    "camouflage",
    "banned",
    "respawned",
    "suspended",
    # Harder extraction rings (one trait per ring style, on every member).
    "star_card_ring",
    "star_proxy_ring",
    "funding_tree_ring",
    "sparse_ring",
    "hub_ip_ring",
    "hub_template_ring",
    "aperiodic_ring",
    # Benign users on the hub IP or template such a ring hides behind.
    "ring_hub_user",
    # Benign twins of the harder rings.
    "company_card",
    "campus_class",
)
TRAIT = {name: np.uint32(1 << i) for i, name in enumerate(TRAITS)}

# Ring styles: how a group shares identifiers. 0 is the ordinary extraction ring (card
# groups of a few, a rotating proxy pool, ring templates) or ordinary benign structure.
# The first seven are extraction styles, the last two benign twins (docs/synth.md).
STYLES = (
    "plain",
    "star_card_ring",
    "star_proxy_ring",
    "funding_tree_ring",
    "sparse_ring",
    "hub_ip_ring",
    "hub_template_ring",
    "aperiodic_ring",
    "company_card",
    "campus_class",
)
S = {name: i for i, name in enumerate(STYLES)}
# Extraction styles whose members share little beyond their one defining identifier: no
# ring proxy pool (each member keeps its own sticky exits) and no ring templates.
LITTLE_SHARED = (
    S["star_card_ring"],
    S["star_proxy_ring"],
    S["funding_tree_ring"],
    S["sparse_ring"],
    S["hub_ip_ring"],
    S["hub_template_ring"],
)

SIGNUP_PATHS = ("self_serve", "education", "startup_program", "research_access", "enterprise")
TIERS = ("free", "standard", "verified", "enterprise")
STATUSES = ("active", "suspended", "banned")
MODELS = ("frontier-1", "frontier-1-mini", "frontier-2")
CATEGORIES = (
    "chat",
    "summarise",
    "translate",
    "writing",
    "classification",
    "coding",
    "math",
    "agentic_tool_use",
    "science",
    "reasoning_puzzles",
)
C = {name: i for i, name in enumerate(CATEGORIES)}

# (ISO code, UTC offset in whole hours, share of benign sign-ups)
COUNTRIES = (
    ("US", -5, 0.27),
    ("IN", 5, 0.12),
    ("BR", -3, 0.06),
    ("GB", 0, 0.06),
    ("DE", 1, 0.06),
    ("FR", 1, 0.04),
    ("JP", 9, 0.05),
    ("KR", 9, 0.04),
    ("CA", -5, 0.04),
    ("AU", 10, 0.03),
    ("SG", 8, 0.03),
    ("ID", 7, 0.04),
    ("MX", -6, 0.04),
    ("NG", 1, 0.03),
    ("PL", 1, 0.03),
    ("ES", 1, 0.06),
)
COUNTRY_CODES = tuple(c for c, _, _ in COUNTRIES)
COUNTRY_WEIGHTS = np.array([w for _, _, w in COUNTRIES]) / sum(w for _, _, w in COUNTRIES)
# Residential proxy networks sell exits mostly in rich, high-traffic countries.
PROXY_COUNTRIES = np.array([0, 3, 4, 5, 8, 9, 2, 14])

FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "hotmail.com")
FREE_MAIL_WEIGHTS = np.array([0.55, 0.15, 0.1, 0.1, 0.05, 0.05])
DISPOSABLE_MAIL = ("tempmail.dev", "mailinator.net", "throwmail.io", "10min.email")

HOUR = 3600
DAY = 24 * HOUR


def trait_names(mask: int) -> str:
    """The ``;``-joined trait names of a bit mask, in the order of TRAITS."""
    return ";".join(name for i, name in enumerate(TRAITS) if int(mask) >> i & 1)


def activity_cdf(window_hours: int, start_weekday: int = 0) -> np.ndarray:
    """Cumulative activity over the window's UTC hours, one row per country.

    Local afternoons peak, nights are quiet, weekends carry about half a weekday.
    """
    t = np.arange(window_hours)
    offsets = np.array([o for _, o, _ in COUNTRIES])[:, None]
    local = t[None, :] + offsets
    hod = local % 24
    dow = (local // 24 + start_weekday) % 7
    diurnal = 0.08 + np.exp(-(((hod - 14.5) / 4.5) ** 2)) + 0.4 * np.exp(-(((hod - 21) / 2) ** 2))
    weekly = np.where(dow >= 5, 0.55, 1.0)
    w = diurnal * weekly
    cdf = np.cumsum(w, axis=1)
    return cdf / cdf[:, -1:]


def business_hours(window_hours: int, offset: int, start_weekday: int = 0) -> np.ndarray:
    """UTC hour indices that fall on local weekdays 09:00-17:59 for a UTC offset."""
    local = np.arange(window_hours) + offset
    hod, dow = local % 24, (local // 24 + start_weekday) % 7
    return np.flatnonzero((hod >= 9) & (hod < 18) & (dow < 5))
