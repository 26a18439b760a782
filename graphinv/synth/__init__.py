"""Synthetic AI-API platform with planted distillation campaigns and ground truth.

The generator runs in stages, one module each: ``population`` (accounts and the
structures they belong to), ``infra`` (IPs, cards, templates), ``traffic`` (hourly usage)
and ``assemble`` (the input-contract tables). ``next_day`` moves a platform on by a day
(bans, respawns, growth, a split) and ``delta`` cuts out what a later platform adds, for
incremental loads. See docs/synth.md.

Examples
--------
>>> from graphinv.synth import generate
>>> platform = generate(preset="small", seed=0)
>>> int((platform.labels["kind"] == "extraction").sum())
900
"""

from graphinv.synth.assemble import build_platform, generate
from graphinv.synth.delta import next_day_delta
from graphinv.synth.next_day import NEXT_DAY_TRAITS, NextDayParams, next_day, true_rings
from graphinv.synth.output import FORMATS, write_platform
from graphinv.synth.params import PRESETS, CampaignParams, SynthParams, resolve_params

__all__ = [
    "FORMATS",
    "NEXT_DAY_TRAITS",
    "PRESETS",
    "CampaignParams",
    "NextDayParams",
    "SynthParams",
    "build_platform",
    "generate",
    "next_day",
    "next_day_delta",
    "resolve_params",
    "true_rings",
    "write_platform",
]
