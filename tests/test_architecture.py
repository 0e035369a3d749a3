"""The house's shape: dependencies point one way and modules stay readable.

networks <- {verify, attacks, adaptation} <- reports <- nnaudit (the glue).  A
package may import its own modules and those of lower layers, never a higher
layer's nor a sibling's (verify and attacks share code by moving it down into
networks).  ``nnaudit.errors`` and ``nnaudit._lazy`` are the foundation every
layer may use.  The scan reads every import statement (top-level or inside a
function) and every string that names a module exactly (the lazy tables).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"networks": 0, "verify": 1, "attacks": 1, "adaptation": 1, "reports": 2, "nnaudit": 3}
FOUNDATION = {"errors", "_lazy"}
MODULE_NAME = re.compile(r"^nnaudit(\.\w+)+$")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _targets(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for each nnaudit module the tree imports or names in a string."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "nnaudit":
                out += [(node.lineno, f"nnaudit.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            out.append((node.lineno, node.value))
    return out


def _package_of(module: str) -> str | None:
    """The layer package of ``nnaudit.x.y`` (None: the foundation or not ours)."""
    parts = module.split(".")
    if parts[0] != "nnaudit" or len(parts) < 2 or parts[1] in FOUNDATION:
        return None
    return parts[1] if parts[1] in LAYER else "nnaudit"


def violations(root: Path) -> list[str]:
    """Every import under ``root`` that points up or sideways, as ``file:line pkg -> module``."""
    found = []
    for package in LAYER:
        for path in sorted((root / package).rglob("*.py")):
            for line, module in _targets(ast.parse(path.read_text(), str(path))):
                target = _package_of(module)
                if target is None or target == package:
                    continue
                if LAYER[target] >= LAYER[package]:
                    found.append(f"{path.relative_to(root)}:{line} {package} -> {module}")
    return found


def test_dependencies_point_one_way() -> None:
    assert violations(ROOT) == []


def test_the_scan_catches_upward_and_sideways_imports(tmp_path: Path) -> None:
    for package in LAYER:
        (tmp_path / package).mkdir()
    (tmp_path / "networks" / "a.py").write_text("def f():\n    from nnaudit.verify.smt import real\n")
    (tmp_path / "verify" / "b.py").write_text("import nnaudit.attacks.api\nfrom nnaudit.networks import load\n")
    (tmp_path / "attacks" / "c.py").write_text("TABLE = {'x': 'nnaudit.reports.schema'}\nfrom nnaudit.errors import DataError\n")
    (tmp_path / "reports" / "d.py").write_text("from nnaudit import verify\n")
    (tmp_path / "nnaudit" / "e.py").write_text("from nnaudit.reports import schema\nfrom nnaudit.config import x\n")
    assert violations(tmp_path) == ["networks/a.py:2 networks -> nnaudit.verify.smt",
                                    "verify/b.py:1 verify -> nnaudit.attacks.api",
                                    "attacks/c.py:1 attacks -> nnaudit.reports.schema"]


def _sources() -> list[Path]:
    return sorted(p for package in LAYER for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_readable(path: Path) -> None:
    """A module is one concept (under ~450 lines); a function fits on a screen (~60)."""
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
