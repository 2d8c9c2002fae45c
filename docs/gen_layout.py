"""Write ``docs/layout.md`` from the package tree, so the layout page cannot go stale.

One row per package and module of ``src/conveyor/``, with the summary of its docstring;
the repository's top-level entries; the test folders; and where a new stage, estimator, monitor
check, serving route or feature kind goes, every path and name of which must exist::

    python docs/gen_layout.py           # rewrite docs/layout.md (`make docs` runs it)
    python docs/gen_layout.py --check   # exit 1 if docs/layout.md differs from what it would write

``tests/docs/test_layout_page.py`` asserts the committed page equals the output: a module moved,
added or re-described without regenerating fails the suite, and so does a guide naming a file,
function or class that no longer exists.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path("docs/layout.md")
PACKAGE = Path("src/conveyor")


class LayoutError(Exception):
    """The tree cannot be described: a module without a docstring, or a guide naming what is gone."""


# The repository's top level: hand-written, but every path is checked to exist.
TOP_LEVEL: tuple[tuple[str, str], ...] = (
    ("dvc.yaml", "the pipeline: the only orchestrator, each stage with the params and modules it reads"),
    ("params.yaml", "the control panel every stage reads ([Pipeline and params](pipeline.md))"),
    ("bentofile.yaml", "the bento: the service, its source and the data contract"),
    ("pyproject.toml", "the project, its dependency groups (dev, monitor, docs) and the tools' settings"),
    ("uv.lock", "every dependency pinned; `make setup` installs exactly this"),
    ("Makefile", "every command; `make help` lists them"),
    ("mkdocs.yml", "this site; `make docs` builds it, `make lint` builds it strictly"),
    (".ci/run", "CI's entry point: `make run` on a clean clone must change no tracked file, then lint and test"),
    ("data/", "`penguins.csv` and `contract.yaml` (git); DVC-tracked `raw/`, `validated/`, `split/` outputs"),
    ("models/", "`model.skops` (DVC), `model.json` and `tuned_params.json` (git)"),
    ("reports/", "metrics, evaluation, plots, tuning, validation, the gate's verdict, package tags (git)"),
    ("requirements/", "`serve.txt`: the bento's pins, exported from `uv.lock`"),
    ("deploy/", "kustomize base, staging and prod overlays, Argo CD project and Application"),
    (".github/workflows/", "checks, model report and its comment, deploy, monitor, retrain ([CI/CD](ci-cd.md))"),
    ("benchmarks/", "`make bench`: pipeline, serving and tuning against baselines measured in the same run"),
    ("docs/", "this site's pages; `gen_layout.py` writes this one"),
    ("tests/", "the suite (below); `slow` marks the integration tests"),
)


@dataclass(frozen=True)
class Step:
    """One place to edit: ``where`` is a path, or ``path:Name`` / ``path:Class.member`` inside it."""

    where: str
    what: str


@dataclass(frozen=True)
class Guide:
    """Where one kind of addition goes, as the places to edit in order."""

    title: str
    steps: tuple[Step, ...]


GUIDES: tuple[Guide, ...] = (
    Guide(
        "A new pipeline stage",
        (
            Step(
                "src/conveyor/stages/",
                "a module `<stage>.py`: a pure core taking data and typed config, and a thin `run` that resolves paths and calls `io`",
            ),
            Step("src/conveyor/cli.py:STAGE_COMMANDS", "its `conveyor <stage>` command and the path options it takes"),
            Step(
                "dvc.yaml",
                "the stage: `cmd`, `deps` (its inputs and every `src/conveyor` module it imports), `params` (each key it reads), `outs`",
            ),
            Step("src/conveyor/artifacts.py", "each file it hands to another stage, as a typed model"),
            Step("src/conveyor/config.py:Config", "its `params.yaml` section, if it has settings"),
            Step("tests/unit/test_stage_deps.py", "checks the `deps` you listed against the stage's imports"),
        ),
    ),
    Guide(
        "A new estimator",
        (
            Step("src/conveyor/registry.py:ESTIMATORS", "its `params.yaml` name, per task, as `module:Class`"),
            Step(
                "src/conveyor/registry.py:PARAMETERS",
                "its keyword arguments (scikit-learn's, so loading the config imports none)",
            ),
            Step("src/conveyor/registry.py:DEFAULT_SPACES", "the space `tune` searches when `tune.space` is empty"),
            Step(
                "src/conveyor/io.py:TRUSTED_TYPES", "the types skops may load from its saved file; any other is refused"
            ),
            Step(
                "src/conveyor/compiled.py:register_boosting_converter",
                "its ONNX converter, if skl2onnx has none (else scikit-learn serves it)",
            ),
            Step("src/conveyor/estimators.py", "an adapter, if it does not behave like a scikit-learn estimator"),
        ),
    ),
    Guide(
        "A new monitor check",
        (
            Step(
                "src/conveyor/monitor.py:assess",
                "call the check beside the others (a function like `_pipeline_time`) and add its result to `checks`",
            ),
            Step("src/conveyor/artifacts.py:CheckResult", "what each check returns: name, value, threshold, status"),
            Step("src/conveyor/config.py:MonitorConfig", "its threshold, as a `monitor.*` key (and in `params.yaml`)"),
            Step("docs/monitoring.md", "its row in the checks table"),
        ),
    ),
    Guide(
        "A new serving route",
        (
            Step(
                "src/conveyor/serving.py:ServingApp.__init__",
                "its `Route` in the route list (prediction routes in `predictions`)",
            ),
            Step(
                "src/conveyor/serving.py:openapi",
                "its entry in the OpenAPI document, which is built separately from the route list",
            ),
            Step(
                "src/conveyor/serving.py:Admission.EXEMPT",
                "its path, if it must answer past `serve.max_concurrency` (as the probes do)",
            ),
            Step("src/conveyor/service.py", "only if BentoML itself must know of it"),
            Step("docs/serving.md", "its row in the endpoints table"),
        ),
    ),
    Guide(
        "A new feature kind (beside numeric and categorical)",
        (
            Step(
                "src/conveyor/contract.py:ColumnType",
                "the contract's column type, and its pandera check in `pandera_schema`",
            ),
            Step("src/conveyor/config.py:FeaturesConfig", "its `features.*` keys"),
            Step(
                "src/conveyor/features.py:FeatureSpec",
                "the kind's columns; `resolve_features` fills them, `build_preprocessor` adds its branch, `model_frame` its canonical dtype",
            ),
            Step("src/conveyor/request.py:field_type", "the JSON type the service accepts for it"),
            Step(
                "src/conveyor/compiled.py:OnnxPredictor.feed_rows",
                "its ONNX input tensor (or leave the kind to the scikit-learn path)",
            ),
        ),
    ),
)


# A docstring's first paragraph up to this long is shown whole; a longer one, its first sentence.
SHORT = 120


def summary(source: str, *, name: str) -> str:
    """A module's docstring summary as Markdown: its first paragraph, or that paragraph's first sentence.

    ``name`` (the file) is for the error when there is no docstring.
    """
    docstring = ast.get_docstring(ast.parse(source))
    if not docstring or not docstring.strip():
        raise LayoutError(f"{name}: no module docstring; its first sentence says what the module is for")
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    match = re.match(r"(.+?[.!?])(?=\s|$)", paragraph)
    if len(paragraph) > SHORT and match:
        paragraph = match.group(1)
    paragraph = re.sub(r":[a-z]+:`~?([^`]+)`", r"``\1``", paragraph)  # :mod:`x` (Sphinx roles)
    return paragraph.replace("``", "`").replace("|", "\\|")


def module_rows(package: Path, *, prefix: str = "") -> list[tuple[str, str]]:
    """``(path under the package, summary)`` for ``package``'s modules, then its subpackages', in order."""
    rows: list[tuple[str, str]] = []
    init = package / "__init__.py"
    if not init.is_file():
        raise LayoutError(f"{package}: not a package (no __init__.py)")
    rows.append((prefix or "__init__.py", summary(init.read_text(encoding="utf-8"), name=str(init))))
    for module in sorted(package.glob("*.py")):
        if module.name != "__init__.py":
            rows.append((f"{prefix}{module.name}", summary(module.read_text(encoding="utf-8"), name=str(module))))
    for child in sorted(path for path in package.iterdir() if (path / "__init__.py").is_file()):
        rows += module_rows(child, prefix=f"{prefix}{child.name}/")
    return rows


def suite_folders(tests: Path) -> list[tuple[str, str]]:
    """``(folder, its conftest's summary or "")`` per folder of tests or fixtures.

    Folders, not test modules: adding a test should not make this page stale.
    """
    folders = []
    for folder in sorted({path.parent for pattern in ("test_*.py", "conftest.py") for path in tests.rglob(pattern)}):
        conftest = folder / "conftest.py"
        about = summary(conftest.read_text(encoding="utf-8"), name=str(conftest)) if conftest.is_file() else ""
        folders.append((f"{folder.relative_to(tests.parent).as_posix()}/", about))
    return folders


def _defines(body: Iterable[ast.stmt], name: str) -> ast.stmt | None:
    """The statement of ``body`` that defines ``name`` (a function, class or assignment), if any."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return node
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return node
    return None


def check_step(root: Path, where: str) -> str | None:
    """Why ``where`` (``path``, ``path:Name`` or ``path:Class.member``) does not exist, or ``None``."""
    path, _, qualified = where.partition(":")
    if not (root / path).exists():
        return f"{path}: no such file or folder"
    if not qualified:
        return None
    body: Iterable[ast.stmt] = ast.parse((root / path).read_text(encoding="utf-8")).body
    for part in qualified.split("."):
        node = _defines(body, part)
        if node is None:
            return f"{path}: defines no {qualified!r}"
        body = node.body if isinstance(node, ast.ClassDef) else ()
    return None


def check_guides(root: Path, guides: Sequence[Guide]) -> None:
    """Raise :class:`LayoutError` naming every step whose path or name is gone."""
    problems = [
        f"{guide.title}: {problem}"
        for guide in guides
        for step in guide.steps
        if (problem := check_step(root, step.where))
    ]
    problems += [f"top level: {path}: no such file or folder" for path, _ in TOP_LEVEL if not (root / path).exists()]
    if problems:
        raise LayoutError("the layout page names what does not exist:\n  " + "\n  ".join(problems))


def render(root: Path = ROOT, guides: Sequence[Guide] = GUIDES) -> str:
    """The whole of ``docs/layout.md`` for the tree at ``root``."""
    check_guides(root, guides)
    out = [
        "# Layout",
        "",
        "<!-- Generated by docs/gen_layout.py: do not edit. Edit the docstrings, then `make docs`. -->",
        "",
        "Generated from the tree and its docstrings by `docs/gen_layout.py`; a test fails when it is stale.",
        "",
        "## The repository",
        "",
        "| path | what |",
        "|---|---|",
        *(f"| `{path}` | {what} |" for path, what in TOP_LEVEL),
        "",
        "## `src/conveyor/`",
        "",
        "Each package and module, with the summary of its docstring.",
        "",
        "| module | its job |",
        "|---|---|",
        *(f"| `{path}` | {about} |" for path, about in module_rows(root / PACKAGE)),
        "",
        "## `tests/`",
        "",
        "Each folder of tests, with the summary of its `conftest.py` (its fixtures) where it has one.",
        "",
        *(f"- `{folder}`" + (f": {about}" if about else "") for folder, about in suite_folders(root / "tests")),
        "",
        "## Where does a new … go?",
        "",
        "Every path and name below is checked to exist when this page is generated.",
    ]
    for guide in guides:
        out += ["", f"### {guide.title}", ""]
        out += [f"{number}. `{step.where}`: {step.what}" for number, step in enumerate(guide.steps, 1)]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page, or with ``--check`` say whether the committed one is current."""
    parser = argparse.ArgumentParser(description="Write docs/layout.md from the package tree.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/layout.md is stale; write nothing")
    args = parser.parse_args(argv)
    try:
        page = render()
    except LayoutError as error:
        print(f"gen_layout: error: {error}", file=sys.stderr)
        return 1
    target = ROOT / PAGE
    if args.check:
        if not target.is_file() or target.read_text(encoding="utf-8") != page:
            print(f"gen_layout: {PAGE} is stale: run `python docs/gen_layout.py` and commit it", file=sys.stderr)
            return 1
        return 0
    target.write_text(page, encoding="utf-8")
    print(f"gen_layout: wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
