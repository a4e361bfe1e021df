"""Modules share code through public names: nothing imports another module's private one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = [ROOT / "src" / "iop_episodes", ROOT / "projections"]


def private_imports(path: Path) -> list[str]:
    """``module._name`` for each private name ``path`` imports from another module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.name)
def test_no_module_imports_a_private_name_of_another(package):
    """Shared helpers are public (the domain's first-entry helper is ``entries.first_entry``)."""
    offenders = {
        str(path.relative_to(ROOT)): names
        for path in sorted(package.rglob("*.py"))
        if (names := private_imports(path))
    }
    assert offenders == {}
