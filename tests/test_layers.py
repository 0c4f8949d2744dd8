"""The import rules docs/architecture.md states, checked on the source (no import runs).

- nothing under src/ imports Snakemake (the library is usable without it);
- the registry imports only the standard library (the workflow reads it while Snakemake starts);
- the modules the workflow imports while planning import no torch at module level.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "featscope"
PLANNING = [
    "registry.py",
    "config.py",
    "plan.py",
    "packing.py",
    "device.py",
    "io.py",
    "observables/__init__.py",
    "losses.py",
]


def _imports(path: Path, module_level_only: bool) -> set[str]:
    """Top-level package names imported by the file (absolute imports; relative ones as '.')."""
    tree = ast.parse(path.read_text())
    if module_level_only:  # imports under a module-level if/try still run at import time
        blocks = [top for top in tree.body if isinstance(top, ast.If | ast.Try)]
        nodes = tree.body + [n for top in blocks for n in ast.walk(top)]
    else:
        nodes = list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else node.module.split(".")[0])
    return names


def test_the_library_never_imports_snakemake():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "snakemake" in _imports(p, False)]
    assert offenders == []


def test_the_registry_imports_only_the_standard_library():
    imported = _imports(SRC / "registry.py", False) - {"__future__"}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


@pytest.mark.parametrize("name", PLANNING)
def test_planning_modules_import_no_torch_at_module_level(name):
    path = SRC / name
    if not path.exists():
        pytest.skip(f"{name} is gone")
    assert "torch" not in _imports(path, True)


def test_the_checks_see_imports():
    """The parser finds what it should: a module-level torch import and a lazy one."""
    assert "torch" in _imports(SRC / "models.py", True)
    assert "torch" in _imports(SRC / "io.py", False) and "torch" not in _imports(SRC / "io.py", True)
