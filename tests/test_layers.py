"""The package's layers import one way: each module only from its own layer or those below.

The order follows the pipeline (ingest → stores → detect → score → lineage → investigate),
with the shared contract at the bottom and the command line on top. A module's layer is
its longest matching prefix in LAYERS. Imports inside functions count too: a lazy import
is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "graphinv"

# Lowest first. Modules of one layer may import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("graphinv.errors", "graphinv.schema", "graphinv.output"),
    ("graphinv.synth",),
    ("graphinv.stores",),
    ("graphinv.ingest",),
    ("graphinv.detect",),
    ("graphinv.score",),
    ("graphinv.lineage",),
    ("graphinv.config",),
    ("graphinv.sweep", "graphinv.evaluate"),
    ("graphinv.engines",),
    ("graphinv.context",),
    ("graphinv.investigate",),
    ("graphinv.cli",),
    ("graphinv",),
)

# Inside stores/, the backends may use the shared base but not each other, and the base
# names no backend (the factory is the one place that does).
STORE_RULES = {
    "graphinv.stores.base": ("graphinv.stores.embedded", "graphinv.stores.neo4j"),
    "graphinv.stores.embedded": ("graphinv.stores.neo4j",),
}


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer; add it to LAYERS"
    return rank


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "graphinv" or name.startswith("graphinv.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_flow_one_way(path: Path) -> None:
    module = module_name(path)
    own = layer_of(module)
    upward = sorted(
        name for name in imports_of(path)
        if _is_module(name) and layer_of(name) > own and not module.startswith(name)
    )
    assert not upward, f"{module} (layer {own}) imports from layers above it: {upward}"
    for rule_module, forbidden in STORE_RULES.items():
        if module == rule_module:
            bad = sorted(n for n in imports_of(path) if n.startswith(forbidden))
            assert not bad, f"{module} must not import {bad}"


def test_the_loader_knows_no_store_by_name() -> None:
    for path in (PACKAGE / "ingest").rglob("*.py"):
        names = imports_of(path)
        concrete = sorted(n for n in names if n.startswith(("graphinv.stores.embedded",
                                                           "graphinv.stores.neo4j")))
        assert not concrete, f"{module_name(path)} imports concrete stores {concrete}"


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    # The check itself must be able to fail: a detect module importing the CLI.
    planted = tmp_path / "bad.py"
    planted.write_text("from graphinv.cli.main import cli\n")
    names = imports_of(planted)
    assert any(layer_of(n) > layer_of("graphinv.detect.projection") for n in names)


def _is_module(name: str) -> bool:
    """``from graphinv.x import y`` records both ``graphinv.x`` and ``graphinv.x.y``; only
    names that are modules or packages of graphinv count."""
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE / relative
    return name == "graphinv" or base.with_suffix(".py").is_file() or base.is_dir()
