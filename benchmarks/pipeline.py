"""Pipeline timings on the default data: cold, no-op and after a ``model.params`` change.

Each figure is the median of several runs in a throwaway copy of the repository. Two baselines
measured in the same run give the ratios meaning on any machine: ``dvc status`` (DVC's own fixed
cost, the floor of a no-op ``dvc repro``) and one Python process importing the stage libraries
(the floor of every stage, since each stage is a process).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = os.environ | {
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@conveyor.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@conveyor.invalid",
}
# The floors of a stage process: what a data stage (ingest, validate, split) must import, and
# what a model stage (train, evaluate, gate, package) must import on top of it.
DATA_FLOOR = "import pandas, pyarrow.parquet"
MODEL_FLOOR = "import pandas, pyarrow.parquet, sklearn.pipeline, scipy"
STAGES = ("ingest", "validate", "split", "tune", "train", "evaluate", "gate", "package")
DATA_STAGES = frozenset({"ingest", "validate", "split", "tune"})  # tune: when disabled, as by default


def _run(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _seconds(cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    _run(cwd, *args)
    return time.perf_counter() - started


def fresh_copy(parent: Path, name: str) -> Path:
    """The project's files (what a clone holds, minus tests and benchmarks) as a new git repo."""
    listed = _run(ROOT, "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    repo = parent / name
    for file in filter(None, listed.split("\0")):
        if file.startswith(("tests/", "benchmarks/")) or not (ROOT / file).is_file():
            continue
        (repo / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file, repo / file)
    _run(repo, "git", "init", "--quiet", "--initial-branch=main")
    _run(repo, "git", "add", "--all")
    _run(repo, "git", "commit", "--quiet", "--message", "benchmark copy")
    return repo


def _set_c(repo: Path, value: float) -> None:
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["model"]["params"]["C"] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def measure(runs: int) -> dict[str, list[float]]:
    """Seconds per run of each scenario and baseline."""
    timings: dict[str, list[float]] = {
        "cold": [],
        "fresh_clone": [],
        "noop": [],
        "param_change": [],
        "dvc_status": [],
        "data_floor": [],
        "model_floor": [],
        **{f"stage:{name}": [] for name in STAGES},
    }
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        for index in range(runs):
            # A new copy each time: no outputs, no cache, no run-cache, as on a fresh clone.
            cold = fresh_copy(Path(tmp), f"cold-{index}")
            timings["cold"].append(_seconds(cold, "dvc", "repro", "--force"))
            # What a fresh clone of main does: the stages whose outputs are DVC-cached run, and
            # since they reproduce the committed bytes, everything after them is skipped.
            timings["fresh_clone"].append(_seconds(fresh_copy(Path(tmp), f"clone-{index}"), "dvc", "repro"))
        repo = Path(tmp) / f"cold-{runs - 1}"
        for index in range(runs):
            timings["noop"].append(_seconds(repo, "dvc", "repro"))
            timings["dvc_status"].append(_seconds(repo, "dvc", "status"))
            timings["data_floor"].append(_seconds(repo, sys.executable, "-c", DATA_FLOOR))
            timings["model_floor"].append(_seconds(repo, sys.executable, "-c", MODEL_FLOOR))
            commands = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
            for name in STAGES:
                # The stage as DVC runs it, one process, without DVC's own overhead around it.
                timings[f"stage:{name}"].append(_seconds(repo, "bash", "-c", commands[name]["cmd"]))
            # A value never used before, so DVC's run-cache cannot skip the retraining.
            _set_c(repo, round(0.9 - 0.1 * index, 2))
            timings["param_change"].append(_seconds(repo, "dvc", "repro"))
    return timings


def main(results_dir: Path, *, runs: int = 3) -> str:
    """Run the pipeline benchmark; write raw timings to ``results_dir`` and return a Markdown section."""
    timings = measure(runs)
    (results_dir / "pipeline.json").write_text(json.dumps(timings, indent=2))
    median = {name: statistics.median(values) for name, values in timings.items()}
    rows = [
        ("cold `dvc repro --force` (fresh copy, empty cache)", median["cold"], "", "< 20 s"),
        ("fresh clone `dvc repro` (reproduces the committed outputs)", median["fresh_clone"], "", ""),
        ("no-op `dvc repro`", median["noop"], f"{median['noop'] / median['dvc_status']:.2f}x `dvc status`", "< 1.5 s"),
        ("`model.params` change (train and what follows rerun)", median["param_change"], "", ""),
        *(
            (
                f"stage process: `conveyor {name}`",
                median[f"stage:{name}"],
                f"{median[f'stage:{name}'] / median[floor]:.2f}x its import floor",
                "< 1.5 s" if floor == "data_floor" else "",
            )
            for name in STAGES
            for floor in ["data_floor" if name in DATA_STAGES else "model_floor"]
        ),
        ("baseline: `dvc status`", median["dvc_status"], "1.00x", ""),
        (f"baseline: data stage import floor (`{DATA_FLOOR}`)", median["data_floor"], "1.00x", ""),
        (f"baseline: model stage import floor (`{MODEL_FLOOR}`)", median["model_floor"], "1.00x", ""),
    ]
    lines = [
        f"## Pipeline (default data, median of {runs} runs)",
        "",
        "| scenario | seconds | ratio to baseline | target |",
        "|---|---|---|---|",
        *(f"| {name} | {seconds:.2f} | {ratio} | {target} |" for name, seconds, ratio, target in rows),
    ]
    return "\n".join(lines) + "\n"
