"""Each module states its public surface in ``__all__`` (as httpx does), and the project keeps to it.

A package's ``__all__`` lists its submodules; a module's lists what it offers, each name defined
there; and no module, test or benchmark imports a public name from a Conveyor module that the
module does not export. Every package and module says its job in its docstring's first line.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "conveyor"
MODULES = sorted(
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if path.name != "__main__.py"
)
# Imported at its own import for the BentoML wiring: it needs a packaged model in the store.
NOT_IMPORTED = {"conveyor.serving.service"}


def source(module: str) -> Path:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def declared(module: str) -> list[str]:
    """``__all__`` as the module's source writes it."""
    for node in ast.parse(source(module).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    pytest.fail(f"{source(module)}: no __all__")


@pytest.mark.parametrize("module", MODULES)
def test_every_module_states_its_job_and_its_public_names(module: str) -> None:
    tree = ast.parse(source(module).read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{source(module)}: no docstring saying what the module is for"
    names = declared(module)
    if source(module).name == "__init__.py":
        children = sorted(p.stem if p.is_file() else p.name for p in source(module).parent.iterdir() if _is_module(p))
        assert sorted(names) == children, f"{module}: __all__ should list its submodules"
    elif module not in NOT_IMPORTED:
        loaded = importlib.import_module(module)
        missing = [name for name in names if not hasattr(loaded, name)]
        assert not missing, f"{module}: __all__ names what it does not define: {missing}"


def _is_module(path: Path) -> bool:
    if path.is_dir():
        return (path / "__init__.py").is_file()
    return path.suffix == ".py" and path.stem not in {"__init__", "__main__"}


def imports_of_project_names() -> list[tuple[str, str, str]]:
    """(importing file, module, name) for every ``from conveyor.<module> import name`` in the repository's code."""
    found = []
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "") in MODULES:
                    found += [(str(path.relative_to(ROOT)), str(node.module), alias.name) for alias in node.names]
    return found


def test_only_exported_names_are_imported_from_project_modules() -> None:
    outside = [
        f"{path}: {module}.{name}"
        for path, module, name in imports_of_project_names()
        if not name.startswith("_") and name not in declared(module)
    ]
    assert not outside, f"imported but not in the module's __all__: {outside}"
