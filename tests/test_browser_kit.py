"""The Neo4j Browser kit: style, guide, the Browser zip, and a server that serves them."""

from __future__ import annotations

import html
import re
import socket
import urllib.request
import zipfile
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.cli.investigate import browser_kit_command
from graphinv.investigate import browser_kit
from graphinv.investigate.querylib import load_queries
from graphinv.stores.neo4j.local import LocalNeo4j

if "browser-kit" not in cli.commands:
    cli.add_command(browser_kit_command)

NODE_KEYS = {"diameter", "color", "border-color", "border-width", "text-color-internal",
             "font-size", "caption"}
REL_KEYS = {"color", "shaft-width", "font-size", "padding", "text-color-external",
            "text-color-internal", "caption"}
RULE = re.compile(r"(node|relationship)(\.[A-Za-z_]+)?\s*\{([^}]*)\}")


def test_style_covers_the_graph_model_with_valid_grass() -> None:
    text = browser_kit.style_text()
    rules = RULE.findall(text)
    assert len(rules) == text.count("}\n"), "every block parses as a rule"
    styled = set()
    for element, label, body in rules:
        keys = {line.split(":")[0].strip() for line in body.strip().splitlines()}
        assert keys <= (NODE_KEYS if element == "node" else REL_KEYS), (label, keys)
        styled.add(label.lstrip("."))
    assert {"Account", "Ring", "Campaign", "PaymentMethod", "IP", "PromptFingerprint",
            "Identifier", "IN_RING", "PAID_WITH"} <= styled
    assert '"#{rank} {id}"' in text, "rings captioned by rank"


def test_guide_runs_library_queries_with_their_parameters_set() -> None:
    page = browser_kit.guide_html()
    slides = re.findall(r"<slide.*?</slide>", page, flags=re.S)
    assert len(slides) >= 6
    titles = " ".join(re.findall(r"<h3>(.*?)</h3>", page))
    for topic in ("start here", "Top rings", "Open a ring", "Why this score",
                  "card, IP or template", "changed since the last sweep"):
        assert topic in titles
    library = {browser_kit.browser_cypher(q, from_ring=picked)
               for q in load_queries().values() for picked in (False, True)}
    set_by_slide: set[str] = set()
    styles = 0
    for slide in slides:
        for block in re.findall(r'<pre mode="(\w+)"[^>]*class="[^"]*runnable[^"]*">(.*?)</pre>',
                                slide, flags=re.S):
            mode, text = block[0], html.unescape(block[1])
            if mode == "command":
                set_by_slide.add(re.match(r":param (\w+) =>", text).group(1))
            elif mode == "cypher":
                assert text in library
                assert set(re.findall(r"\$(\w+)", text)) <= set_by_slide, text
            else:
                styles += 1
                assert text.startswith(":style\n") and "node.Ring" in text
    assert set_by_slide == {"ring_id"}, "Browser evaluates :param without other parameters"
    assert styles == 1 and "mode=\"style\"" not in slides[0], "the style is not slide 1"


def test_guide_queries_about_a_ring_pick_its_identifiers_themselves() -> None:
    query = load_queries()["ip-links"]
    text = browser_kit.browser_cypher(query, from_ring=True)
    assert set(re.findall(r"\$(\w+)", text)) == {"ring_id"}
    assert "MATCH (ip:IP {id: picked_ip})" in text
    assert browser_kit.browser_cypher(query).count("$ip") == 1


def test_style_gives_each_label_and_link_type_its_own_colour() -> None:
    rules = {label.lstrip("."): body for _, label, body in RULE.findall(browser_kit.style_text())}
    colours = {name: re.search(r"\bcolor: (#\w+)", body).group(1)
               for name, body in rules.items() if name}
    nodes = ["Ring", "Campaign", "Account", "PaymentMethod", "IP", "PromptFingerprint",
             "Identifier", "Sweep"]
    links = ["IN_RING", "PART_OF", "PAID_WITH", "CONNECTED_FROM", "SENT", "USES", "CONTINUES"]
    assert len({colours[n] for n in nodes}) == len(nodes)
    assert len({colours[t] for t in links}) == len(links)


def test_style_script_holds_the_style_as_browser_parses_it() -> None:
    import json

    rules = browser_kit.style_rules()
    assert rules["node.Ring"]["caption"] == "#{rank} {id}"
    assert rules["node.PaymentMethod"]["color"] == "#FFC454"
    script = browser_kit.style_script()
    payload = re.search(r"JSON.stringify\((\{.*\})\)\);", script).group(1)
    assert json.loads(payload) == rules
    assert "style" not in browser_kit.post_connect_command(), "no :style frame on connect"


def test_post_connect_command_is_what_the_local_server_sets(tmp_path: Path) -> None:
    conf = LocalNeo4j(home=tmp_path, http_port=7999).write_conf().read_text()
    expected = browser_kit.post_connect_command(http_port=7999)
    assert f"browser.post_connect_cmd={expected}\n" in conf


def fake_browser_jar(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        jar.writestr("browser/", b"")
        jar.writestr("browser/assets/", b"")
        jar.writestr("browser/index.html", "<html><head><title>B</title></head></html>")
        jar.writestr("browser/assets/app.js", "//")
    return path


def test_browser_zip_lays_out_what_neo4j_unpacks(tmp_path: Path) -> None:
    zipped = browser_kit.browser_zip(fake_browser_jar(tmp_path / "b.jar"), tmp_path / "w.zip")
    names = zipfile.ZipFile(zipped).namelist()
    assert names[0] == "browser/"
    folders = [i for i, n in enumerate(names) if n.endswith("/")]
    assert folders == list(range(len(folders))), "folders before files"
    assert {"browser/index.html", "browser/graphinv/guide.html",
            "browser/graphinv/graphinv.grass", "browser/graphinv/style.js"} <= set(names)
    index = zipfile.ZipFile(zipped).read("browser/index.html").decode()
    assert index.startswith('<html><head><script src="graphinv/style.js"></script>')
    assert not any(n.startswith("META-INF") for n in names)


def test_browser_kit_command_writes_the_kit(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["browser-kit", "--out", str(tmp_path / "kit"),
                                      "--no-local"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kit" / "guide.html").read_text().startswith("<article class=\"guide\">")
    assert "remote_content_hostname_whitelist" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.neo4j
def test_a_server_with_the_kit_serves_guide_and_style(neo4j_uri: str, tmp_path: Path) -> None:
    """A throw-away server (the session's jars, its own home and ports) with the kit in
    home/web serves it under /browser/graphinv/ and tells Browser to open it on connect."""
    shared = LocalNeo4j.from_env()
    assert shared.version(), "the session's local Neo4j jars are needed"
    server = LocalNeo4j(home=tmp_path / "neo4j", bolt_port=_free_port(),
                        http_port=_free_port(), heap="384m", pagecache="64m",
                        jars=shared.lib.resolve())
    browser_kit.install_local(server.home, server.lib)
    server.start(timeout=240)
    try:
        base = browser_kit.kit_url(http_port=server.http_port, host="127.0.0.1")
        with urllib.request.urlopen(f"{base}/guide.html", timeout=10) as response:
            # CORS for the server's own origin only, where Browser runs and fetches the guide.
            assert response.headers["Access-Control-Allow-Origin"] == server.origin
            assert response.read().decode() == browser_kit.guide_html()
        with urllib.request.urlopen(f"{base}/graphinv.grass", timeout=10) as response:
            assert response.read().decode() == browser_kit.style_text()
        with urllib.request.urlopen(f"{base}/style.js", timeout=10) as response:
            assert response.read().decode() == browser_kit.style_script()
        with urllib.request.urlopen(server.browser_url, timeout=10) as response:
            assert b"Neo4j Browser" in response.read() or response.status == 200
        with neo4j.GraphDatabase.driver(server.bolt_uri, auth=server.auth) as driver:
            config = {r["name"]: r["value"]
                      for r in driver.execute_query("CALL dbms.clientConfig()").records}
        assert config["browser.post_connect_cmd"] == browser_kit.post_connect_command(
            http_port=server.http_port)
        assert "localhost" in config["browser.remote_content_hostname_whitelist"]
    finally:
        server.stop()
