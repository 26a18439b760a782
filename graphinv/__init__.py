"""graphinv: find coordinated account rings that distil AI models.

The public API, imported on first use so that ``import graphinv`` stays light:

>>> import graphinv
>>> sorted(graphinv.__all__)
['Case', 'Context', 'Settings', 'evaluate', 'generate', 'load_settings', 'run_sweep']
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Case": "graphinv.investigate.case",
    "Context": "graphinv.context",
    "Settings": "graphinv.config",
    "load_settings": "graphinv.config",
    "evaluate": "graphinv.evaluate",
    "generate": "graphinv.synth",
    "run_sweep": "graphinv.sweep",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'graphinv' has no attribute {name!r}")
