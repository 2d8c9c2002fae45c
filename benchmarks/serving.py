"""Serving benchmark: in-process prediction, a minimal Starlette app, and the Conveyor service.

Everything is measured in one run on a throwaway copy of the repository (its own BentoML store),
so the baselines share the machine's state with what they are compared to:

- in process: ``conveyor.predict.predict`` (scikit-learn) and the ONNX predictor, 1 and 1,000 rows;
- a minimal Starlette/uvicorn app, one worker, serving the same scikit-learn pipeline;
- the Conveyor service (``bentoml serve``), without and with adaptive batching of ``/predict``.

Load comes from ``wrk`` (Debian package ``wrk``) on 127.0.0.1, a fixed number of seconds per cell
(``CONVEYOR_BENCH_SECONDS``, default 10): single-record requests at concurrency 1, 8 and 32, and
100-record requests at concurrency 8. wrk shares the two cores with the server, as a sidecar
client would; the figures are for comparison within the run, not capacity planning.
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
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pipeline import ENV, fresh_copy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_process import free_port, running

SECONDS = int(os.environ.get("CONVEYOR_BENCH_SECONDS", "10"))
CELLS = (("single", 1, 1), ("single", 8, 2), ("single", 32, 2), ("batch100", 8, 2))  # body, connections, wrk threads


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
    from conveyor.predict import predict
    from conveyor.serving import Bundle

    model = io.load_model(repo / "models/model.skops")
    test = io.read_table(repo / "data/split/test.parquet")
    thousand = test.sample(1000, replace=True, random_state=0).reset_index(drop=True)
    onnx = Bundle.load(bundle_dir).predictor()
    calls: dict[str, Callable[[pd.DataFrame], object]] = {
        "sklearn (conveyor.predict)": lambda df: predict(model, df),
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


def load(url: str, body: bytes, connections: int, threads: int, workdir: Path) -> dict[str, float]:
    """One wrk cell: POST ``body`` to ``url`` for ``SECONDS`` seconds."""
    script = workdir / f"post-{len(body)}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body.decode()}]==]\n'
    )
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{SECONDS}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(result.stdout)


def measure_server(
    name: str, command: list[str], cwd: Path, env: dict[str, str], *, port: int, bodies: dict[str, bytes], workdir: Path
) -> dict[str, Any]:
    """Cold start, then every load cell against one server."""
    with running(command, cwd=cwd, env=env, port=port, log=workdir / f"{name}.log") as cold_start:
        cells = {
            f"{body}_c{connections}": load(
                f"http://127.0.0.1:{port}/predict", bodies[body], connections, threads, workdir
            )
            for body, connections, threads in CELLS
        }
    return {"cold_start_s": cold_start, "cells": cells}


def minimal_app(model_path: Path) -> Any:
    """The baseline: Starlette, one route, the same pipeline through ``conveyor.predict``, no validation."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from conveyor import io
    from conveyor.predict import predict

    model = io.load_model(model_path)

    async def predict_route(request: Request) -> JSONResponse:
        records = (await request.json())["records"]
        return JSONResponse([str(label) for label in predict(model, pd.DataFrame.from_records(records))])

    async def ready(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict_route, methods=["POST"]), Route("/readyz", ready)])


def prepare(workdir: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A reproduced copy of the repository, packaged twice: without and with adaptive batching."""
    repo = fresh_copy(workdir, "repo")
    tags = {}
    for batching in ("false", "true"):
        params = repo / "params.yaml"
        text = re.sub(r"(?m)^(  batching:)\s*\w+", rf"\1 {batching}", params.read_text())
        params.write_text(text)
        subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, check=True)
        tags[batching] = json.loads((repo / "reports/package.json").read_text())["model_tag"]
    return repo, tags


def main(results_dir: Path) -> str:
    """Run the serving benchmark; write ``serving.json`` into ``results_dir``; return a Markdown section."""
    if shutil.which("wrk") is None:
        raise RuntimeError("the serving benchmark needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="conveyor-serving-bench-") as tmp:
        workdir = Path(tmp)
        env = ENV | {"BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
        repo, tags = prepare(workdir, env)
        os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
        bundle_dir = workdir / "bentoml/models/conveyor-model" / tags["false"].split(":", 1)[1]
        results: dict[str, Any] = {"seconds_per_cell": SECONDS, "in_process": in_process(repo, bundle_dir)}
        bodies = request_bodies(repo)
        port = free_port()
        minimal = [sys.executable, __file__, "minimal-app", str(repo / "models/model.skops"), str(port)]
        results["minimal_app"] = measure_server(
            "minimal_app", minimal, repo, env, port=port, bodies=bodies, workdir=workdir
        )
        for label, tag in (("conveyor", tags["false"]), ("conveyor_batching", tags["true"])):
            port = free_port()
            command = ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)]
            tagged = env | {"CONVEYOR_MODEL_TAG": tag}
            results[label] = measure_server(label, command, repo, tagged, port=port, bodies=bodies, workdir=workdir)
        results["inference"] = json.loads((repo / "reports/package.json").read_text())["inference"]
    (results_dir / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    return markdown(results)


def markdown(results: dict[str, Any]) -> str:
    """The serving section of RESULTS.md: tables, then the issue's targets checked against them."""
    in_proc = results["in_process"]
    lines = [
        "## Serving",
        "",
        f"Model: the default pipeline; the service runs it through {results['inference']}. "
        f"wrk on 127.0.0.1, {results['seconds_per_cell']} s per cell, one worker everywhere.",
        "",
        "| in process | 1 row | 1,000 rows | rows/s at 1,000 |",
        "|---|---|---|---|",
    ]
    for name, row in in_proc.items():
        lines.append(
            f"| {name} | {row['1_row_ms']:.3f} ms | {row['1000_rows_ms']:.2f} ms | {row['rows_per_s_1000']:,.0f} |"
        )
    lines += [
        "",
        "| server | cold start | 1 record, c1 | c8 | c32 | 100 records, c8 | non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("minimal_app", "conveyor", "conveyor_batching"):
        server_result = results[name]
        cells = server_result["cells"]
        single = [cells[f"single_c{c}"] for c in (1, 8, 32)]
        batch = cells["batch100_c8"]
        errors = sum(cell["non_2xx"] + cell["socket_errors"] for cell in cells.values())
        lines.append(
            f"| {name} | {server_result['cold_start_s']:.1f} s | "
            + " | ".join(
                f"{c['req_per_s']:,.0f} req/s (p50 {c['p50_ms']:.1f}, p99 {c['p99_ms']:.1f} ms)" for c in single
            )
            + f" | {100 * batch['req_per_s']:,.0f} rows/s (p99 {batch['p99_ms']:.0f} ms) | {errors:.0f} |"
        )
    lines += ["", *targets(results)]
    return "\n".join(lines) + "\n"


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the figure that decides it, for the better Conveyor variant."""
    best = max(("conveyor", "conveyor_batching"), key=lambda n: results[n]["cells"]["single_c32"]["req_per_s"])
    cells = results[best]["cells"]
    baseline = results["minimal_app"]["cells"]["single_c32"]["req_per_s"]
    ratio = cells["single_c32"]["req_per_s"] / baseline
    rows_share = (
        100
        * 100
        * cells["batch100_c8"]["req_per_s"]
        / results["in_process"]["sklearn (conveyor.predict)"]["rows_per_s_1000"]
    )
    errors = sum(cell["non_2xx"] + cell["socket_errors"] for cell in cells.values())
    checks = [
        (f"single record, c32: {ratio:.1f}x the minimal app", ratio >= 4),
        (f"single record, c32: p99 {cells['single_c32']['p99_ms']:.0f} ms", cells["single_c32"]["p99_ms"] < 100),
        (f"100-record requests: {rows_share:.0f}% of in-process scikit-learn rows/s", rows_share >= 50),
        (f"non-2xx or socket errors: {errors:.0f}", errors == 0),
        (f"cold start {results[best]['cold_start_s']:.1f} s", results[best]["cold_start_s"] < 10),
    ]
    header = [
        f"Targets ({best}): ≥4x minimal app at c32, p99 < 100 ms, ≥50% of in-process rows/s, no errors, cold start < 10 s.",
        "",
    ]
    return header + [f"- {'met' if passed else 'NOT met'}: {text}" for text, passed in checks]


if __name__ == "__main__":
    if sys.argv[1:2] == ["minimal-app"]:
        import uvicorn

        uvicorn.run(
            minimal_app(Path(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[3]), workers=1, log_level="warning"
        )
    else:
        results = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
        results.mkdir(parents=True, exist_ok=True)
        print(main(results))
