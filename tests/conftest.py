"""Shared fixtures: the real params and data, and throwaway copies of the repository.

Integration tests never touch the working tree: they run in a copy that is its own git
repository (so DVC, the gate's champion lookup and provenance behave as in a user's clone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest

from conveyor import io
from conveyor.config import Config, load_config
from conveyor.contract import Contract

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Conveyor Tests",
    "GIT_AUTHOR_EMAIL": "tests@conveyor.invalid",
    "GIT_COMMITTER_NAME": "Conveyor Tests",
    "GIT_COMMITTER_EMAIL": "tests@conveyor.invalid",
}


def tool_env() -> dict[str, str]:
    """The environment for subprocesses: this venv's tools first on PATH, a fixed git identity."""
    return os.environ | GIT_IDENTITY | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(
    cwd: Path, *args: str | Path, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with :func:`tool_env` (updated by ``env``); on failure, the assertion shows its output."""
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=tool_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def tracked_files(root: Path = ROOT) -> list[str]:
    """Files git tracks, plus untracked files it does not ignore: what a clone of this tree holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def copy_repo(destination: Path, *, skip: Sequence[str] = ("tests/", "benchmarks/")) -> Path:
    """Copy the project into ``destination`` as a fresh git repository with one commit on ``main``."""
    for name in tracked_files():
        if name.startswith(tuple(skip)):
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    run(destination, "git", "init", "--quiet", "--initial-branch=main")
    commit_all(destination, "copy of the template")
    return destination


def commit_all(repo: Path, message: str) -> None:
    """Stage everything and commit (allowing an empty commit)."""
    run(repo, "git", "add", "--all")
    run(repo, "git", "commit", "--quiet", "--allow-empty", "--message", message)


@pytest.fixture(scope="session", autouse=True)
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private BentoML store for the session: the package stage must never fill ``~/bentoml``."""
    home = tmp_path_factory.mktemp("bentoml")
    previous = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = previous


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository after a full ``dvc repro --force``, committed on ``main``.

    Forced: the copy reproduces the committed outputs byte for byte, so a plain ``dvc repro``
    would skip every stage after train, and this session's BentoML store would stay empty.
    Built once per session; tests that change it must work on ``clone_of(reproduced_repo, …)``.
    """
    repo = copy_repo(tmp_path_factory.mktemp("reproduced"))
    run(repo, "dvc", "repro", "--force", timeout=600)
    commit_all(repo, "reproduce the pipeline")
    return repo


def clone_of(repo: Path, destination: Path) -> Path:
    """A full copy of ``repo`` (working tree, git history and DVC cache) that a test may change."""
    shutil.copytree(repo, destination, symlinks=True)
    return destination


@pytest.fixture(scope="session")
def params() -> Config:
    """The repository's own ``params.yaml``."""
    return load_config(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def contract(params: Config) -> Contract:
    """The repository's own data contract."""
    return io.read_contract(ROOT / params.data.schema_path)


@pytest.fixture
def penguins() -> pd.DataFrame:
    """The embedded default data, as ingest reads it (a fresh copy per test)."""
    return io.read_source(str(ROOT / "data" / "penguins.csv"))


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """Run the test with ``tmp_path`` as the working directory."""
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(previous)


@pytest.fixture(scope="session")
def trained_model_file(tmp_path_factory: pytest.TempPathFactory, params: Config, contract: Contract) -> Path:
    """The default model trained on the embedded data and saved as the train stage saves it."""
    from conveyor.stages.train import train

    path = tmp_path_factory.mktemp("model") / "model.skops"
    io.save_model(train(io.read_source(str(ROOT / "data" / "penguins.csv")), params, contract), path)
    return path
