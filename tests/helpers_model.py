"""Helpers for model and pipeline tests: the repository's own params with a few things changed.

Tests start from the real ``params.yaml`` (so they test what users run) and change only what
the test is about, validated the same way a user's edit would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from conveyor.config import Config, parse_config

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
