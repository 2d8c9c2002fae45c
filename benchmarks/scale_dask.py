"""Scale with ``engine: dask``: ``dvc repro -f`` on a large penguin-like table, on an external or a local cluster.

The same generated table (:mod:`penguin_like`) and stand-in ``conveyor`` as :mod:`scale`. By
default the stages connect to a ``dask scheduler`` with two ``dask worker`` processes (one
thread, 2.5 GiB limit each) that this benchmark starts, so each stage process's peak RSS is its
own, and each worker's is read inside it before it stops. With ``--local-cluster`` each stage
starts its own ``LocalCluster`` of the same size (``dask.address: null``, as shipped); its
workers are the stage's descendants, so a polling stand-in reads each process's high-water
mark (``VmHWM``) every 0.2 s instead. The one-process script runs on the same table in the same
run (it fits logistic regression; the Dask engine trains xgboost.dask).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from penguin_like import penguin_like
from pipeline import ENV
from scale import SHIM, conveyor_copy, run_baseline, run_conveyor

ROWS = 1_000_000
WORKER_MEMORY = "2.5GiB"
# issue 19's targets on this machine.
STAGE_TARGET_MIB, WORKER_TARGET_MIB = 1024, 2560
ESTIMATOR = {"estimator": "xgboost", "params": {"n_estimators": 20, "max_depth": 6}}


# The stand-in `conveyor` for --local-cluster: the stage and its LocalCluster's workers are one
# process tree, whose wait4 peak would be the largest of them; so each process's VmHWM is polled.
POLLING_SHIM = """#!{python}
import json, os, subprocess, sys, time
def high_water(pid, key):
    try:
        with open(f"/proc/{{pid}}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(key)), 0)
    except OSError:
        return 0
def descendants(pid):
    kids = []
    # Each thread lists the children it started: the LocalCluster's nannies start from its event loop's.
    try:
        for task in os.listdir(f"/proc/{{pid}}/task"):
            with open(f"/proc/{{pid}}/task/{{task}}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        return kids
    return [k for kid in kids for k in (kid, *descendants(kid))]
started = time.perf_counter()
child = subprocess.Popen([{real!r}, *sys.argv[1:]])
peaks = {{}}
while True:
    done, status, usage = os.wait4(child.pid, os.WNOHANG)
    if done:
        break
    for pid in (child.pid, *descendants(child.pid)):
        peaks[pid] = max(peaks.get(pid, 0), high_water(pid, "VmHWM:"))
    time.sleep(0.2)
seconds = time.perf_counter() - started
others = sorted((v for pid, v in peaks.items() if pid != child.pid), reverse=True)
# wait4's peak is the largest in the tree: exact for a stage that started no cluster.
stage = peaks.get(child.pid, 0) if others else usage.ru_maxrss
record = {{"stage": sys.argv[1], "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
          "peak_rss_kib": stage, "descendant_peaks_kib": others}}
with open(os.environ["SCALE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


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


def dask_copy(parent: Path, name: str, data: Path, address: str | None) -> Path:
    """A copy whose params run the Dask engine on ``address`` (None: a LocalCluster per stage) with xgboost."""
    repo = conveyor_copy(parent, name, data)
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["engine"] = "dask"
    params["dask"] = {"address": address, "workers": 2, "threads_per_worker": 1, "memory_limit": WORKER_MEMORY}
    params["model"] = ESTIMATOR
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return repo


def serve_once(repo: Path, data: Path) -> dict[str, Any]:
    """``bentoml serve`` the bento the run packaged, by tag from another folder, and predict one row of ``data``.

    Returns the seconds until ``/readyz`` answered and the prediction: the end of issue 19's "from
    ingest to a packaged, served model".
    """
    import time
    import urllib.request

    import pandas as pd

    tag = json.loads((repo / "reports" / "package.json").read_text(encoding="utf-8"))["bento_tag"]
    row = pd.read_csv(data, nrows=1).drop(columns="species")
    record = json.loads(row.to_json(orient="records"))[0]
    port = _free_port()
    env = {**os.environ, "BENTOML_HOME": str(repo.parent / "bentoml"), "PATH": ENV["PATH"]}
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    log = (repo.parent / "serve.log").open("wb")
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=repo.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError(f"bentoml serve {tag} did not become ready; see {repo.parent / 'serve.log'}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        ready = time.perf_counter() - started
        request = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps({"records": [record]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            prediction = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    return {"bento_tag": tag, "ready_seconds": ready, "record": record, "prediction": prediction}


def measure(rows: int, *, baseline: bool = True, local_cluster: bool = False) -> dict[str, Any]:
    """One Dask-engine ``dvc repro -f`` and (``baseline``) one baseline run on a generated table of ``rows`` rows.

    ``local_cluster``: each stage starts its own LocalCluster instead of using an external one.
    """
    with tempfile.TemporaryDirectory(prefix="conveyor-scale-dask-") as tmp:
        parent = Path(tmp)
        # The cluster first, while this process is small (see _peaks).
        address, processes = (None, []) if local_cluster else _start_cluster(parent)
        try:
            data = parent / "penguin-like.csv"
            penguin_like(rows, seed=0).to_csv(data, index=False)
            shim_dir = parent / "bin"
            shim_dir.mkdir()
            shim = shim_dir / "conveyor"
            stand_in = POLLING_SHIM if local_cluster else SHIM
            shim.write_text(stand_in.format(python=sys.executable, real=str(Path(sys.executable).parent / "conveyor")))
            shim.chmod(0o755)
            script = run_baseline(data, parent / "baseline") if baseline else None
            repo = dask_copy(parent, "repo", data, address)
            conveyor = run_conveyor(repo, shim_dir)
            served = serve_once(repo, data)
            if address is None:
                # A LocalCluster's two workers are the largest of each stage's descendants (the rest
                # are multiprocessing's helpers); its scheduler runs inside the stage process.
                workers = [
                    max(s["descendant_peaks_kib"][i] for s in conveyor["stages"] if len(s["descendant_peaks_kib"]) > i)
                    for i in range(2)
                ]
                scheduler = None
            else:
                workers, scheduler = _peaks(address)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=60)
    return {
        "rows": rows,
        "cluster": "local" if local_cluster else "external",
        "conveyor": conveyor,
        "baseline": script,
        "served": served,
        "worker_peak_rss_kib": workers,
        "scheduler_peak_rss_kib": scheduler,
    }


def section(results: dict[str, Any]) -> str:
    """The Markdown section for RESULTS.md."""
    rows, conveyor, baseline = results["rows"], results["conveyor"], results["baseline"]
    stage_peak = max(s["peak_rss_kib"] for s in conveyor["stages"]) / 1024
    worker_peak = max(results["worker_peak_rss_kib"]) / 1024
    where = "a LocalCluster per stage" if results["cluster"] == "local" else "an external scheduler"
    lines = [
        f"## Scale, `engine: dask` ({rows:,} penguin-like rows, `dvc repro -f`, 2 workers x 1 thread on {where})",
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
    ]
    if results["scheduler_peak_rss_kib"] is not None:
        lines.append(f"| scheduler | | | {results['scheduler_peak_rss_kib'] / 1024:,.0f} MiB |")
    served = results["served"]
    lines.append(
        f"| `bentoml serve {served['bento_tag']}` from another folder | {served['ready_seconds']:.1f} to ready | | "
        f"`POST /predict` one row: {json.dumps(served['prediction'])} |"
    )
    if baseline is not None:
        lines.append(
            f"| baseline: one process (logistic regression) | {baseline['seconds']:.1f} | {baseline['cpu_seconds']:.1f} | "
            f"{baseline['peak_rss_kib'] / 1024:,.0f} MiB |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


def main(results_dir: Path, *, rows: int = ROWS, baseline: bool = True, local_cluster: bool = False) -> str:
    """Run the Dask scale benchmark; write raw figures to ``results_dir`` and return a Markdown section."""
    results = measure(rows, baseline=baseline, local_cluster=local_cluster)
    cluster = "_local" if local_cluster else ""
    (results_dir / f"scale_dask_{rows}{cluster}.json").write_text(json.dumps(results, indent=2))
    return section(results)


def bench(results_dir: Path) -> str:
    """``make bench``'s section: 1M rows on an external scheduler and 10M on a LocalCluster per stage, each with the baseline."""
    return main(results_dir, rows=ROWS) + main(results_dir, rows=10 * ROWS, local_cluster=True)


if __name__ == "__main__":
    # python benchmarks/scale_dask.py [rows] [--no-baseline] [--local-cluster]: this section alone,
    # raw figures in a temporary folder.
    flags = {"--no-baseline", "--local-cluster"}
    arguments = [a for a in sys.argv[1:] if a not in flags]
    out = Path(tempfile.mkdtemp(prefix="scale-dask-results-"))
    print(out, file=sys.stderr)
    print(
        main(
            out,
            rows=int(arguments[0]) if arguments else ROWS,
            baseline="--no-baseline" not in sys.argv,
            local_cluster="--local-cluster" in sys.argv,
        )
    )
