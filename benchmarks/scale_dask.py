"""Scale with ``engine: dask``: ``dvc repro -f`` on a large penguin-like table, stages on an external cluster.

The same generated table (:mod:`penguin_like`) and stand-in ``conveyor`` as :mod:`scale`; the
stages connect to a ``dask scheduler`` with two ``dask worker`` processes (one thread, 2.5 GiB
limit each) that this benchmark starts, so each stage process's peak RSS is its own, and each
worker's is read from its process tree when it stops. The one-process script runs on the same
table in the same run (it fits logistic regression; the Dask engine trains xgboost.dask).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from penguin_like import penguin_like
from scale import SHIM, conveyor_copy, run_baseline, run_conveyor

ROWS = 1_000_000
WORKER_MEMORY = "2.5GiB"
# issue 19's targets on this machine.
STAGE_TARGET_MIB, WORKER_TARGET_MIB = 1024, 2560
ESTIMATOR = {"estimator": "xgboost", "params": {"n_estimators": 20, "max_depth": 6}}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_cluster(log_dir: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    scheduler = [
        dask,
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dashboard-address",
        f"127.0.0.1:{_free_port()}",
    ]
    processes = [subprocess.Popen(scheduler, stdout=(log_dir / "scheduler.log").open("wb"), stderr=subprocess.STDOUT)]
    for name in ("one", "two"):
        worker = [
            dask,
            "worker",
            address,
            "--name",
            name,
            "--nthreads",
            "1",
            "--memory-limit",
            WORKER_MEMORY,
            "--no-dashboard",
        ]
        processes.append(
            subprocess.Popen(worker, stdout=(log_dir / f"worker-{name}.log").open("wb"), stderr=subprocess.STDOUT)
        )
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    return address, processes


def _peaks(address: str) -> tuple[list[int], int]:
    """Each worker's peak RSS and the scheduler's (KiB), read inside each process.

    Not from ``wait4`` here: a process forked from this one keeps this one's peak at the fork
    (Linux preserves ``ru_maxrss`` across exec), which the generated table makes large.
    """
    from distributed import Client

    with Client(address, timeout="60s") as client:
        workers = client.run(resource.getrusage, resource.RUSAGE_SELF)
        scheduler = client.run_on_scheduler(resource.getrusage, resource.RUSAGE_SELF)
    return [int(usage.ru_maxrss) for usage in workers.values()], int(scheduler.ru_maxrss)


def dask_copy(parent: Path, name: str, data: Path, address: str) -> Path:
    """A copy whose params run the Dask engine on ``address`` with xgboost."""
    repo = conveyor_copy(parent, name, data)
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["engine"] = "dask"
    params["dask"]["address"] = address
    params["model"] = ESTIMATOR
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return repo


def measure(rows: int, *, baseline: bool = True) -> dict[str, Any]:
    """One Dask-engine ``dvc repro -f`` and (``baseline``) one baseline run on a generated table of ``rows`` rows."""
    with tempfile.TemporaryDirectory(prefix="conveyor-scale-dask-") as tmp:
        parent = Path(tmp)
        # The cluster first, while this process is small (see _peaks).
        address, processes = _start_cluster(parent)
        try:
            data = parent / "penguin-like.csv"
            penguin_like(rows, seed=0).to_csv(data, index=False)
            shim_dir = parent / "bin"
            shim_dir.mkdir()
            shim = shim_dir / "conveyor"
            shim.write_text(SHIM.format(python=sys.executable, real=str(Path(sys.executable).parent / "conveyor")))
            shim.chmod(0o755)
            script = run_baseline(data, parent / "baseline") if baseline else None
            conveyor = run_conveyor(dask_copy(parent, "repo", data, address), shim_dir)
            workers, scheduler = _peaks(address)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=60)
    return {
        "rows": rows,
        "conveyor": conveyor,
        "baseline": script,
        "worker_peak_rss_kib": workers,
        "scheduler_peak_rss_kib": scheduler,
    }


def section(results: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    rows, conveyor, baseline = results["rows"], results["conveyor"], results["baseline"]
    stage_peak = max(s["peak_rss_kib"] for s in conveyor["stages"]) / 1024
    worker_peak = max(results["worker_peak_rss_kib"]) / 1024
    lines = [
        f"## Scale, `engine: dask` ({rows:,} penguin-like rows, `dvc repro -f`, 2 workers x 1 thread on an external scheduler)",
        "",
        "| | wall s | CPU s (stage process) | peak RSS |",
        "|---|---|---|---|",
        f"| Conveyor, `dvc repro -f` | {conveyor['seconds']:.1f} | | stage {stage_peak:,.0f} MiB (target < {STAGE_TARGET_MIB:,}); "
        f"worker {worker_peak:,.0f} MiB (target < {WORKER_TARGET_MIB:,}) |",
        *(
            f"| stage process: `conveyor {s['stage']}` | {s['seconds']:.1f} | {s['cpu_seconds']:.1f} | {s['peak_rss_kib'] / 1024:,.0f} MiB |"
            for s in conveyor["stages"]
        ),
        f"| each worker (`dask worker`, {WORKER_MEMORY} limit) | | | "
        + ", ".join(f"{k / 1024:,.0f} MiB" for k in results["worker_peak_rss_kib"])
        + " |",
        f"| scheduler | | | {results['scheduler_peak_rss_kib'] / 1024:,.0f} MiB |",
    ]
    if baseline is not None:
        lines.append(
            f"| baseline: one process (logistic regression) | {baseline['seconds']:.1f} | {baseline['cpu_seconds']:.1f} | "
            f"{baseline['peak_rss_kib'] / 1024:,.0f} MiB |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


def main(results_dir: Path, *, rows: int = ROWS, baseline: bool = True) -> str:
    """Run the Dask scale benchmark; write raw figures to ``results_dir`` and return a Markdown section."""
    results = measure(rows, baseline=baseline)
    (results_dir / f"scale_dask_{rows}.json").write_text(json.dumps(results, indent=2))
    return section(results)


if __name__ == "__main__":
    # python benchmarks/scale_dask.py [rows] [--no-baseline]: this section alone, raw figures in a temporary folder.
    arguments = [a for a in sys.argv[1:] if a != "--no-baseline"]
    out = Path(tempfile.mkdtemp(prefix="scale-dask-results-"))
    print(out, file=sys.stderr)
    print(main(out, rows=int(arguments[0]) if arguments else ROWS, baseline="--no-baseline" not in sys.argv))
