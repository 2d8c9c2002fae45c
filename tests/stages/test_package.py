"""The package stage: only accepted models, nothing new when nothing changed, a bento that carries the model."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conveyor import io
from conveyor.artifacts import (
    Check,
    EvaluationRecord,
    FeatureStoreJoin,
    GateVerdict,
    ModelCard,
    OnlineFeaturesInfo,
    PackageReport,
)
from conveyor.bundle import Bundle
from conveyor.config import Config
from conveyor.contract import Contract
from conveyor.errors import ArtifactError
from conveyor.stages import package
from tests.conftest import BIN, ROOT, clone_of, configured, free_port, run, running

REJECTED = GateVerdict(
    accepted=False,
    model_sha256="a" * 64,
    checks=[
        Check(kind="threshold", metric="accuracy", value=0.5, bound=0.9, direction=">=", baseline=None, passed=False)
    ],
)


def test_only_an_accepted_verdict_about_this_model_passes(tmp_path: Path) -> None:
    source, model = tmp_path / "gate.json", tmp_path / "model.skops"
    with pytest.raises(package.PackageRefused, match=r"gate\.json: the gate did not accept this model"):
        package.check_gate(REJECTED, "a" * 64, source=source, model_path=model)
    accepted = REJECTED.model_copy(update={"accepted": True})
    package.check_gate(accepted, "a" * 64, source=source, model_path=model)
    with pytest.raises(package.PackageRefused, match=r"model\.skops: not the model the gate accepted"):
        package.check_gate(accepted, "b" * 64, source=source, model_path=model)


@pytest.mark.parametrize("verdict", [{"checks": []}, {"accepted": "yes", "model_sha256": "a", "checks": []}])
def test_a_verdict_that_is_not_a_verdict_is_an_artifact_error(tmp_path: Path, verdict: dict[str, Any]) -> None:
    path = tmp_path / "gate.json"
    io.write_json(verdict, path)
    with pytest.raises(ArtifactError, match=r"gate\.json: .*run `dvc repro` to rebuild it"):
        io.read_artifact(path, GateVerdict)


def test_a_rejected_model_is_never_packaged(tmp_path: Path, params: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store of its own: the session's store holds whatever other tests packaged.
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    gate = tmp_path / "gate.json"
    io.write_artifact(REJECTED, gate)
    model = tmp_path / "model.skops"
    model.write_bytes(b"never loaded")
    out = tmp_path / "package.json"
    missing = tmp_path / "never-read"
    with pytest.raises(package.PackageRefused, match=r"failed: \['threshold accuracy: 0.5000, needs >= 0.9000'\]"):
        package.run(
            params,
            model_path=model,
            metadata=missing,
            gate=gate,
            evaluation=missing,
            contract_path=missing,
            test=missing,
            train=missing,
            bentofile=missing,
            out=out,
        )
    assert not out.exists()
    assert not list(Path(os.environ["BENTOML_HOME"]).glob("models/conveyor-model/*"))


def test_model_metadata_with_gaps_is_storable() -> None:
    """Regression models have no classes and a scikit-learn fallback has no parity: BentoML refuses
    ``None`` in metadata, so it must be dropped, not break packaging (seen with HistGradientBoosting)."""
    import bentoml

    info = {"classes": None, "inference": {"inference": "sklearn", "parity": None}, "features": {"numeric": ["a"]}}
    stored = package.store_metadata(info)
    assert stored == {"inference": {"inference": "sklearn"}, "features": {"numeric": ["a"]}}
    with bentoml.models.create("metadata-probe:v1", metadata=stored) as saved:
        assert saved.info.metadata == stored
    with (
        pytest.raises(ValueError, match="basic python types"),
        bentoml.models.create("metadata-probe:v2", metadata=info),
    ):
        pass


def test_a_model_trained_from_a_feature_store_is_packaged_to_be_fed_online(
    bundle: Bundle, params: Config, contract: Contract, penguins: pd.DataFrame
) -> None:
    from conveyor.stages.train import model_card

    model = bundle.model()
    join = FeatureStoreJoin(
        feature_service="penguin_species",
        feature_views=["penguin_measurements", "penguin_profiles"],
        entity_keys=["penguin_id"],
        features=["bill_length_mm", "island", "colour"],  # a feature the model does not read is not fetched
        entity_rows=len(penguins),
        rows=len(penguins),
        dropped=0,
        dropped_by_view={},
        dropped_examples=[],
    )
    cfg = configured(params, feature_store={"server_url": "http://feast.internal:6566"})
    evaluation = EvaluationRecord(model_sha256="0" * 64, test_sha256="0" * 64, metrics={"accuracy": 1.0})
    made = {
        fed: package.contents(
            cfg,
            model=model,
            model_bytes=io.model_bytes(model),
            contract=contract,
            card=model_card(model, penguins, cfg),
            evaluation=evaluation,
            test=penguins,
            train=penguins,
            git_revision="0" * 40,
            join=join if fed else None,
        ).info
        for fed in (False, True)
    }
    assert made[True].online_features == OnlineFeaturesInfo(
        feature_service="penguin_species",
        entity_keys=["penguin_id"],
        features=["bill_length_mm", "island"],
        server_url="http://feast.internal:6566",
    )
    # Without a join the bundle says nothing of it: the same content, so the same tag as before.
    assert made[False].online_features is None
    assert "online_features" not in json.loads(made[False].model_dump_json())
    assert made[False].model_tag == bundle.info.model_tag != made[True].model_tag


def store_versions(kind: str, name: str) -> set[str]:
    """Versions of ``name`` in the session's BentoML store (``kind`` is models or bentos)."""
    return {p.name for p in (Path(os.environ["BENTOML_HOME"]) / kind / name).iterdir() if p.name != "latest"}


@pytest.mark.slow
def test_the_pipeline_packaged_the_accepted_model_with_its_provenance(reproduced_repo: Path) -> None:
    report = io.read_artifact(reproduced_repo / "reports/package.json", PackageReport)
    card = io.read_artifact(reproduced_repo / "models/model.json", ModelCard)
    packaged_at = run(reproduced_repo, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert report.provenance.data_hash == card.provenance.data_hash
    assert report.inference == "onnx"
    assert report.parity is not None
    assert report.parity["labels_equal"] is True
    version = report.model_tag.split(":", 1)[1]
    stored = yaml.safe_load(
        (Path(os.environ["BENTOML_HOME"]) / "models/conveyor-model" / version / "model.yaml").read_text()
    )
    assert stored["labels"]["git_revision"] == packaged_at
    assert stored["metadata"]["metrics"] == io.read_json(reproduced_repo / "reports/metrics.json")
    assert stored["metadata"]["provenance"]["libraries"] == card.provenance.libraries
    bento = json.loads(run(reproduced_repo, "bentoml", "get", report.bento_tag, "--output", "json").stdout)
    assert [model["tag"] for service in bento["services"] for model in service["models"]] == [report.model_tag]
    assert bento["labels"]["git_revision"] == packaged_at


@pytest.mark.slow
def test_rerunning_with_nothing_changed_adds_no_version(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    before = store_versions("models", "conveyor-model"), store_versions("bentos", "conveyor")
    first = io.read_json(repo / "reports/package.json")
    run(repo, "dvc", "repro", "--force", "--single-item", "package")
    assert (store_versions("models", "conveyor-model"), store_versions("bentos", "conveyor")) == before
    assert io.read_json(repo / "reports/package.json") == first


@pytest.mark.slow
def test_bentoml_build_at_the_root_makes_a_bento_with_the_model(
    reproduced_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    model_tag = io.read_artifact(repo / "reports/package.json", PackageReport).model_tag
    monkeypatch.setenv("CONVEYOR_MODEL_TAG", model_tag)
    run(repo, "bentoml", "build", "--version", "built-by-test")
    archive = tmp_path / "conveyor.bento"  # bentoml export needs an absolute path
    run(repo, "bentoml", "export", "conveyor:built-by-test", archive.resolve())
    version = model_tag.split(":", 1)[1]
    with tarfile.open(archive) as bento:
        names = set(bento.getnames())
        requirements = bento.extractfile("./env/python/requirements.txt").read().decode()  # type: ignore[union-attr]
    expected = {
        f"./models/conveyor-model/{version}/{name}"
        for name in ("model.skops", "model.onnx", "contract.yaml", "conveyor.json")
    }
    assert expected <= names
    assert "./src/conveyor/serving/service.py" in names  # at the root of the bento's src/, where serve imports from
    assert set(pins(repo / "requirements/serve.txt").items()) <= set(pins_in(requirements).items())


def pins_in(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements text, names normalised as PEP 503 says."""
    found = {}
    for line in text.splitlines():
        requirement = line.split(";", 1)[0].strip()
        if "==" in requirement and not requirement.startswith("#"):
            name, version = requirement.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def pins(path: Path) -> dict[str, str]:
    """The pins of a requirements file."""
    return pins_in(path.read_text(encoding="utf-8"))


def test_the_bento_pins_are_the_lock_files_versions() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    locked = {package["name"]: package["version"] for package in lock["package"] if "version" in package}
    pinned = pins(ROOT / "requirements/serve.txt")
    assert {name: version for name, version in pinned.items() if locked.get(name) != version} == {}
    project = next(package for package in lock["package"] if package["name"] == "conveyor")
    runtime = {dependency["name"] for dependency in project["dependencies"]}
    assert runtime - set(pinned) == set()


# The pipeline's tools, the monitor's and the feature store's: none of them is imported by serving.
TRAINING_ONLY = frozenset(
    {
        "dvc",
        "dvc-s3",
        "dvclive",
        "celery",
        "optuna",
        "pygit2",
        "gitpython",
        "psycopg",
        "psycopg-binary",
        "hydra-core",
        "vl-convert-python",
        "pandera",
        "sqlalchemy",
        "skl2onnx",
        "onnxmltools",
        "onnx",
        "evidently",
        "feast",
        "ruamel-yaml",
    }
)


def test_the_serving_requirements_hold_no_training_package() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["dependency-groups"]
    # The direct members of the groups serving does not install, as the lock names them.
    not_serving = {
        re.sub(r"[-_.]+", "-", re.split(r"[\[=<>!~;\s]", spec, maxsplit=1)[0]).lower()
        for group in ("pipeline", "monitor")
        for spec in groups.get(group, [])
    }
    assert not_serving >= {"dvc", "optuna", "evidently"}  # the groups this test reads still exist
    pinned = set(pins(ROOT / "requirements/serve.txt"))
    assert sorted(pinned & (TRAINING_ONLY | not_serving)) == []


def test_the_serving_requirements_are_a_fresh_export_of_the_lock(tmp_path: Path) -> None:
    # The command `make bento` runs, read from the Makefile so the two cannot drift apart.
    recipe = next(
        line.strip() for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines() if "$(UV) export" in line
    )
    args = shlex.split(recipe.replace("$(UV)", str(BIN / "uv")))
    out = args.index("-o")
    assert args[out + 1] == "requirements/serve.txt"
    args[out + 1] = str(tmp_path / "serve.txt")
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "serve.txt").read_text(encoding="utf-8") == (ROOT / "requirements/serve.txt").read_text(
        encoding="utf-8"
    ), "requirements/serve.txt is not what uv.lock exports: run `make bento`"


@pytest.mark.slow
def test_the_bento_serves_by_tag_from_an_environment_of_its_own_requirements(
    reproduced_repo: Path, tmp_path: Path
) -> None:
    """Nothing of the project's: an environment built from the bento's requirements alone, served
    by tag from an unrelated folder; the code served is the bento's own copy."""
    bento_tag = io.read_artifact(reproduced_repo / "reports/package.json", PackageReport).bento_tag
    name, version = bento_tag.split(":", 1)
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version
    uv, env = ROOT / ".tools/bin/uv", tmp_path / "env"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    run(tmp_path, uv, "venv", "--quiet", "--python", python, env, timeout=120)
    run(
        tmp_path,
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        env / "bin/python",
        "-r",
        bento / "env/python/requirements.txt",
        timeout=900,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = {
        "HOME": os.environ["HOME"],
        "BENTOML_HOME": os.environ["BENTOML_HOME"],
        "PATH": os.pathsep.join([str(env / "bin"), "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
    } | {k: v for k, v in os.environ.items() if k == "OPENBLAS_CORETYPE"}

    def python_in_env(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [env / "bin/python", "-c", code, *args],
            check=False,
            cwd=elsewhere,
            env=clean,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # The project is not installed there: the only `conveyor` to import is the bento's.
    assert "No module named 'conveyor'" in python_in_env("import conveyor").stderr
    # The service as `bentoml serve <tag>` imports it (BentoML's loader, the bento's src/ as working dir).
    loaded = python_in_env(
        "import sys, bentoml; print(sys.modules[bentoml.load(sys.argv[1]).inner.__module__].__file__)", bento_tag
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    served_from = Path(loaded.stdout.strip().splitlines()[-1])
    assert served_from.is_relative_to(bento / "src"), served_from

    port = free_port()
    command = [str(env / "bin/bentoml"), "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    with running(command, cwd=elsewhere, env=clean, port=port, log=tmp_path / "serve.log"):
        record = {
            "bill_length_mm": 39.1,
            "bill_depth_mm": 18.7,
            "flipper_length_mm": 181,
            "body_mass_g": 3750,
            "island": "Torgersen",
            "sex": "male",
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"records": [record]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert json.loads(response.read()) == ["Adelie"]


def test_onnx_is_checked_on_a_bounded_seeded_sample_of_a_large_test_split(
    params: Config, contract: Contract, penguins: pd.DataFrame, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.stages.train import model_card

    model = bundle.model()
    evaluation = EvaluationRecord(model_sha256="0" * 64, test_sha256="0" * 64, metrics={"accuracy": 1.0})

    def inference(rows: int) -> str:
        monkeypatch.setattr(package, "PARITY_ROWS", rows)
        made = package.contents(
            params,
            model=model,
            model_bytes=io.model_bytes(model),
            contract=contract,
            card=model_card(model, penguins, params),
            evaluation=evaluation,
            test=penguins,
            train=penguins,
            git_revision="0" * 40,
        )
        assert made.info.inference.inference == "onnx"
        return made.info.inference.reason

    assert inference(1000) == f"ONNX matches scikit-learn on all {len(penguins)} test rows"
    assert inference(100) == f"ONNX matches scikit-learn on a seeded sample of 100 of the {len(penguins)} test rows"
