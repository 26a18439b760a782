"""Take a headless Chromium screenshot of a page (Neo4j Browser, a case file, …).

Usage: python scripts/screenshot.py URL OUT.png [--wait-ms 15000] [--size 1400,900]

Chromium comes from Debian (`apt-get install chromium`). The flags keep it off the network
(this machine reaches only package registries) and out of any real profile.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(url: str, out: Path, *, wait_ms: int = 15000, size: str = "1400,900") -> Path:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Error: chromium not found; install it with `apt-get install chromium`")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", f"--window-size={size}",
                f"--virtual-time-budget={wait_ms}", f"--screenshot={out.resolve()}", url,
            ],
            check=True, capture_output=True, timeout=120,
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--wait-ms", type=int, default=15000)
    parser.add_argument("--size", default="1400,900")
    args = parser.parse_args()
    print(screenshot(args.url, args.out, wait_ms=args.wait_ms, size=args.size))
