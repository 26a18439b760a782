"""Run the ``graphinv`` command with a pause point, so a test can act at a known moment.

``GRAPHINV_TEST_PAUSE=module:Qualified.name:N`` wraps that function: when its N-th call
returns, the process prints ``PAUSED <pid>`` on stdout and sleeps
``GRAPHINV_TEST_PAUSE_SECONDS`` (default an hour: the test kills it). Everything else is the
real command (``python tests/paused_cli.py --db g.duckdb load folder``). Test code only:
graphinv itself has no pause hook.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from typing import Any


def install(spec: str, seconds: float) -> None:
    module_name, qualified, nth = spec.split(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = qualified.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def paused(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = original(*args, **kwargs)
        calls += 1
        if calls == int(nth):
            print(f"PAUSED {os.getpid()}", flush=True)
            time.sleep(seconds)
        return result

    setattr(owner, name, staticmethod(paused) if _is_static(owner, name) else paused)


def _is_static(owner: Any, name: str) -> bool:
    return isinstance(owner, type) and isinstance(owner.__dict__.get(name), staticmethod)


if __name__ == "__main__":
    pause = os.environ.get("GRAPHINV_TEST_PAUSE")
    if pause:
        install(pause, float(os.environ.get("GRAPHINV_TEST_PAUSE_SECONDS", "3600")))
    from graphinv.cli.main import cli

    cli(prog_name="graphinv", args=sys.argv[1:])
