"""Shared fixtures and helpers: the real params and data, configs changed for a test, throwaway
copies of the repository, servers on free ports, Makefile targets, bundles built by the package stage.

Integration tests never touch the working tree: they run in a copy that is its own git
repository (so DVC, the gate's champion lookup and provenance behave as in a user's clone).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conveyor import io
from conveyor.artifacts import EvaluationRecord, PackageReport, Provenance
from conveyor.bundle import Bundle
from conveyor.config import Config, load_config, parse_config
from conveyor.contract import ColumnSpec, Contract

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


# Regression on the default data: predict body mass from the other measurements.
REGRESSION: dict[str, Any] = {
    "task": "regression",
    "data": {"target": "body_mass_g"},
    "model": {"estimator": "ridge", "params": {"alpha": 1.0}},
    "gate": {"thresholds": {"r2": {"min": 0.5}}, "compare": ["rmse"]},
}


def configured(params: Config, **sections: Any) -> Config:
    """``params`` with each given section updated key by key (a non-mapping value replaces it)."""
    raw = params.model_dump(mode="json", by_alias=True)
    for name, value in sections.items():
        raw[name] = {**raw[name], **value} if isinstance(value, dict) and isinstance(raw.get(name), dict) else value
    return parse_config(raw, source="test params")


def regression(params: Config, estimator: str = "ridge", **model_params: Any) -> Config:
    """The regression configuration with ``estimator`` and its params."""
    return configured(params, **(REGRESSION | {"model": {"estimator": estimator, "params": model_params}}))


def labelled(df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The rows of ``df`` that have a value for the configured target (body mass has gaps)."""
    return df[df[cfg.data.target].notna()].reset_index(drop=True)


def edit_params(repo: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the parsed ``params.yaml`` of ``repo`` and write it back."""
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


# Runs on every `dvc repro` (always_changed: it fingerprints data.source, see dvc.yaml).
ALWAYS_RUNS = "source"


def stages_run(output: str) -> list[str]:
    """The stages a ``dvc repro`` ran, in order, from its output; ``source``, which always runs, aside."""
    ran = re.findall(r"^Running stage '([^']+)':", output, flags=re.MULTILINE)
    return [stage for stage in ran if stage != ALWAYS_RUNS]


def stages_from(repo: Path, first: str) -> list[str]:
    """``first`` and every stage after it in ``repo``'s ``dvc.yaml`` (which lists them in pipeline order)."""
    names = list(yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
    return names[names.index(first) :]


READY_TIMEOUT = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {READY_TIMEOUT} s: {url}\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def running(
    command: list[str], *, cwd: Path, env: dict[str, str], port: int, log: Path, ready_path: str = "/readyz"
) -> Iterator[float]:
    """Start ``command`` (a server on 127.0.0.1:``port``) in its own process group, output to ``log``.

    Yields the seconds it took until ``ready_path`` answered 200; on exit stops the process group
    (the server and any workers it started), with SIGKILL if SIGTERM is not enough.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield _ready(f"http://127.0.0.1:{port}{ready_path}", process, log)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process``'s group (a server and any workers it started): SIGTERM, then SIGKILL if that is not enough."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def make(cwd: Path, *args: str | Path, tools: Path = BIN, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``make -f <repo>/Makefile ARGS`` in ``cwd``.

    ``-o setup`` treats the environment as installed (it is this one: ``BIN``, or the folder of
    stand-ins given as ``tools``), so what runs is the target's own recipe, as in CI after
    ``make setup``. With ``check=False`` a failing target is returned, not a test failure.
    """
    return run(
        cwd, "make", "--no-print-directory", "-f", ROOT / "Makefile", "-o", "setup", *args, f"BIN={tools}", check=check
    )


def make_bundle(directory: Path, cfg: Config, contract: Contract, data: pd.DataFrame) -> Bundle:
    """Train on ``data`` and write the bundle the package stage writes (:func:`conveyor.stages.package.contents`), without BentoML."""
    from conveyor.stages import package
    from conveyor.stages.train import model_card, train

    pipeline = train(data, cfg, contract)
    evaluation = EvaluationRecord(model_sha256="0" * 64, test_sha256="0" * 64, metrics={"accuracy": 1.0})
    contents = package.contents(
        cfg,
        model=pipeline,
        model_bytes=io.model_bytes(pipeline),
        contract=contract,
        card=model_card(pipeline, data, cfg),
        evaluation=evaluation,
        test=data,
        train=data,
        git_revision="0" * 40,
    )
    contents.write(directory)
    return Bundle.load(directory)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, params: Config, contract: Contract) -> Bundle:
    """The default model (logistic regression, served through ONNX) packaged as a bundle on disk; do not change it."""
    return make_bundle(
        tmp_path_factory.mktemp("bundle"), params, contract, io.read_source(str(ROOT / "data" / "penguins.csv"))
    )


def write_package_report(path: Path, *, model_tag: str, bento_tag: str) -> None:
    """A ``reports/package.json`` naming ``model_tag`` and ``bento_tag`` (its other fields stand-ins)."""
    report = PackageReport(
        model_tag=model_tag,
        bento_tag=bento_tag,
        provenance=Provenance(data_hash="0" * 64, params_hash="0" * 64, libraries={}),
        inference="sklearn",
        inference_reason="a stand-in",
        parity=None,
        metrics={},
    )
    io.write_artifact(report, path)


# Words of the free-text column of :func:`customers`: a few say something about churn.
CALM_WORDS = ("fast", "helpful", "clear", "friendly", "reliable", "simple")
ANGRY_WORDS = ("slow", "expensive", "confusing", "broken", "late", "rude")


def customers(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table as real ones come: a customer code not named like an id, ISO dates and date-times,
    true/false columns with gaps, free text with gaps, a category, numbers, and a true/false target.

    ``churned`` follows the plan, the tenure and autopay (so a linear model learns it well);
    ``customer`` is a unique code (10001…), ``signup`` a date, ``last_seen`` a date-time with an
    offset, ``feedback`` a sentence.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    tenure = rng.integers(1, 73, rows)
    autopay = rng.random(rows) > 0.4
    fee = np.round(np.select([plan == "basic", plan == "plus"], [9.99, 19.99], 39.99) + rng.normal(0, 1.5, rows), 2)
    logit = -0.5 + 2.0 * (plan == "basic") - 0.06 * tenure + 1.8 * ~autopay + rng.normal(0, 0.5, rows)
    churned = logit > 0
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D")
    seen = signup + pd.to_timedelta(rng.integers(0, 3600 * 24 * 60, rows), unit="s")
    feedback = [" ".join(rng.choice(ANGRY_WORDS if gone else CALM_WORDS, 3)) + " service" for gone in churned]
    df = pd.DataFrame(
        {
            "customer": 10001 + rng.permutation(rows),
            "signup": [day.strftime("%Y-%m-%d") for day in signup],
            "last_seen": [moment.strftime("%Y-%m-%dT%H:%M:%S+01:00") for moment in seen],
            "plan": plan,
            "monthly_fee": fee,
            "tenure_months": tenure,
            "autopay": autopay.astype(object),
            "newsletter": rng.random(rows) > 0.5,
            "feedback": feedback,
            "churned": churned,
        }
    )
    df.loc[df.index[::23], "autopay"] = None
    df.loc[df.index[::19], "feedback"] = None
    return df


# Generated tables with the columns real ones have: dates, free text, a wide category, gaps.
WORDS = ("good", "great", "bad", "awful", "fine", "value", "deal", "service", "fast", "slow")


def mixed_table(rows: int = 600, *, seed: int = 0) -> pd.DataFrame:
    """Numbers ``a`` (with gaps) and ``b`` (> 0), an ISO date ``when``, a text ``note``, an 80-value
    ``code``, and a regression target ``price`` (positive, skewed) and a class ``label``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 2, rows)
    b = rng.uniform(1, 5, rows)
    when = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365 * 24, rows), unit="h")
    code = rng.choice([f"c{i:02d}" for i in range(80)], rows)
    note = [" ".join(rng.choice(WORDS, 3)) for _ in range(rows)]
    season = np.cos(2 * np.pi * (when.month.to_numpy() - 1) / 12)
    code_effect = pd.Series(code).str[1:].astype(int).to_numpy() / 80
    price = np.exp(1 + 0.4 * season + 0.2 * b + code_effect + rng.normal(0, 0.1, rows))
    frame = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "when": when.strftime("%Y-%m-%dT%H:%M:%S"),
            "note": note,
            "code": code,
            "price": price,
        }
    )
    frame["label"] = np.where(frame["price"] > frame["price"].median(), "high", "low")
    frame.loc[::7, "a"] = np.nan
    return frame


def mixed_contract(*, target: str = "label") -> Contract:
    """The contract of :func:`mixed_table`: ``when``, ``note`` and ``code`` are not features as they are."""
    columns = {
        "a": ColumnSpec(type="float", nullable=True),
        "b": ColumnSpec(type="float"),
        "when": ColumnSpec(type="string", feature=False),
        "note": ColumnSpec(type="string", feature=False),
        "code": ColumnSpec(type="string", feature=False),
        "price": ColumnSpec(type="float", feature=target == "price"),
        "label": ColumnSpec(type="category", categories=("high", "low"), feature=target == "label"),
    }
    return Contract(columns=columns)


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server (threaded, in this process) on 127.0.0.1 with one bucket; yields its name.

    moto keeps its buckets in the process, and s3fs its clients (with the endpoint they were made
    for): both are reset, so each test gets an empty store at its own port.
    """
    import fsspec
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    fsspec.get_filesystem_class("s3").clear_instance_cache()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("conveyor-logs")
        yield "conveyor-logs"
    finally:
        server.stop()
