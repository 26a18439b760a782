"""Headless-Chromium screenshots of an investigator's day, to look at (docs/screenshots/).

Usage::

    python scripts/screenshot.py page URL OUT.png [--wait-ms 15000] [--size 1400,900]
    python scripts/screenshot.py day OUT_DIR [--work data/screenshots]

``page`` takes one screenshot of a URL. ``day`` plays the day end to end and shoots it:

1. a synthetic platform (two days: bans, respawns, growth) swept twice into the local Neo4j
   (``graphinv neo4j start`` first, with the ``GRAPHINV_NEO4J_*`` ports) and into DuckDB;
   between the sweeps an investigator actions the rings that day two bans and dismisses
   one ring that carries on;
2. Neo4j Browser connected as the start output says (its link, then the stored password
   pasted into the form): the guide on top, then every query of
   the guide run from its slide (clicked, then run), one screenshot each, with the count
   of rows Browser reports;
3. ``graphinv review --all`` after day two: respawns of actioned rings escalated, the
   dismissed ring silent;
4. the case file of the largest ring printed to PDF, every page converted to PNG
   (``pdftoppm``) and laid side by side.

Chromium comes from Debian (``apt-get install chromium``; ``poppler-utils`` for
``pdftoppm``); the Browser pages are driven with the ``playwright`` package on that
Chromium (no browser download). The flags keep it off the network.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        sys.exit("Error: chromium not found; install it with `apt-get install chromium`")
    return found


def screenshot(url: str, out: Path, *, wait_ms: int = 15000, size: str = "1400,900") -> Path:
    """One screenshot of a page, with Chromium's own headless mode."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium(), "--headless", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
             f"--screenshot={out.resolve()}", url],
            check=True, capture_output=True, timeout=120,
        )
    return out


# -- the day -------------------------------------------------------------------------------


def graphinv(*args: str, store: list[str], check: bool = True, **env: str) -> str:
    """Run the graphinv command of this checkout; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "graphinv.cli", "--quiet", *store, *args],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "190", **env},
    )
    if check and result.returncode not in (0, 10):
        sys.exit(f"graphinv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare(work: Path, bolt: str) -> dict[str, object]:
    """Two days swept into Neo4j and DuckDB, with decisions between them."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from graphinv.investigate.review import decide
    from graphinv.stores import open_store

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    graphinv("synth", str(work / "day1"), "--preset", "small", "--seed", "7", store=[])
    graphinv("synth", str(work / "day2"), "--next-day", str(work / "day1"), "--seed", "8",
             store=[])
    day2 = pd.read_parquet(work / "day2" / "accounts.parquet")
    banned = set(day2.loc[day2["status"] == "banned", "account_id"])
    stores = {"embedded": ["--db", str(work / "g.duckdb")], "neo4j": ["--neo4j", bolt]}
    picked: dict[str, object] = {}
    for name, flag in stores.items():
        if name == "neo4j":
            _wipe(bolt)
        graphinv("load", str(work / "day1"), store=flag)
        graphinv("sweep", store=flag)
        store = open_store(path=work / "g.duckdb", use_env=False) if name == "embedded" \
            else open_store(neo4j_uri=bolt, use_env=False)
        try:
            rings = store.read_rings()
            members = store.read_members()
            share = members.assign(gone=members["account_id"].isin(banned)).groupby(
                "ring_id")["gone"].mean()
            actioned = [r for r in rings["ring_id"] if share.get(r, 0) > 0.5]
            carrying = rings.loc[~rings["ring_id"].isin(actioned)
                                 & (rings["score"] >= 0.4)].tail(1)["ring_id"].tolist()
            for ring_id in actioned:
                decide(store, ring_id, status="actioned", by="ana",
                       note="accounts banned after review")
            for ring_id in carrying:
                decide(store, ring_id, status="dismissed", by="ben",
                       note="research group with a signed agreement")
            picked[name] = {"actioned": actioned, "dismissed": carrying}
        finally:
            store.close()
        graphinv("load", str(work / "day2"), store=flag)
        picked[f"{name}_sweep"] = graphinv("sweep", "--top", "5", store=flag)
    return {"stores": stores, **picked}


def _wipe(bolt: str) -> None:
    import neo4j

    from graphinv.stores.neo4j.local import local_auth

    with neo4j.GraphDatabase.driver(bolt, auth=local_auth(bolt)) as driver, \
            driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
                    ).consume()


def terminal_shot(text: str, title: str, out: Path) -> Path:
    """A terminal's output as a page, then a screenshot of it."""
    page = Path(tempfile.mkdtemp()) / "terminal.html"
    page.write_text(
        "<html><body style='background:#1e1e1e;color:#ddd;margin:12px'>"
        f"<h3 style='font-family:sans-serif;color:#fff'>{html.escape(title)}</h3>"
        "<pre style='font:12px/1.25 DejaVu Sans Mono,monospace'>"
        f"{html.escape(text)}</pre></body></html>", encoding="utf-8")
    lines = text.count("\n") + 4
    height = min(60 + lines * 16, 1600)
    return screenshot(page.resolve().as_uri(), out, wait_ms=500, size=f"1500,{height}")


def connect_browser(page, url: str, password: str) -> None:
    """Open Browser at the start output's link and connect as an investigator does: the
    link fills in the Bolt URL and user name, so only the password is typed."""
    page.goto(url)
    page.fill("input[data-testid='password']", password, timeout=90000)
    page.click("button[data-testid='connect']")
    page.wait_for_selector("text=graphinv: start here", timeout=90000)


def browser_day(url: str, password: str, out: Path) -> list[dict]:
    """Connect Neo4j Browser, shoot the guide, then click every query of every slide into
    the editor, run it as an investigator would, and shoot the result."""
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        connect_browser(page, url, password)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "browser-1-guide.png"))
        guide = page.locator("[data-testid='frame']", has_text="graphinv/guide.html").first
        slide = 0
        while True:
            slide += 1
            blocks = guide.locator("pre.runnable")
            for i in range(blocks.count()):
                block = blocks.nth(i)
                if not block.is_visible() or block.get_attribute("mode") == "style":
                    continue
                text = block.inner_text()
                block.click()
                page.wait_for_timeout(600)
                page.locator("button[data-testid='editor-Run']").first.click()
                top = page.locator("[data-testid='frame']").first
                shown = _wait_for_result(page, top)
                name = f"browser-s{slide}-q{i + 1}.png"
                page.screenshot(path=str(out / name))
                full = top.locator("[title='Fullscreen']")
                if "Displaying" in shown and full.count():  # a drawing: also full screen
                    full.first.click()
                    page.wait_for_timeout(3000)
                    page.mouse.move(620, 520)
                    for _ in range(4):  # zoom in (d3 zoom on the wheel) so captions read
                        page.mouse.wheel(0, -250)
                        page.wait_for_timeout(300)
                    page.wait_for_timeout(1000)
                    page.screenshot(path=str(out / f"browser-s{slide}-q{i + 1}-graph.png"))
                    page.locator("[title='Close fullscreen']").first.click()
                    page.wait_for_timeout(800)
                results.append({"slide": slide, "query": " ".join(text.split())[:110],
                                "result": _result_summary(shown), "shot": name})
                guide = page.locator("[data-testid='frame']",
                                     has_text="graphinv/guide.html").first
            following = guide.locator("[data-testid='nextSlide']")
            if slide >= 6 or not following.count() or not following.first.is_enabled():
                break
            following.first.click()
            page.wait_for_timeout(800)
        browser.close()
    return results


def _wait_for_result(page, frame, *, seconds: int = 90) -> str:
    """The frame's text once Browser has the result (records, a drawing, or a param)."""
    markers = ("Started streaming", "Displaying", "no records", "Successfully set",
               "Error")
    text = ""
    for _ in range(seconds * 2):
        text = frame.inner_text(timeout=30000)
        if any(m in text for m in markers):
            break
        page.wait_for_timeout(500)
    page.wait_for_timeout(1500)  # let a drawing settle
    return frame.inner_text(timeout=30000)


def _result_summary(text: str) -> str:
    """What Browser says about a result: records streamed, or nodes drawn, or a param."""
    for pattern in (r"Started streaming [\d,]+ records?[^\n]*", r"Displaying [^\n]*",
                    r"(?:no changes, )?no records", r"Successfully set[^\n]*",
                    r"Error[^\n]*"):
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    return text.strip().splitlines()[0][:80] if text.strip() else ""


def case_pages(db: Path, ring_id: str, work: Path, out: Path) -> Path:
    """The case file printed to PDF, its pages as PNG side by side."""
    from PIL import Image

    html_path = work / "case.html"
    graphinv("case", ring_id, "--html", str(html_path), store=["--db", str(db)])
    pdf = work / "case.pdf"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), "--headless", *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        "--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}",
                        html_path.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
    for old in work.glob("case-page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(work / "case-page")],
                   check=True)
    pages = [Image.open(p) for p in sorted(work.glob("case-page-*.png"))]
    width, height = pages[0].size
    across = min(len(pages), 6)
    sheet = Image.new("RGB", (width * across, height * -(-len(pages) // across)), "white")
    for i, image in enumerate(pages):
        sheet.paste(image, ((i % across) * width, (i // across) * height))
    target = out / "case-file-printed.png"
    sheet.save(target, optimize=True)
    return target


def day(out: Path, work: Path, *, reuse: bool = False) -> None:
    sys.path.insert(0, str(ROOT))
    from graphinv.stores.neo4j.local import LocalNeo4j

    server = LocalNeo4j.from_env()
    if not server.status().running:
        sys.exit("start the local Neo4j first: graphinv neo4j start (same GRAPHINV_NEO4J_* env)")
    out.mkdir(parents=True, exist_ok=True)
    if reuse and (work / "picked.json").exists():
        picked = json.loads((work / "picked.json").read_text())
    else:
        picked = prepare(work, server.bolt_uri)
        (work / "picked.json").write_text(json.dumps(picked, indent=2, default=str))

    review = graphinv("review", "--all", store=picked["stores"]["embedded"],
                      COLUMNS="200")
    terminal_shot(review, "graphinv review --all   (after the second day's sweep)",
                  out / "review-queue-day2.png")
    sweep_text = str(picked["embedded_sweep"])
    terminal_shot(sweep_text, "graphinv sweep   (second day)", work / "sweep-day2.png")

    results = browser_day(server.browser_url, server.password(), work)
    (work / "browser-results.json").write_text(json.dumps(results, indent=2))
    # A few of the Browser shots go with the docs; every one stays in the work folder.
    for name in ("browser-1-guide.png", "browser-s3-q2-graph.png", "browser-s3-q3.png",
                 "browser-s5-q2.png", "browser-s6-q1.png"):
        if (work / name).exists():
            shutil.copy(work / name, out / name)
    rings = json.loads(graphinv("rings", "--format", "json", "--limit", "200",
                                store=picked["stores"]["embedded"]))
    flagged = [r for r in rings if r["flagged"]] or rings
    largest = max(flagged, key=lambda r: r["size"])["ring_id"]
    case_pages(work / "g.duckdb", largest, work, out)
    for shot in out.glob("*.png"):
        shrink(shot)
    print(json.dumps(results, indent=2))


def shrink(path: Path, *, colours: int = 96) -> Path:
    """Re-save a screenshot with a palette (screens have few colours), for the docs."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("page", help="one screenshot of a URL")
    one.add_argument("url")
    one.add_argument("out", type=Path)
    one.add_argument("--wait-ms", type=int, default=15000)
    one.add_argument("--size", default="1400,900")
    whole = commands.add_parser("day", help="the investigator's day, shot end to end")
    whole.add_argument("out", type=Path)
    whole.add_argument("--work", type=Path, default=ROOT / "data" / "screenshots")
    whole.add_argument("--reuse", action="store_true",
                       help="Shoot the stores a previous run prepared in --work.")
    args = parser.parse_args()
    if args.command == "page":
        print(screenshot(args.url, args.out, wait_ms=args.wait_ms, size=args.size))
    else:
        day(args.out, args.work, reuse=args.reuse)
