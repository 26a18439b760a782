"""The machine line every bench table carries: CPU model, cores, RAM, load, Python."""

from __future__ import annotations

import os
import platform


def machine(*, load: bool = False) -> str:
    """CPU model, cores, RAM and Python version; with ``load``, the load averages too
    (the machine may be shared, so times are read against it)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM"
    if load:
        text += ", load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{text}, Python {platform.python_version()}"
