"""The Neo4j Browser kit: a style (``.grass``) and a guide (HTML slides of clickable queries).

How the guide reaches Neo4j Browser: Browser fetches ``:play URL`` and ``:style URL`` over
HTTP, and only from hosts in ``browser.remote_content_hostname_whitelist`` (default
``guides.neo4j.com,localhost``). A Neo4j 5.26 server serves Browser from
``NEO4J_HOME/web/neo4j-browser*.zip`` when such a file exists, in preference to the
Browser jar on its classpath. :func:`browser_zip` writes that zip: the Browser's own files
plus ``graphinv/guide.html`` and ``graphinv/graphinv.grass``, so the server itself serves
the kit at ``/browser/graphinv/…`` with no extra web server and no config change beyond
``browser.post_connect_cmd``. The URL names ``localhost`` because that host is on the
default whitelist; the local server answers with ``Access-Control-Allow-Origin`` set to its
own origin ``http://127.0.0.1:PORT`` (never ``*``), so the Browser it serves there may fetch
the guide, and pages of other origins may not read the server's answers.

Examples
--------
>>> html = guide_html()
>>> html.count("<slide") >= 6, "runnable" in html
(True, True)
>>> post_connect_command(http_port=7474)
'play http://localhost:7474/browser/graphinv/guide.html'
"""

from __future__ import annotations

import html
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from graphinv.errors import GraphinvError
from graphinv.investigate.querylib import SavedQuery, load_queries

DATA_DIR = Path(__file__).parent / "data"
STYLE_PATH = DATA_DIR / "graphinv.grass"
KIT_FOLDER = "graphinv"  # under the Browser's root, so served at /browser/graphinv/
ZIP_NAME = "neo4j-browser.zip"  # the name Neo4j 5.26 looks for in NEO4J_HOME/web

# `:param x => expression` makes Browser evaluate the expression on the server, without any
# other parameter: only the ring pick may be a `:param`. Queries about the ring's card, IP,
# template or member find that identifier themselves from `$ring_id` (see _RING_PICKS).
_PICK_TOP_RING = (
    ":param ring_id => COLLECT { MATCH (s:Sweep) WITH s ORDER BY s.at DESC, s.id DESC "
    "LIMIT 1 MATCH (g:Ring {rank: 1})-[:FOUND_IN]->(s) RETURN g.id }[0]"
)
_LATEST_RING = (
    "MATCH (s:Sweep) WITH s ORDER BY s.at DESC, s.id DESC LIMIT 1\n"
    "MATCH (:Ring {sweep_id: s.id, id: $ring_id})<-[:IN_RING]-(m:Account)\n"
)


def _pick_shared(rel_type: str, variable: str) -> str:
    """Cypher that binds ``variable`` to the ring's identifier most members use."""
    return (
        _LATEST_RING
        + f"MATCH (m)-[:{rel_type}]->(x)\n"
        "WITH x, count(*) AS users ORDER BY users DESC, x.id LIMIT 1\n"
        f"WITH x.id AS {variable}\n"
    )


# Parameters a guide query takes from the ring rather than from a `:param` command: the
# most shared card, IP and template, and the member whose card most accounts share.
_RING_PICKS: dict[str, str] = {
    "card": _pick_shared("PAID_WITH", "picked_card"),
    "ip": _pick_shared("CONNECTED_FROM", "picked_ip"),
    "fingerprint": _pick_shared("SENT", "picked_fingerprint"),
    "account_id": (
        _LATEST_RING
        + "MATCH (m)-[:PAID_WITH]->(c)\n"
        "WITH m, COUNT { (c)<-[:PAID_WITH]-(:Account) } AS sharing\n"
        "ORDER BY sharing DESC, m.id LIMIT 1\n"
        "WITH m.id AS picked_account_id\n"
    ),
}


@dataclass(frozen=True)
class Slide:
    """One guide slide: a title, a lead sentence, and blocks (text, commands, queries).

    A ``("query", id)`` block shows the saved query; ``("ring-query", id)`` shows it with
    its card / IP / template / account parameter picked from the ring ``$ring_id``.
    """

    title: str
    lead: str
    blocks: tuple[tuple[str, str], ...]


SLIDES: tuple[Slide, ...] = (
    Slide(
        "graphinv: start here",
        "Coordinated account rings that distil AI models, found by graphinv sweeps.",
        (
            ("text", "Rings are nodes: <b>(:Account)-[:IN_RING]-&gt;(:Ring)</b>, with score, "
                     "rank, lineage status and an explanation; rings that share "
                     "infrastructure form a <b>(:Campaign)</b>. Accounts link to the cards "
                     "<b>(:PaymentMethod)</b>, <b>(:IP)</b>s and prompt templates "
                     "<b>(:PromptFingerprint)</b> they use. Colours: rings red, accounts "
                     "blue, cards gold, IPs cyan, templates green, other identifiers pink, "
                     "campaigns purple."),
            ("text", "See what the last sweep found, then pick a ring on the next slides:"),
            ("query", "top-rings"),
        ),
    ),
    Slide(
        "Top rings and campaigns",
        "Best rank first; the explanation quotes each signal against the platform baseline.",
        (("query", "top-rings"), ("text", "Rings sharing infrastructure, grouped:"),
         ("query", "campaigns")),
    ),
    Slide(
        "Open a ring",
        "Pick a ring, then draw the evidence: the cards, IPs and templates its members share.",
        (
            ("text", "Pick the top ring (or type <code>:param ring_id =&gt; 'R-…'</code> "
                     "with an id from the table):"),
            ("command", _PICK_TOP_RING),
            ("query", "ring-graph"),
            ("text", "Other rings on the same cards, IPs or templates (the operator's other "
                     "cells):"),
            ("query", "ring-neighbours"),
            ("text", "Its members as a table:"),
            ("query", "ring-members"),
        ),
    ),
    Slide(
        "Why this score?",
        "The strongest reasons first, then every feature value of the ring.",
        (("query", "ring-score-explained"),
         ("text", "The full breakdown with baselines and weights is in the case file: "
                  "<code>graphinv case RING_ID --html case.html</code>.")),
    ),
    Slide(
        "What a card, IP or template links to",
        "Follow the ring's most shared card, IP and template out to every account using it.",
        (
            ("ring-query", "card-links"),
            ("ring-query", "ip-links"),
            ("ring-query", "template-links"),
            ("text", "The member whose card the most accounts share:"),
            ("ring-query", "card-sharers"),
            ("ring-query", "account-overview"),
        ),
    ),
    Slide(
        "What changed since the last sweep",
        "Each ring's lineage as the sweep recorded it: new, grown, split, merged, respawned.",
        (("query", "ring-growth"),
         ("text", "Every saved query is also on the command line: "
                  "<code>graphinv queries list</code>, <code>graphinv queries run ID "
                  "--param k=v</code>; decisions on rings: <code>graphinv review</code>."),
         ("text", "The style is applied on connect; if the colours are lost, run:"),
         ("style", "")),
    ),
)


def style_text() -> str:
    """The graphinv ``.grass`` style."""
    return STYLE_PATH.read_text(encoding="utf-8")


def style_rules(text: str | None = None) -> dict[str, dict[str, str]]:
    """The style as Neo4j Browser keeps it: ``{"node.Ring": {"color": "#E0413A", …}}``.

    The same reading as Browser's own ``.grass`` parser (quotes dropped, one
    ``name: value`` per ``;``), so the style can be put in place before Browser starts.

    Examples
    --------
    >>> style_rules('node.Ring { color: #E0413A; caption: "#{rank} {id}"; }')
    {'node.Ring': {'color': '#E0413A', 'caption': '#{rank} {id}'}}
    """
    rules: dict[str, dict[str, str]] = {}
    selector, body, quoted, inside = "", "", False, False
    for char in text or style_text():
        if char in "\"'":
            quoted = not quoted  # quotes themselves are dropped, as Browser does
        elif quoted:
            body += char
        elif char == "{":
            inside = True
        elif char == "}":
            rules[selector] = _declarations(body)
            selector, body, inside = "", "", False
        elif inside:
            body += char
        elif not char.isspace():
            selector += char
    return rules


def _declarations(body: str) -> dict[str, str]:
    entries = {}
    for line in body.split(";"):
        parts = line.split(":")
        if len(parts) == 2:  # Browser skips a declaration with a second colon
            entries[parts[0].strip()] = parts[1].strip()
    return entries


def style_script() -> str:
    """JavaScript that puts the graphinv style into Browser's saved settings before it
    starts (``localStorage["neo4j.grass"]``), once per version of the style.

    Applied this way the style needs no ``:style`` command, so no frame of ``.grass`` text
    opens on connect. An investigator's own later changes stand until the style changes.
    """
    import hashlib
    import json

    rules = json.dumps(style_rules(), sort_keys=True)
    version = hashlib.sha256(rules.encode()).hexdigest()[:12]
    return (
        "// graphinv: the Browser style, applied once per style version (see browser_kit.py)\n"
        "try {\n"
        f"  if (localStorage.getItem('neo4j.graphinv.style') !== '{version}') {{\n"
        f"    localStorage.setItem('neo4j.grass', JSON.stringify({rules}));\n"
        f"    localStorage.setItem('neo4j.graphinv.style', '{version}');\n"
        "  }\n"
        "} catch (e) { /* storage blocked: :style from the guide's last slide still works */ }\n"
    )


def browser_cypher(query: SavedQuery, *, from_ring: bool = False) -> str:
    """A saved query as the guide shows it: optional parameters written as their defaults.

    Parameters without a default stay ``$name``; with ``from_ring`` those naming a card,
    IP, template or account (:data:`_RING_PICKS`) are instead bound by a leading clause
    that picks them from the ring ``$ring_id``, so the query needs only that parameter
    (Browser evaluates a ``:param`` expression without the other parameters). Defaults
    come from the validated YAML (numbers, booleans or null), never from data.
    """
    defaults = {p.name: p.default for p in query.parameters if not p.required}
    picked = [p.name for p in query.parameters if from_ring and p.name in _RING_PICKS]

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in picked:
            return f"picked_{name}"
        if name not in defaults:
            return match.group(0)
        value = defaults[name]
        if value is None:
            return "null"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return repr(value)
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    body = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", literal, query.query)
    if len(picked) > 1:
        raise GraphinvError(f"{query.id}: a guide query can pick one parameter from the ring")
    return "".join(_RING_PICKS[name] for name in picked) + body


def guide_html() -> str:
    """The Browser guide (``:play`` format) built from :data:`SLIDES` and the query library."""
    queries = load_queries()
    slide_template = Template((DATA_DIR / "guide_slide.html").read_text(encoding="utf-8"))
    slides = []
    for slide in SLIDES:
        body = [_block(kind, value, queries) for kind, value in slide.blocks]
        slides.append(
            slide_template.substitute(
                title=html.escape(slide.title), lead=html.escape(slide.lead), body="\n".join(body)
            )
        )
    page = Template((DATA_DIR / "guide.html").read_text(encoding="utf-8"))
    return page.substitute(slides="\n".join(slides))


def _block(kind: str, value: str, queries: dict[str, SavedQuery]) -> str:
    if kind == "text":
        return f"        <p>{value}</p>"
    if kind == "style":
        return _runnable(":style\n" + style_text(), "style")
    if kind == "command":
        return _runnable(value, "command")
    query = queries[value]
    header = f"        <h5>{html.escape(query.name)}</h5><p>{html.escape(query.description)}</p>"
    cypher = browser_cypher(query, from_ring=kind == "ring-query")
    return header + "\n" + _runnable(cypher, "cypher")


def _runnable(text: str, mode: str) -> str:
    return (
        f'        <pre mode="{mode}" class="pre-scrollable code runnable">'
        f"{html.escape(text.strip())}</pre>"
    )


def connect_help(
    *, bolt_uri: str, password_file: Path, new_password: str | None = None
) -> str:
    """How to connect to the local server, for the output of ``graphinv neo4j start``.

    The password itself appears only when ``new_password`` is given (the start that
    generated it); otherwise the text says where it is kept.

    Examples
    --------
    >>> text = connect_help(bolt_uri="bolt://127.0.0.1:7687",
    ...                     password_file=Path("h/conf/graphinv-password"))
    >>> print(text.splitlines()[0])
    Authentication is on: user neo4j, password in h/conf/graphinv-password (owner-only).
    >>> "s3cret" in connect_help(bolt_uri="bolt://127.0.0.1:7687", password_file=Path("p"),
    ...                          new_password="s3cret")
    True
    """
    if new_password is not None:
        password = (
            "Authentication is on. A password was generated for user neo4j; it is shown this "
            f"once and kept owner-only in {password_file}:\n  {new_password}"
        )
    else:
        password = (
            f"Authentication is on: user neo4j, password in {password_file} (owner-only)."
        )
    return (
        f"{password}\n"
        "In Browser (link above; user name and Bolt URL are filled in) paste the password and "
        "Connect: the graphinv style is applied and the guide opens.\n"
        f"graphinv reads the password itself: graphinv --neo4j {bolt_uri} rings"
    )


def kit_url(*, http_port: int = 7474, host: str = "localhost") -> str:
    """Where a server with the kit installed serves it."""
    return f"http://{host}:{http_port}/browser/{KIT_FOLDER}"


def post_connect_command(*, http_port: int = 7474, host: str = "localhost") -> str:
    """The ``browser.post_connect_cmd`` value: open the guide.

    The style is already in place (:func:`style_script`, loaded by the Browser zip's
    ``index.html``), so no ``:style`` frame of raw text opens above the guide.
    """
    return f"play {kit_url(http_port=http_port, host=host)}/guide.html"


def write_kit(out_dir: Path) -> dict[str, Path]:
    """Write ``guide.html`` and ``graphinv.grass`` to ``out_dir`` (to serve them elsewhere)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    guide = out_dir / "guide.html"
    guide.write_text(guide_html(), encoding="utf-8")
    style = out_dir / "graphinv.grass"
    shutil.copyfile(STYLE_PATH, style)
    return {"guide": guide, "style": style}


def browser_zip(browser_jar: Path, out: Path) -> Path:
    """Write a Browser zip for ``NEO4J_HOME/web/``: the jar's Browser files plus the kit.

    Neo4j unpacks the zip in entry order, creating folders only from folder entries and
    serving the first entry's folder, so folders come first and the root entry leads.

    Raises
    ------
    GraphinvError
        The jar holds no ``browser/`` folder (not a Neo4j Browser jar).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(browser_jar) as jar:
        entries = [e for e in jar.infolist() if e.filename.startswith("browser/")]
        if not entries:
            raise GraphinvError(f"{browser_jar} is not a Neo4j Browser jar (no browser/ folder)")
        folders = sorted({e.filename for e in entries if e.is_dir()} | {"browser/"})
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zipped:
            for folder in [*folders, f"browser/{KIT_FOLDER}/"]:
                zipped.writestr(folder, b"")
            for entry in entries:
                if entry.is_dir():
                    continue
                data = jar.read(entry)
                if entry.filename == "browser/index.html":
                    data = _with_style_script(data)
                zipped.writestr(entry.filename, data)
            zipped.writestr(f"browser/{KIT_FOLDER}/guide.html", guide_html())
            zipped.writestr(f"browser/{KIT_FOLDER}/graphinv.grass", style_text())
            zipped.writestr(f"browser/{KIT_FOLDER}/style.js", style_script())
    partial.replace(out)
    return out


def _with_style_script(index: bytes) -> bytes:
    """Browser's index.html loading the style script before Browser's own scripts."""
    tag = f'<script src="{KIT_FOLDER}/style.js"></script>'.encode()
    head = index.find(b"<head>")
    if head < 0:
        raise GraphinvError("the Browser's index.html has no <head>; cannot add the style")
    return index[: head + 6] + tag + index[head + 6 :]


def install_local(home: Path, lib: Path) -> Path:
    """Put the kit into a local server's ``home/web`` (effective at the next start).

    Parameters
    ----------
    home
        The server's home folder (``LocalNeo4j.home``).
    lib
        Its jar folder, which holds ``neo4j-browser-*.jar``.

    Raises
    ------
    GraphinvError
        No Browser jar in ``lib`` (install the server first: ``graphinv neo4j start``).
    """
    jars = sorted(Path(lib).glob("neo4j-browser-*.jar"))
    if not jars:
        raise GraphinvError(
            f"no neo4j-browser-*.jar in {lib}; install the local server first "
            "(graphinv neo4j start)"
        )
    return browser_zip(jars[-1], Path(home) / "web" / ZIP_NAME)
