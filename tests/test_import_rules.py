"""The package layering holds: data/ <- model/ <- training/ <- evaluation/ <- configs/ <- entry
points. A package imports only the packages below it (transitively none above), so data/ never
loads the model, and no library package loads configs/ (Hydra's schemas import the libraries)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["data", "model", "training", "evaluation", "configs"]
# package -> the project packages it may import
ALLOWED = {
    "data": set(),
    "model": set(),
    "training": {"data", "model"},
    "evaluation": {"data", "model", "training"},
    "configs": {"data", "model", "training", "evaluation"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages named by the import statements of one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below(package):
    edges = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            edges[str(path.relative_to(ROOT))] = sorted(bad)
    assert not edges, f"forbidden imports from {package}/: {edges}"


def test_no_library_module_edits_sys_path():
    edits = re.compile(r"sys\.path\.(insert|append)\(|sys\.path\[")
    offenders = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                 if edits.search(p.read_text())]
    assert not offenders, offenders
