"""The core imports nothing outside itself: features plug in, the core never reaches for them."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrate

CORE = Path(orchestrate.__file__).parent / "core"


def imported(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (type-checking blocks and functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name}: a relative import"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "orchestrate")
    return found


def test_the_core_imports_nothing_of_orchestrate_outside_the_core() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) > 10
    outside = {
        f"{path.name}: {name}"
        for path in modules
        for name in imported(path)
        if name.split(".")[0] == "orchestrate" and not name.startswith("orchestrate.core")
    }
    assert not outside
