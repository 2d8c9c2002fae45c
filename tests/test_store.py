"""The BentoML store: package saves each entry whole, finds a torn one and replaces it, and cleans up after kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import io, store
from conveyor.artifacts import EvaluationRecord, GateVerdict, PackageReport
from conveyor.config import Config
from tests.conftest import ROOT, tool_env


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, trained_model_file: Path, params: Config) -> Path:
    """What the package stage reads, for the default model trained on the embedded data."""
    from conveyor.stages.train import model_card

    folder = tmp_path_factory.mktemp("package-inputs")
    data = io.read_source(str(ROOT / "data" / "penguins.csv"))
    sha = io.file_sha256(trained_model_file)
    io.write_artifact(model_card(io.load_model(trained_model_file), data, params), folder / "model.json")
    io.write_artifact(GateVerdict(accepted=True, model_sha256=sha, checks=[]), folder / "gate.json")
    record = EvaluationRecord(model_sha256=sha, test_sha256="0" * 64, metrics={"accuracy": 1.0})
    io.write_artifact(record, folder / "evaluation.json")
    io.write_table(data, folder / "data.parquet")
    return folder


# Runs the package stage on `inputs` (argv[1]) into `out` (argv[2]); argv[3] names the store
# folder ("models" or "bentos") whose copy into place is killed (SIGKILL) after two files.
PACKAGE = """
import os, shutil, signal, sys
from pathlib import Path
from conveyor.config import load_config
from conveyor.stages import package

inputs, out, killed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
copytree, copied = shutil.copytree, []

def dying_copytree(source, target, symlinks=False, ignore=None, copy_function=shutil.copy2, *args, **options):
    # shutil.copytree calls itself (this) for each subfolder: one count for the whole copy.
    def copy(source_file, target_file, **kwargs):
        if len(copied) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        copied.append(target_file)
        return copy_function(source_file, target_file, **kwargs)
    into = copy if f"{os.sep}{killed}{os.sep}" in str(target) else copy_function
    return copytree(source, target, symlinks, ignore, into, *args, **options)

shutil.copytree = dying_copytree
root = Path(os.environ["CONVEYOR_ROOT"])
package.run(
    load_config(root / "params.yaml"),
    model_path=Path(os.environ["CONVEYOR_MODEL"]),
    metadata=inputs / "model.json",
    gate=inputs / "gate.json",
    evaluation=inputs / "evaluation.json",
    contract_path=root / "data" / "contract.yaml",
    test=inputs / "data.parquet",
    train=inputs / "data.parquet",
    bentofile=root / "bentofile.yaml",
    out=out,
)
"""


def package_run(inputs: Path, model: Path, out: Path, *, killed: str = "nothing") -> subprocess.CompletedProcess[str]:
    """The package stage on ``inputs`` in a process of its own (as under ``dvc repro``), into ``$BENTOML_HOME``.

    ``killed`` is the store folder (``models`` or ``bentos``) whose copy into place kills it.
    """
    return subprocess.run(
        [sys.executable, "-c", PACKAGE, str(inputs), str(out), killed],
        env=tool_env() | {"CONVEYOR_ROOT": str(ROOT), "CONVEYOR_MODEL": str(model)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def packaged(inputs: Path, model: Path, out: Path) -> PackageReport:
    """:func:`package_run` that must succeed; its report."""
    result = package_run(inputs, model, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return io.read_artifact(out, PackageReport)


def entry(kind: str, tag: str) -> Path:
    """The store's folder for ``tag``."""
    name, version = tag.split(":", 1)
    return Path(os.environ["BENTOML_HOME"]) / kind / name / version


def assert_serves(report: PackageReport) -> None:
    """Both entries are whole, the bento names the model, and the service's module loads its bundle.

    BentoML is asked in a process of its own: this one's BentoML fixed its store when first
    imported, and the store here is the test's ``$BENTOML_HOME``.
    """
    assert store.entry_problem("models", report.model_tag) is None
    assert store.entry_problem("bentos", report.bento_tag) is None
    # As `bentoml serve` imports it (BentoML's own imports warn, so not with -W error).
    check = (
        "import bentoml, conveyor.serving.service as s; "
        f"print([str(m.tag) for m in bentoml.bentos.get({report.bento_tag!r}).info.all_models]); "
        "s.BUNDLE.model(); print('ok')"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check],
        env=tool_env() | {"CONVEYOR_MODEL_TAG": report.model_tag},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.stdout.splitlines() == [str([report.model_tag]), "ok"], loaded.stderr[-2000:]
    leftovers = [p.name for p in (Path(os.environ["BENTOML_HOME"]) / "tmp").iterdir() if p.name != store.LOCK]
    assert leftovers == []


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:10])


Torn = tuple[str, store.Kind, str, Callable[[Path], None]]
TORN: list[Torn] = [
    ("the issue's: contract.yaml deleted", "models", "contract.yaml", _delete),
    ("reference sample truncated", "models", "reference.parquet", _truncate),
    ("model truncated", "models", "model.skops", _truncate),
    ("BentoML's model.yaml deleted", "models", "model.yaml", _delete),
    ("bento.yaml deleted", "bentos", "bento.yaml", _delete),
    ("service source truncated", "bentos", "src/conveyor/serving/service.py", _truncate),
]


@pytest.fixture(scope="module")
def packaged_store(tmp_path_factory: pytest.TempPathFactory, inputs: Path, trained_model_file: Path) -> Iterator[Path]:
    """A store of its own, filled by one package run; each test tears it and repairs it again."""
    home = tmp_path_factory.mktemp("store") / "bentoml"
    previous = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(home)
    try:
        packaged(inputs, trained_model_file, home.parent / "package.json")
        yield home
    finally:
        os.environ["BENTOML_HOME"] = previous


@pytest.mark.slow
@pytest.mark.parametrize("torn", TORN, ids=[case for case, *_ in TORN])
def test_a_torn_entry_is_replaced_by_the_next_package_run(
    tmp_path: Path, inputs: Path, trained_model_file: Path, packaged_store: Path, torn: Torn
) -> None:
    _, kind, name, tear = torn
    report = io.read_artifact(packaged_store.parent / "package.json", PackageReport)
    tag = report.model_tag if kind == "models" else report.bento_tag
    tear(entry(kind, tag) / name)
    assert store.entry_problem(kind, tag) is not None
    assert packaged(inputs, trained_model_file, tmp_path / "again.json") == report
    assert_serves(report)


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["models", "bentos"])
def test_a_package_run_killed_while_saving_leaves_nothing_the_next_run_trusts(
    tmp_path: Path, inputs: Path, trained_model_file: Path, monkeypatch: pytest.MonkeyPatch, killed: str
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    dead = package_run(inputs, trained_model_file, tmp_path / "killed.json", killed=killed)
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-2000:]
    report = packaged(inputs, trained_model_file, tmp_path / "package.json")
    assert_serves(report)


def test_stale_folders_are_cleaned_and_a_young_bentoml_build_is_kept(tmp_path: Path) -> None:
    killed = tmp_path / f"{store.STAGING_PREFIX}abc"
    (killed / "models").mkdir(parents=True)
    old_build, young_build = tmp_path / "bentoml_bento_conveyorold", tmp_path / "bentoml_bento_conveyornew"
    old_build.mkdir()
    young_build.mkdir()
    now = time.time()
    os.utime(old_build, (now - store.STALE_BUILD_S - 1, now - store.STALE_BUILD_S - 1))
    other = tmp_path / "something-else"
    other.mkdir()
    assert store.clean_stale(tmp_path, now=now) == [killed, old_build]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bentoml_bento_conveyornew", "something-else"]


def test_an_entry_without_its_manifest_or_a_listed_file_is_not_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    folder = tmp_path / "models" / "m" / "v1"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    assert store.entry_problem("models", "m:v2") == "missing"
    assert (
        store.entry_problem("models", "m:v1") == f"{folder / store.MANIFEST}: missing (the entry was not saved whole)"
    )
    store.write_manifest(folder)
    assert store.entry_problem("models", "m:v1") is None
    (folder / "sub" / "__pycache__").mkdir()
    (folder / "sub" / "__pycache__" / "b.pyc").write_bytes(b"written by a served bento")
    assert store.entry_problem("models", "m:v1") is None
    (folder / "sub" / "b.txt").unlink()
    assert store.entry_problem("models", "m:v1") == f"{folder / 'sub' / 'b.txt'}: missing"


def test_a_held_lock_is_named_after_the_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    with (
        store.locked(),
        pytest.raises(store.StoreError, match=r"conveyor-store\.lock: another package run has held it for over 0 s"),
        store.locked(wait_s=0.0),
    ):
        pass
