"""`conveyor init` on two tables the repository does not ship, then `dvc repro` and a prediction over HTTP.

Each table is made in the test: scikit-learn's bundled breast cancer data (binary classification,
column names with spaces) and a generated regression table whose names hold spaces, dots, dashes,
unicode and a leading digit. Both are served on both inference paths: ONNX Runtime (``serve.inference:
auto``) and scikit-learn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import commit_all, copy_repo, run, tool_env
from helpers_model import edit_params, stages_run
from helpers_process import free_port, running
from sklearn.datasets import load_breast_cancer

from conveyor import io
from conveyor.model.predict import predict

pytestmark = pytest.mark.slow


def breast_cancer() -> pd.DataFrame:
    """569 tumours, 30 measurements named like ``mean radius``, label ``diagnosis``."""
    data: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return data.assign(diagnosis=data.pop("target").map({0: "malignant", 1: "benign"}))


def flats() -> pd.DataFrame:
    """Prices explained by awkwardly named columns, one with gaps and one categorical."""
    rng = np.random.default_rng(7)
    rows = 400
    size, rooms = rng.uniform(20, 150, rows), rng.integers(1, 6, rows)
    district = rng.choice(["centre ville", "Zürich-Nord", "Île.2"], rows)
    price = 3000 * size + 10_000 * rooms + np.where(district == "centre ville", 50_000, 0) + rng.normal(0, 5000, rows)
    floor = rng.integers(0, 10, rows).astype(float)
    floor[::17] = np.nan
    return pd.DataFrame(
        {"size m²": size, "2nd.rooms-count": rooms, "étage (floor)": floor, "quartier": district, "price €": price}
    )


DATASETS: dict[str, tuple[Callable[[], pd.DataFrame], str, str]] = {
    "breast cancer": (breast_cancer, "diagnosis", "classification"),
    "flats": (flats, "price €", "regression"),
}


def served_predictions(repo: Path, records: list[dict[str, Any]], log: Path) -> tuple[list[Any], dict[str, Any]]:
    """``bentoml serve`` at ``repo``: the predictions for ``records`` and the metadata."""
    port = free_port()
    command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running(command, cwd=repo, env=tool_env(), port=port, log=log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        answer = client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        metadata = client.post("/metadata", json={}).json()
    return answer.json(), metadata


@pytest.mark.parametrize("name", list(DATASETS))
def test_init_retargets_to_a_model_served_on_both_inference_paths(name: str, tmp_path: Path) -> None:
    make, target, task = DATASETS[name]
    repo = copy_repo(tmp_path / "repo")
    source = f"data/{name}.csv"
    make().to_csv(repo / source, index=False)
    told = run(repo, "conveyor", "init", "--data", source, "--target", target).stdout
    assert f"init: {task}" in told
    commit_all(repo, f"retarget to {name}")
    run(repo, "dvc", "repro", timeout=900)

    test = io.read_table(repo / "data/split/test.parquet").head(5)
    model = io.load_model(repo / "models/model.skops")
    expected = predict(model, test)
    records = json.loads(test.drop(columns=[target]).to_json(orient="records"))
    assert io.read_json(repo / "reports/gate.json")["accepted"] is True

    for inference in ("onnx", "sklearn"):
        if inference == "sklearn":
            edit_params(repo, lambda raw: raw["serve"].update(inference="sklearn"))
            assert stages_run(run(repo, "dvc", "repro", timeout=900).stdout) == ["package"]
        package = io.read_json(repo / "reports/package.json")
        assert package["inference"] == inference, package["inference_reason"]
        predictions, metadata = served_predictions(repo, records, tmp_path / f"serve-{inference}.log")
        assert metadata["inference"]["inference"] == inference
        assert target not in metadata["features"]
        if task == "classification":
            assert predictions == [str(label) for label in expected]
        else:
            assert predictions == pytest.approx(expected.astype(float).tolist(), rel=1e-4)
