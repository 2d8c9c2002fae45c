"""Serving benchmark: the Conveyor service against minimal apps serving the same bundle.

Everything is measured in one run on throwaway copies of the repository (their own BentoML
store), so the baselines share the machine's state with what they are compared to. Two model
families, each packaged by the pipeline: the default logistic regression (served through ONNX
Runtime) and HistGradientBoosting (served by scikit-learn). For each:

- ``minimal``: the baseline. A Starlette + uvicorn app, one worker, that loads the same packaged
  bundle, validates the body with the same request type (``validate_json`` on the raw bytes) and
  predicts through the same ``Engine``: what a hand-written server of this model costs;
- ``conveyor``: ``bentoml serve`` of the bento's service, with its defaults (every prediction
  request logged through ``bentoml.monitor``, JSON lines into the run's temporary folder);
- ``conveyor_unlogged``: the same, with BentoML's ``monitoring.enabled`` off, so no prediction log:
  the difference is what logging costs (the issue's budget: under 10% of req/s).

Beside them, for the default model: in-process prediction (scikit-learn and ONNX, 1 and 1,000
rows) and ``minimal_sklearn``, the earlier baseline (Starlette running the scikit-learn pipeline
on a DataFrame, no validation), kept for comparison with earlier results.

Load comes from ``wrk`` (Debian package ``wrk``) on 127.0.0.1, a fixed number of seconds per cell
(``CONVEYOR_BENCH_SECONDS``, default 12) split into four rounds that alternate between the servers:
single-record requests at 1, 8 and 32 connections and 100-record requests at 8. wrk shares the
cores with the server, as a sidecar client would; the figures are for comparison within the
run, not capacity planning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pipeline import ENV, fresh_copy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import free_port, running

SECONDS = int(os.environ.get("CONVEYOR_BENCH_SECONDS", "12"))
ROUNDS = 4  # each cell is run in alternating rounds of SECONDS / ROUNDS on every server
CELLS = (("single", 1, 1), ("single", 8, 2), ("single", 32, 2), ("batch100", 8, 2))  # body, connections, wrk threads
MODELS = {
    "logistic_regression": {"estimator": "logistic_regression", "params": {"C": 1.0, "max_iter": 1000}},
    "hist_gradient_boosting": {"estimator": "hist_gradient_boosting", "params": {}},
}
# The targets: Conveyor against the minimal app on the same bundle, in the same run.
MIN_THROUGHPUT_RATIO = 0.8
MAX_P99_RATIO = 1.5
MAX_COLD_START_S = 5.0
MAX_LOGGING_COST = 0.10


def _median_ms(action: Callable[[], object], calls: int) -> float:
    action()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def in_process(repo: Path, bundle_dir: Path) -> dict[str, dict[str, float]]:
    """Median milliseconds per call for 1 and 1,000 rows, scikit-learn and ONNX Runtime."""
    from conveyor import io
    from conveyor.bundle import Bundle
    from conveyor.model.predict import predict
    from conveyor.serving.engine import predictor

    model = io.load_model(repo / "models/model.skops")
    test = io.read_table(repo / "data/split/test.parquet")
    thousand = test.sample(1000, replace=True, random_state=0).reset_index(drop=True)
    onnx = predictor(Bundle.load(bundle_dir))
    calls: dict[str, Callable[[pd.DataFrame], object]] = {
        "sklearn (conveyor.model.predict)": lambda df: predict(model, df),
        "onnx, DataFrame in": onnx.predict,
        "onnx, records in (the service's path)": lambda df: onnx.predict_rows(_records(df)),
    }
    results = {}
    for name, call in calls.items():
        one = _median_ms(partial(call, test.iloc[:1]), 200)
        many = _median_ms(partial(call, thousand), 30)
        results[name] = {"1_row_ms": one, "1000_rows_ms": many, "rows_per_s_1000": 1000 / (many / 1000)}
    return results


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.astype(object).where(df.notna(), None).to_dict("records")]


def request_bodies(repo: Path) -> dict[str, bytes]:
    """A one-record and a 100-record body from the test split (missing values as null)."""
    from conveyor import io

    meta = io.read_json(repo / "models/model.json")
    columns = [c for kind in ("numeric", "categorical") for c in meta["features"].get(kind, [])]
    test = io.read_table(repo / "data/split/test.parquet")[columns]
    rows = _records(test)
    hundred = [rows[i % len(rows)] for i in range(100)]
    return {"single": json.dumps({"records": rows[:1]}).encode(), "batch100": json.dumps({"records": hundred}).encode()}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms), non-2xx responses and socket errors from ``wrk --latency``."""
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, flags=re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "non_2xx": float(non_2xx.group(1)) if non_2xx else 0.0,
        "socket_errors": float(sum(int(n) for n in socket_errors.groups())) if socket_errors else 0.0,
    }


def load(url: str, body: bytes, *, connections: int, threads: int, seconds: int, workdir: Path) -> dict[str, float]:
    """One wrk run: POST ``body`` to ``url`` for ``seconds`` seconds."""
    script = workdir / f"post-{len(body)}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body.decode()}]==]\n'
    )
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    result = subprocess.run([*command, "-s", str(script), url], capture_output=True, text=True, check=True)
    return parse_wrk(result.stdout) | {"seconds": float(seconds)}


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """One cell from its rounds: requests/s over the total time, the median round's latency
    percentiles (a burst of other work on a shared machine spoils one round, not the cell)."""
    total = sum(run["seconds"] for run in runs)
    return {
        "requests": sum(run["requests"] for run in runs),
        "req_per_s": sum(run["req_per_s"] * run["seconds"] for run in runs) / total,
        "p50_ms": statistics.median(run["p50_ms"] for run in runs),
        "p99_ms": statistics.median(run["p99_ms"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
    }


def measure_servers(
    servers: dict[str, tuple[list[str], dict[str, str]]],
    cwd: Path,
    *,
    bodies: dict[str, bytes],
    workdir: Path,
    label: str,
) -> dict[str, Any]:
    """Start every server (one after the other, timing each to ready), then run each load cell on
    all of them in alternating rounds (A B, then B A), so that a change in the machine's load
    during the run falls on every server alike: the ratios stay fair on a shared machine."""
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        ports = {}
        for name, (command, env) in servers.items():
            port = free_port()
            argv = [part.replace("{port}", str(port)) for part in command]
            cold = stack.enter_context(running(argv, cwd=cwd, env=env, port=port, log=workdir / f"{label}-{name}.log"))
            ports[name] = port
            results[name] = {"cold_start_s": cold, "cells": {}}
        per_round = max(1, SECONDS // ROUNDS)
        for body, connections, threads in CELLS:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for index in range(ROUNDS):
                order = list(servers) if index % 2 == 0 else list(reversed(servers))
                for name in order:
                    url = f"http://127.0.0.1:{ports[name]}/predict"
                    runs[name].append(
                        load(
                            url,
                            bodies[body],
                            connections=connections,
                            threads=threads,
                            seconds=per_round,
                            workdir=workdir,
                        )
                    )
            for name in servers:
                results[name]["cells"][f"{body}_c{connections}"] = combine(runs[name])
    return results


def _ready_route() -> Any:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ready(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Route("/readyz", ready)


def minimal_app(bundle_dir: Path) -> Any:
    """The baseline: Starlette, one route, the same bundle, request type and ``Engine`` as the service."""
    from pydantic import ValidationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from conveyor.bundle import Bundle
    from conveyor.serving.engine import Engine
    from conveyor.serving.request import request_type

    bundle = Bundle.load(bundle_dir)
    threadpool_limits(limits=bundle.serve.threads)
    engine = Engine(bundle)
    engine.warm_up()
    body = request_type(bundle.contract, bundle.columns, max_records=bundle.serve.max_records)

    async def predict_route(request: Request) -> JSONResponse:
        try:
            records = body.validate_json(await request.body())["records"]
        except ValidationError as error:
            return JSONResponse(error.errors(include_url=False, include_input=False), status_code=400)
        return JSONResponse(engine.predict(records))

    return Starlette(routes=[Route("/predict", predict_route, methods=["POST"]), _ready_route()])


def minimal_sklearn_app(model_path: Path) -> Any:
    """The earlier baseline: Starlette running the scikit-learn pipeline on a DataFrame, no validation."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from conveyor import io
    from conveyor.model.predict import predict

    model = io.load_model(model_path)

    async def predict_route(request: Request) -> JSONResponse:
        records = (await request.json())["records"]
        return JSONResponse([str(label) for label in predict(model, pd.DataFrame.from_records(records))])

    return Starlette(routes=[Route("/predict", predict_route, methods=["POST"]), _ready_route()])


def prepare(workdir: Path, env: dict[str, str], family: str) -> tuple[Path, str]:
    """A reproduced copy of the repository whose pipeline trains and packages ``family``."""
    repo = fresh_copy(workdir, family)
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["model"] = MODELS[family]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, check=True)
    tag = json.loads((repo / "reports/package.json").read_text())["model_tag"]
    if not (Path(env["BENTOML_HOME"]) / "models" / tag.replace(":", "/")).is_dir():
        # The copy's outputs matched dvc.lock, so DVC skipped package: this run's store has no model yet.
        force = ["dvc", "repro", "--force", "--single-item", "package"]
        subprocess.run(force, cwd=repo, env=env, capture_output=True, text=True, check=True)
    return repo, tag


def serve_family(family: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Package ``family``, then measure the minimal app(s) and Conveyor on its bundle."""
    repo, tag = prepare(workdir, env, family)
    bundle_dir = Path(env["BENTOML_HOME"]) / "models" / tag.replace(":", "/")
    bodies = request_bodies(repo)
    threads = str(yaml.safe_load((repo / "params.yaml").read_text())["serve"]["threads"])
    native = env | dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), threads)
    results: dict[str, Any] = {"inference": json.loads((repo / "reports/package.json").read_text())["inference"]}
    app = [sys.executable, __file__]
    servers = {"minimal": ([*app, "minimal-app", str(bundle_dir), "{port}"], native)}
    if family == "logistic_regression":
        results["in_process"] = in_process(repo, bundle_dir)
        sklearn_app = [*app, "minimal-sklearn-app", str(repo / "models/model.skops"), "{port}"]
        servers["minimal_sklearn"] = (sklearn_app, native)
    bentoml_serve = ["bentoml", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    served = env | {"CONVEYOR_MODEL_TAG": tag}
    monitoring = "services.conveyor.monitoring"
    logs = workdir / f"{family}-prediction-logs"
    servers["conveyor"] = (bentoml_serve, served | {"BENTOML_CONFIG_OPTIONS": f"{monitoring}.options.log_path={logs}"})
    servers["conveyor_unlogged"] = (bentoml_serve, served | {"BENTOML_CONFIG_OPTIONS": f"{monitoring}.enabled=false"})
    return results | measure_servers(servers, repo, bodies=bodies, workdir=workdir, label=family)


def main(results_dir: Path) -> str:
    """Run the serving benchmark; write ``serving.json`` into ``results_dir``; return a Markdown section."""
    if shutil.which("wrk") is None:
        raise RuntimeError("the serving benchmark needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="conveyor-serving-bench-") as tmp:
        workdir = Path(tmp)
        env = ENV | {"BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
        os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
        results: dict[str, Any] = {"seconds_per_cell": SECONDS}
        results["models"] = {family: serve_family(family, workdir, env) for family in MODELS}
    (results_dir / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    return markdown(results)


def _cell(cell: dict[str, float]) -> str:
    return f"{cell['req_per_s']:,.0f} req/s (p50 {cell['p50_ms']:.1f}, p99 {cell['p99_ms']:.1f} ms)"


def markdown(results: dict[str, Any]) -> str:
    """The serving section of RESULTS.md: tables per model family, then the targets checked."""
    lines = [
        "## Serving",
        "",
        f"wrk on 127.0.0.1, {results['seconds_per_cell']} s per cell, one worker everywhere. `minimal`: Starlette "
        "+ uvicorn on the same bundle, request type and engine as the service; `conveyor`: `bentoml serve`.",
    ]
    for family, family_results in results["models"].items():
        lines += ["", f"### {family} (served through {family_results['inference']})", ""]
        if "in_process" in family_results:
            lines += ["| in process | 1 row | 1,000 rows | rows/s at 1,000 |", "|---|---|---|---|"]
            for name, row in family_results["in_process"].items():
                lines.append(
                    f"| {name} | {row['1_row_ms']:.3f} ms | {row['1000_rows_ms']:.2f} ms | {row['rows_per_s_1000']:,.0f} |"
                )
            lines.append("")
        lines += [
            "| server | cold start | 1 record, c1 | c8 | c32 | 100 records, c8 | non-2xx or socket errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("minimal", "minimal_sklearn", "conveyor", "conveyor_unlogged"):
            if name not in family_results:
                continue
            server = family_results[name]
            cells = server["cells"]
            batch = cells["batch100_c8"]
            lines.append(
                f"| {name} | {server['cold_start_s']:.1f} s | "
                + " | ".join(_cell(cells[f"single_c{c}"]) for c in (1, 8, 32))
                + f" | {100 * batch['req_per_s']:,.0f} rows/s (p99 {batch['p99_ms']:.0f} ms) | {_errors(server):.0f} |"
            )
        lines += ["", *targets(family_results)]
    return "\n".join(lines) + "\n"


def _errors(server: dict[str, Any]) -> float:
    return float(sum(cell["non_2xx"] + cell["socket_errors"] for cell in server["cells"].values()))


def targets(family_results: dict[str, Any]) -> list[str]:
    """The issue's targets for one model family, each with the figures that decide it."""
    ours, base = family_results["conveyor"]["cells"], family_results["minimal"]["cells"]
    checks = []
    for cell in ("single_c1", "single_c32"):
        throughput = ours[cell]["req_per_s"] / base[cell]["req_per_s"]
        p99 = ours[cell]["p99_ms"] / base[cell]["p99_ms"]
        checks.append((f"{cell}: {throughput:.2f}x the minimal app's req/s", throughput >= MIN_THROUGHPUT_RATIO))
        checks.append((f"{cell}: p99 {p99:.2f}x the minimal app's", p99 <= MAX_P99_RATIO))
    rows = ours["batch100_c8"]["req_per_s"] / base["batch100_c8"]["req_per_s"]
    checks.append((f"100-record requests: {rows:.2f}x the minimal app's rows/s", rows >= MIN_THROUGHPUT_RATIO))
    errors = _errors(family_results["conveyor"])
    checks.append((f"non-2xx or socket errors: {errors:.0f}", errors == 0))
    cold = family_results["conveyor"]["cold_start_s"]
    checks.append((f"cold start to ready {cold:.1f} s", cold < MAX_COLD_START_S))
    logged, unlogged = ours, family_results["conveyor_unlogged"]["cells"]
    for cell in logged:
        cost = 1 - logged[cell]["req_per_s"] / unlogged[cell]["req_per_s"]
        checks.append((f"{cell}: prediction logging costs {cost:.1%} of req/s", cost < MAX_LOGGING_COST))
    header = (
        f"Targets against `minimal`: ≥ {MIN_THROUGHPUT_RATIO}x req/s and p99 ≤ {MAX_P99_RATIO}x at c1 and c32, "
        f"≥ {MIN_THROUGHPUT_RATIO}x rows/s with 100 records, no errors, cold start < {MAX_COLD_START_S:.0f} s; "
        f"prediction logging (`conveyor` against `conveyor_unlogged`) under {MAX_LOGGING_COST:.0%} of req/s in every cell."
    )
    lines = [header, "", *(f"- {'met' if passed else 'NOT met'}: {text}" for text, passed in checks)]
    return lines


if __name__ == "__main__":
    apps = {"minimal-app": minimal_app, "minimal-sklearn-app": minimal_sklearn_app}
    if sys.argv[1:2] and sys.argv[1] in apps:
        import uvicorn

        app = apps[sys.argv[1]](Path(sys.argv[2]))
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), workers=1, log_level="warning")
    else:
        results = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
        results.mkdir(parents=True, exist_ok=True)
        print(main(results))
