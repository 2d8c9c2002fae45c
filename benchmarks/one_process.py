"""The baseline of the scale benchmark: Conveyor's default work, hand-written as one process.

What a data scientist would write without Conveyor, with the same libraries: read the CSV,
check it with a pandera schema written from ``data/contract.yaml``, a stratified 75/25 split,
the same ``Pipeline`` (median imputation and standard scaling, missing categories as a value and
one-hot encoding, logistic regression C=1), four metrics on the test split, the model saved with
skops. It imports nothing from Conveyor, so Conveyor's own costs are what the ratio shows.

    python benchmarks/one_process.py data.csv data/contract.yaml out/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import skops.io
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TARGET = "species"
DROP = ("year",)


def schema(contract: dict[str, Any]) -> pa.DataFrameSchema:
    """The contract's column checks as a pandera schema, vectorised."""
    columns = {}
    for name, spec in contract["columns"].items():
        numeric = spec["type"] in {"int", "float", "bool"}
        checks = []
        if "min" in spec:
            checks.append(pa.Check.ge(spec["min"]))
        if "max" in spec:
            checks.append(pa.Check.le(spec["max"]))
        if spec["type"] == "int":
            checks.append(pa.Check(lambda s: s % 1 == 0))
        if "categories" in spec:
            checks.append(pa.Check.isin(spec["categories"]))
        columns[name] = pa.Column(
            "float64" if numeric else "str", checks=checks, nullable=spec.get("nullable", False), coerce=numeric
        )
    return pa.DataFrameSchema(columns)


def pipeline(numeric: list[str], categorical: list[str]) -> Pipeline:
    """The model Conveyor's default params build."""
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = Pipeline([("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    features = ColumnTransformer([("numeric", numbers, numeric), ("categorical", categories, categorical)])
    return Pipeline([("features", features), ("estimator", LogisticRegression(C=1.0, max_iter=1000, random_state=42))])


def main() -> int:
    """Run the work; print the seconds of each phase and the metrics as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("contract", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        phases[name] = round(now - started, 3)
        started = now

    df = pd.read_csv(args.data)
    phase("read")
    contract = yaml.safe_load(args.contract.read_text(encoding="utf-8"))
    df = schema(contract).validate(df, lazy=True)
    if df.duplicated().any():
        raise SystemExit(f"{args.data}: duplicated rows")
    phase("contract")
    train, test = train_test_split(df, test_size=0.25, stratify=df[TARGET], random_state=42)
    phase("split")
    kinds = {name: spec["type"] for name, spec in contract["columns"].items() if name not in {TARGET, *DROP}}
    numeric = [name for name, kind in kinds.items() if kind in {"int", "float", "bool"}]
    categorical = [name for name, kind in kinds.items() if kind == "category"]

    def frame(part: pd.DataFrame) -> pd.DataFrame:
        features = part[numeric + categorical].copy()
        features[categorical] = features[categorical].fillna("__missing__").astype(object)
        return features

    model = pipeline(numeric, categorical).fit(frame(train), train[TARGET].to_numpy(dtype=object))
    phase("fit")
    x_test, y_test = frame(test), test[TARGET].to_numpy(dtype=object)
    proba = model.predict_proba(x_test)
    predicted = model.classes_[np.argmax(proba, axis=1)]
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1_macro": f1_score(y_test, predicted, average="macro"),
        "log_loss": log_loss(y_test, proba, labels=model.classes_),
        "roc_auc": roc_auc_score(y_test, proba, multi_class="ovr", labels=model.classes_),
    }
    phase("score")
    args.out.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, args.out / "model.skops")
    phase("save")
    print(json.dumps({"phases": phases, "metrics": {k: float(v) for k, v in metrics.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
