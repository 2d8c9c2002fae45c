"""Scale: ``dvc repro -f`` of Conveyor on a large penguin-like table against one hand-written process.

Both run on the same generated table (:mod:`penguin_like`), alternating, in the same run: Conveyor
in a fresh copy of the repository with ``data.source`` pointed at the table, the baseline as
:mod:`one_process`. Each Conveyor stage process is timed, with its peak resident memory, through
a stand-in ``conveyor`` first on ``PATH`` that runs the real one and reads its resource usage.
The largest stage's peak gives the pandas engine's rows per GB of memory.

Also checked: every file the run leaves for git (``cache: false`` outputs) stays under
``MAX_TRACKED_BYTES``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from penguin_like import penguin_like
from pipeline import ENV, ROOT, fresh_copy

ROWS = 1_000_000
MAX_TRACKED_BYTES = 1_000_000
# Conveyor within this factor of the one-process script (issue 19).
TARGET_RATIO = 1.5
# The stand-in `conveyor`: runs the real one, appends its stage, seconds and peak RSS to $SCALE_LOG.
SHIM = """#!{python}
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen([{real!r}, *sys.argv[1:]])
_, status, usage = os.wait4(child.pid, 0)
seconds, cpu = time.perf_counter() - started, usage.ru_utime + usage.ru_stime
record = {{"stage": sys.argv[1], "seconds": seconds, "cpu_seconds": cpu, "peak_rss_kib": usage.ru_maxrss}}
with open(os.environ["SCALE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS (KiB: the process or its largest descendant) and stdout of ``command``.

    CPU seconds count the process and every descendant it waited for: on a shared machine they
    move less with the load than wall time does.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, stdout


def conveyor_copy(parent: Path, name: str, data: Path) -> Path:
    """A fresh copy of the project whose ``data.source`` is ``data`` (copied in as data/scale.csv)."""
    repo = fresh_copy(parent, name)
    os.link(data, repo / "data" / "scale.csv")
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["data"]["source"] = "data/scale.csv"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return repo


def run_conveyor(repo: Path, shim_dir: Path) -> dict[str, Any]:
    """``dvc repro -f`` in ``repo``: total seconds, and seconds and peak RSS of each stage process."""
    log = repo.parent / f"{repo.name}-stages.jsonl"
    env = ENV | {
        "PATH": f"{shim_dir}{os.pathsep}{ENV['PATH']}",
        "SCALE_LOG": str(log),
        "BENTOML_HOME": str(repo.parent / "bentoml"),
    }
    seconds, cpu, _, _ = _run_measured(["dvc", "repro", "--force"], repo, env)
    stages = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "reports"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = {
        name: (repo / name).stat().st_size for name in filter(None, tracked.split("\0")) if (repo / name).is_file()
    }
    return {"seconds": seconds, "cpu_seconds": cpu, "stages": stages, "tracked_bytes": sizes}


def run_baseline(data: Path, out: Path) -> dict[str, Any]:
    """The one-process script on the same table (its model saved into ``out``): seconds, peak RSS, phases."""
    script = Path(__file__).resolve().parent / "one_process.py"
    command = [sys.executable, str(script), str(data), str(ROOT / "data" / "contract.yaml"), str(out)]
    seconds, cpu, peak, stdout = _run_measured(command, out.parent, ENV)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_kib": peak, **json.loads(stdout.strip().splitlines()[-1])}


def measure(rows: int, runs: int) -> dict[str, Any]:
    """Alternating runs of Conveyor and the baseline on one generated table of ``rows`` rows."""
    results: dict[str, Any] = {"rows": rows, "conveyor": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="conveyor-scale-") as tmp:
        parent = Path(tmp)
        data = parent / "penguin-like.csv"
        penguin_like(rows, seed=0).to_csv(data, index=False)
        shim_dir = parent / "bin"
        shim_dir.mkdir()
        shim = shim_dir / "conveyor"
        shim.write_text(SHIM.format(python=sys.executable, real=str(Path(sys.executable).parent / "conveyor")))
        shim.chmod(0o755)
        for index in range(runs):
            results["baseline"].append(run_baseline(data, parent / f"baseline-{index}"))
            results["conveyor"].append(run_conveyor(conveyor_copy(parent, f"repo-{index}", data), shim_dir))
    return results


def section(results: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    rows, runs = results["rows"], len(results["conveyor"])
    conveyor = statistics.median(r["seconds"] for r in results["conveyor"])
    baseline = statistics.median(r["seconds"] for r in results["baseline"])
    ratio = conveyor / baseline
    conveyor_cpu = statistics.median(r["cpu_seconds"] for r in results["conveyor"])
    baseline_cpu = statistics.median(r["cpu_seconds"] for r in results["baseline"])
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for run in results["conveyor"]:
        for stage in run["stages"]:
            by_stage.setdefault(stage["stage"], []).append(stage)
    peak_kib = max(s["peak_rss_kib"] for stages in by_stage.values() for s in stages)
    largest = max(by_stage, key=lambda name: max(s["peak_rss_kib"] for s in by_stage[name]))
    tracked = results["conveyor"][-1]["tracked_bytes"]
    biggest = max(tracked, key=tracked.get) if tracked else "none"
    lines = [
        f"## Scale ({rows:,} penguin-like rows, `dvc repro -f`, median of {runs} run(s))",
        "",
        "| | wall s | CPU s | peak RSS | ratio to the one-process script (wall; CPU) | target |",
        "|---|---|---|---|---|---|",
        f"| Conveyor, `dvc repro -f` | {conveyor:.1f} | {conveyor_cpu:.1f} | {peak_kib / 1024:,.0f} MiB ({largest}) | "
        f"{ratio:.2f}x; {conveyor_cpu / baseline_cpu:.2f}x | < {TARGET_RATIO}x |",
        *(
            f"| stage process: `conveyor {name}` | {statistics.median(s['seconds'] for s in stages):.1f} | "
            f"{statistics.median(s['cpu_seconds'] for s in stages):.1f} | "
            f"{max(s['peak_rss_kib'] for s in stages) / 1024:,.0f} MiB | | |"
            for name, stages in by_stage.items()
        ),
        f"| baseline: one process (read, pandera, split, Pipeline, 4 metrics, skops) | {baseline:.1f} | "
        f"{baseline_cpu:.1f} | {max(r['peak_rss_kib'] for r in results['baseline']) / 1024:,.0f} MiB | 1.00x | |",
        "",
        f"The script's phases (s): {json.dumps(results['baseline'][-1]['phases'])}.",
        f"The pandas engine holds about **{rows / (peak_kib * 1024 / 1e9):,.0f} rows per GB** of its largest stage "
        f"process ({largest}, {peak_kib / 1024:,.0f} MiB at {rows:,} rows).",
        f"Files left for git under reports/: {len(tracked)}, {sum(tracked.values()) / 1e3:,.1f} kB in all, the largest "
        f"{biggest} ({tracked.get(biggest, 0) / 1e3:,.1f} kB; limit {MAX_TRACKED_BYTES / 1e6:.0f} MB per file).",
    ]
    return "\n".join(lines) + "\n"


def main(results_dir: Path, *, rows: int = ROWS, runs: int = 2) -> str:
    """Run the scale benchmark; write raw figures to ``results_dir`` and return a Markdown section."""
    results = measure(rows, runs)
    (results_dir / f"scale_{rows}.json").write_text(json.dumps(results, indent=2))
    return section(results)


def bench(results_dir: Path) -> str:
    """``make bench``'s section: the pandas engine at 1M rows (two runs) and at 10M (one; it fits in 24 GB)."""
    return main(results_dir, rows=ROWS, runs=2) + main(results_dir, rows=10 * ROWS, runs=1)


if __name__ == "__main__":
    # python benchmarks/scale.py [rows] [runs]: this section alone, raw figures in a temporary folder.
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(main(Path(tempfile.mkdtemp(prefix="scale-results-")), rows=rows, runs=runs))
