"""``conveyor init``'s bake-off: what it costs, and whether its model is as good as a plain gradient boosting.

For each generated table: ``conveyor init``'s retarget with the default budget (its wall time,
the winner, every candidate's CV score), then on the split the split stage makes, the test score
of the model init wrote (trained as the train stage trains it) against scikit-learn's
``HistGradientBoosting*`` with its default params on the same features. Balanced accuracy for
classification, r2 for regression. Tables (seeded):

- ``interactions``: 50,000 rows, a label that is an XOR of two signs, noise columns, a category.
- ``linear``: 20,000 rows, a target linear in five columns plus noise.
- ``prices``: 20,000 rows, a positive, skewed price multiplicative in its inputs (fitted on the log scale).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from conveyor.config import parse_config
from conveyor.model.metrics import score
from conveyor.ops.bakeoff import METRIC
from conveyor.ops.init import retarget
from conveyor.stages.split import split
from conveyor.stages.train import train

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 45.0


def interactions(rows: int = 50_000, seed: int = 0) -> pd.DataFrame:
    """An XOR label, two informative and three noise columns, a category."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    frame = pd.DataFrame(x, columns=["u", "v", "w", "y1", "z"]).assign(kind=rng.choice(["p", "q", "r"], rows))
    flip = rng.random(rows) < 0.05
    frame["label"] = np.where(((x[:, 0] > 0) ^ (x[:, 1] > 0)) ^ flip, "odd", "even")
    return frame


def linear(rows: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """A target linear in five columns plus unit noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    return pd.DataFrame(x, columns=list("abcde")).assign(
        target=x @ np.array([3.0, -2.0, 1.0, 0.5, 0.0]) + rng.normal(size=rows)
    )


def prices(rows: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """A positive, right-skewed price: exp of a linear function with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    noise = rng.normal(0, 0.3, rows)
    return pd.DataFrame(x, columns=["s", "t", "r"]).assign(price=np.exp(2 + x @ np.array([0.8, 0.5, 0.1]) + noise))


TABLES: dict[str, tuple[Callable[[], pd.DataFrame], str]] = {
    "interactions": (interactions, "label"),
    "linear": (linear, "target"),
    "prices": (prices, "price"),
}


def measure(name: str) -> dict[str, object]:
    """One table: init's time and choice, and the test scores of its model and of a default HistGradientBoosting."""
    make, target = TABLES[name]
    df = make()
    params = (ROOT / "params.yaml").read_text(encoding="utf-8")
    start = time.perf_counter()
    result = retarget(df, params, source=f"{name}.csv", target=target, bakeoff_s=BUDGET_S)
    init_s = time.perf_counter() - start
    cfg = result.config
    metric = METRIC[cfg.task]
    train_df, test_df = split(
        df, cfg.split, target=target, stratify=cfg.split.stratify and cfg.task == "classification"
    )
    chosen = score(train(train_df, cfg, result.contract), test_df, target=target, task=cfg.task)[metric]
    raw = yaml.safe_load(result.params)
    raw["model"] = {"estimator": "hist_gradient_boosting", "params": {}}
    plain_cfg = parse_config(raw)
    plain = score(train(train_df, plain_cfg, result.contract), test_df, target=target, task=cfg.task)[metric]
    comment = next(line for line in result.params.splitlines() if "init bake-off" in line).split("#", 1)[1].strip()
    return {
        "table": f"{name} ({len(df):,} rows)",
        "init_s": init_s,
        "winner": cfg.model.estimator + (" (log target)" if cfg.model.target_transform == "log" else ""),
        "metric": metric,
        "chosen": chosen,
        "plain_hgb": plain,
        "threshold": next(iter(cfg.gate.thresholds.values())).min,
        "bakeoff": comment,
    }


def main(out: Path) -> str:
    """Run every table; return the Markdown section."""
    rows = []
    for name in TABLES:
        print(f"bench: bakeoff on {name} …", file=sys.stderr, flush=True)
        rows.append(measure(name))
    lines = [
        "## Bake-off (`conveyor init`)\n",
        f"Default budget {BUDGET_S:.0f} s; test-split score of the model init wrote against scikit-learn's "
        "HistGradientBoosting with default params, same split, same features.\n",
        "| table | init (s) | winner | metric | init's model | plain HGB | gate min |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['table']} | {r['init_s']:.1f} | {r['winner']} | {r['metric']} | {r['chosen']:.4f} | "
        f"{r['plain_hgb']:.4f} | {r['threshold']} |"
        for r in rows
    ]
    lines += ["", "Bake-off comments as written to params.yaml:", ""]
    lines += [f"- {r['table']}: {r['bakeoff']}" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(ROOT / "benchmarks" / "results"))
