"""Synthetic AI-API platform with planted distillation campaigns and ground truth.

The generator runs in stages, one module each: ``population`` (accounts and the
structures they belong to), ``infra`` (IPs, cards, templates), ``traffic`` (hourly usage)
and ``assemble`` (the input-contract tables). See docs/synth.md.

Examples
--------
>>> from graphinv.synth import generate
>>> platform = generate(preset="small", seed=0)
>>> int((platform.labels["kind"] == "extraction").sum())
900
"""

from graphinv.synth.assemble import build_platform, generate
from graphinv.synth.output import FORMATS, write_platform
from graphinv.synth.params import PRESETS, CampaignParams, SynthParams, resolve_params

__all__ = [
    "FORMATS",
    "PRESETS",
    "CampaignParams",
    "SynthParams",
    "build_platform",
    "generate",
    "resolve_params",
    "write_platform",
]
