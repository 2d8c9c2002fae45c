"""Each stage's code dependencies in dvc.yaml are derived from its imports, so they cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conveyor.config import Config
from conveyor.model.registry import ESTIMATORS
from tests.conftest import ROOT

SRC = ROOT / "src"
STAGES = sorted(path.stem for path in (SRC / "conveyor" / "stages").glob("*.py") if path.stem != "__init__")


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _project_imports(path: Path) -> set[str]:
    """Every ``conveyor`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "conveyor"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "conveyor":
            module = str(node.module)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names if _module_file(f"{module}.{alias.name}")}
    return found


def imported_files(module: str) -> set[str]:
    """The repository paths of ``module`` and every project module it imports, transitively."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        pending += _project_imports(path)
    if "conveyor.io" in seen:
        # io loads models by class name (skops), so every estimator the registry names by import
        # path is imported when a model of it is read: conveyor.model.estimators among them.
        seen |= {entry.path.partition(":")[0] for table in ESTIMATORS.values() for entry in table.values()}
    files = (_module_file(name) for name in seen)
    return {str(f.relative_to(ROOT)) for f in files if f is not None and f.name != "__init__.py"}


def listed_code(stage: str) -> list[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]["deps"]
    return [dep for dep in deps if dep.startswith("src/")]


def test_every_stage_module_is_a_stage() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert set(STAGES) == set(stages)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_lists_exactly_the_modules_it_imports(stage: str) -> None:
    imported = imported_files(f"conveyor.stages.{stage}")
    listed = listed_code(stage)
    uncovered = sorted(
        f for f in imported if not any(f == dep or f.startswith(dep.rstrip("/") + "/") for dep in listed)
    )
    assert not uncovered, f"dvc.yaml stage {stage!r} imports these but does not depend on them: {uncovered}"
    unused = sorted(dep for dep in listed if dep.endswith(".py") and dep not in imported)
    assert not unused, f"dvc.yaml stage {stage!r} depends on modules it never imports: {unused}"


def test_the_derivation_follows_lazy_and_transitive_imports() -> None:
    # gate imports metrics, which imports predict and features; io imports skops lazily (not ours).
    assert {"src/conveyor/model/predict.py", "src/conveyor/model/features.py"} <= imported_files("conveyor.stages.gate")
    assert "src/conveyor/model/onnx.py" in imported_files("conveyor.stages.package")


def test_the_model_card_holds_only_the_params_train_depends_on(params: Config, trained_model_file: Path) -> None:
    from conveyor import io
    from conveyor.stages.train import model_card

    model = io.load_model(trained_model_file)
    card = model_card(model, io.read_source(str(ROOT / "data" / "penguins.csv")), params)
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["train"]["params"]
    recorded = {
        f"{section}.{key}" for section, value in card.params.items() if isinstance(value, dict) for key in value
    }
    recorded |= {section for section, value in card.params.items() if not isinstance(value, dict)}
    covered = {key for key in recorded if any(key == d or key.startswith(f"{d}.") for d in declared)}
    assert recorded == covered, f"model.json records params train does not depend on: {sorted(recorded - covered)}"
