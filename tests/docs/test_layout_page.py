"""docs/layout.md is what docs/gen_layout.py writes from today's tree, the generator refuses gaps, and
every page (README.md included) names only source files, modules and names that exist."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def gen_layout() -> ModuleType:
    """``docs/gen_layout.py`` as a module (a script beside the pages, not a package)."""
    spec = importlib.util.spec_from_file_location("gen_layout", ROOT / "docs" / "gen_layout.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # before it runs: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_page_is_current(gen_layout: ModuleType) -> None:
    committed = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    assert committed == gen_layout.render(ROOT), "docs/layout.md is stale: run `python docs/gen_layout.py`"


def test_every_module_has_a_row(gen_layout: ModuleType) -> None:
    page = gen_layout.render(ROOT)
    package = ROOT / "src" / "conveyor"
    for module in package.rglob("*.py"):
        path = module.relative_to(package).as_posix()
        if module.name == "__init__.py" and module.parent != package:
            path = path.removesuffix("__init__.py")  # a subpackage's row is its folder
        assert f"| `{path}` |" in page


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_rows_follow_the_tree(gen_layout: ModuleType, tmp_path: Path) -> None:
    package = (
        _tree(
            tmp_path,
            {
                "pkg/__init__.py": '"""The package."""\n',
                "pkg/b.py": '"""B does ``this``."""\n',
                "pkg/a.py": '"""A: see :mod:`pkg.b`."""\n',
                "pkg/sub/__init__.py": '"""A subpackage."""\n',
                "pkg/sub/c.py": '"""C."""\n',
                "pkg/data/notes.py": '"""Not in a package: no __init__.py above it."""\n',
            },
        )
        / "pkg"
    )
    assert gen_layout.module_rows(package) == [
        ("__init__.py", "The package."),
        ("a.py", "A: see `pkg.b`."),
        ("b.py", "B does `this`."),
        ("sub/", "A subpackage."),
        ("sub/c.py", "C."),
    ]


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        ("One line.", "One line."),
        ("Wrapped over\n    two lines. Then more.\n\nA second paragraph.", "Wrapped over two lines. Then more."),
        (
            "A long first sentence " + "x " * 60 + "ends here. And a second one.",
            "A long first sentence " + "x " * 60 + "ends here.",
        ),
        ("Pipes | escaped.", "Pipes \\| escaped."),
    ],
)
def test_summary(gen_layout: ModuleType, docstring: str, expected: str) -> None:
    assert gen_layout.summary(f'"""{docstring}"""\n', name="m.py") == expected


def test_a_module_without_docstring_is_refused(gen_layout: ModuleType, tmp_path: Path) -> None:
    package = _tree(tmp_path, {"pkg/__init__.py": '"""The package."""\n', "pkg/bare.py": "X = 1\n"}) / "pkg"
    with pytest.raises(gen_layout.LayoutError, match=r"bare\.py: no module docstring"):
        gen_layout.module_rows(package)


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("src/conveyor/registry.py:ESTIMATORS", None),
        ("src/conveyor/serving.py:Admission.EXEMPT", None),
        ("src/conveyor/stages/", None),
        ("src/conveyor/nowhere.py", "src/conveyor/nowhere.py: no such file or folder"),
        ("src/conveyor/registry.py:NO_SUCH_TABLE", "src/conveyor/registry.py: defines no 'NO_SUCH_TABLE'"),
        ("src/conveyor/serving.py:Admission.NOPE", "src/conveyor/serving.py: defines no 'Admission.NOPE'"),
    ],
)
def test_guide_steps_are_checked(gen_layout: ModuleType, where: str, problem: str | None) -> None:
    assert gen_layout.check_step(ROOT, where) == problem


def test_a_moved_module_fails_the_guides(gen_layout: ModuleType, tmp_path: Path) -> None:
    """A tree without a module a guide names cannot be rendered: regenerating says what moved."""
    shutil.copytree(ROOT / "src", tmp_path / "src")
    for path, _ in gen_layout.TOP_LEVEL:
        (tmp_path / path).mkdir(parents=True, exist_ok=True)
    (tmp_path / "tests" / "unit").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "unit" / "test_stage_deps.py", tmp_path / "tests" / "unit")
    (tmp_path / "docs" / "monitoring.md").touch()
    (tmp_path / "docs" / "serving.md").touch()
    assert gen_layout.render(tmp_path).startswith("# Layout\n")
    (tmp_path / "src" / "conveyor" / "registry.py").unlink()
    with pytest.raises(gen_layout.LayoutError, match=r"A new estimator: src/conveyor/registry\.py: no such file"):
        gen_layout.render(tmp_path)


# Code spans naming tracked sources (`src/conveyor/io.py`, `src/conveyor/io.py:TRUSTED_TYPES`) or
# dotted names (`conveyor.io.TRUSTED_TYPES`). Outputs (data/raw/, reports/…) exist only after a run.
SOURCE_SPAN = re.compile(
    r"`((?:src|tests|docs|deploy|benchmarks|\.github|\.ci)/[^`<>{}*\s]*|conveyor(?:\.[A-Za-z_]+)+)`"
)
OUTPUTS = ("benchmarks/results/",)  # written by `make bench`, gitignored
FILE_SUFFIXES = (".json", ".yaml", ".yml", ".parquet", ".log", ".md", ".txt", ".skops", ".onnx")


def _as_step(span: str) -> str:
    """``conveyor.io.TRUSTED_TYPES`` as ``src/conveyor/io.py:TRUSTED_TYPES``; paths unchanged."""
    if not span.startswith("conveyor."):
        return span
    parts = span.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT / "src" / Path(*parts[:cut])
        for module in (base.with_suffix(".py"), base / "__init__.py"):
            if module.is_file():
                rest = ".".join(parts[cut:])
                return module.relative_to(ROOT).as_posix() + (f":{rest}" if rest else "")
    return span  # no module of that name: check_step says so


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))])
def test_pages_name_what_exists(gen_layout: ModuleType, page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    spans = {
        span
        for span in SOURCE_SPAN.findall(text)
        if ("/" in span or not span.endswith(FILE_SUFFIXES)) and not span.startswith(OUTPUTS)
    }
    problems = [problem for span in sorted(spans) if (problem := gen_layout.check_step(ROOT, _as_step(span)))]
    assert not problems, f"{page} names what does not exist: {problems}"


@pytest.mark.parametrize(
    ("span", "step"),
    [
        ("conveyor.io.TRUSTED_TYPES", "src/conveyor/io.py:TRUSTED_TYPES"),
        ("conveyor.stages", "src/conveyor/stages/__init__.py"),
        ("conveyor.nowhere.X", "src/conveyor/__init__.py:nowhere.X"),
    ],
)
def test_dotted_names_resolve_to_modules(span: str, step: str) -> None:
    assert _as_step(span) == step


def test_readme_links_point_at_files() -> None:
    """GitHub renders README.md, not the strict build: its relative links are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [target for target in re.findall(r"\]\(([^)]+)\)", text) if "://" not in target]
    assert targets
    missing = [target for target in targets if not (ROOT / target.split("#")[0]).exists()]
    assert not missing
