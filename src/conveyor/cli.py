"""``conveyor …`` commands. Each is a thin shell around a stage's ``run`` or a helper.

Paths are arguments, never defaults: ``dvc.yaml`` is the one place that names the pipeline's
files, so a path cannot drift between the orchestrator and the code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.config import Config, load_config
from conveyor.contract import Contract
from conveyor.errors import ConveyorError
from conveyor.io import DISK_ERRNOS
from conveyor.urls import known_secrets, scrub

__all__ = ["build_parser", "main"]


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.params)


def _contract(cfg: Config) -> Contract:
    from conveyor import io

    return io.read_contract(cfg.data.schema_path)


def _source(args: argparse.Namespace) -> None:
    from conveyor.stages import source

    found = source.run(load_config(args.params, check_params=False), out=args.out)
    what = {"file": f"{found.size} bytes, sha256 {(found.sha256 or '')[:12]}", "sql": "a database (not fingerprinted)"}
    print(
        f"source: {found.source}: {what.get(found.kind) or ', '.join(f'{k} {v}' for k, v in found.version.items()) or 'no version reported'}"
    )


def _ingest(args: argparse.Namespace) -> None:
    from conveyor.stages import ingest

    summary = ingest.run(_config(args), out=args.out, report=args.report)
    print(f"ingest: {summary.rows} rows, {len(summary.columns)} columns, hash {summary.hash[:12]}")
    if summary.feature_store is not None:
        join = summary.feature_store
        print(
            f"ingest: feature service {join.feature_service}: {join.entity_rows} entity rows, "
            f"{join.dropped} dropped by the point-in-time join"
        )


def _validate(args: argparse.Namespace) -> None:
    from conveyor.stages import validate

    cfg = _config(args)
    result = validate.run(cfg, _contract(cfg), data=args.data, out=args.out, report=args.report)
    for warning in result.warnings:
        print(f"validate: warning: {warning}", file=sys.stderr)
    print(f"validate: {result.rows} rows passed the contract with {len(result.warnings)} warning(s)")


def _split(args: argparse.Namespace) -> None:
    from conveyor.stages import split

    n_train, n_test = split.run(_config(args), data=args.data, train_out=args.train, test_out=args.test)
    print(f"split: {n_train} train rows, {n_test} test rows")


def _tune(args: argparse.Namespace) -> None:
    from conveyor.stages import tune

    # Disabled, the stage only copies model.params: skip importing the estimator to check them.
    cfg = load_config(args.params, check_params=False)
    if cfg.tune.enabled:
        cfg = _config(args)
    outcome = tune.run(
        cfg, data=args.data, out=args.out, report=args.report, plots=args.plots, progress=tune.progress_wanted()
    )
    report = outcome.report
    if not report.enabled:
        print(f"tune: disabled; {cfg.model.estimator} trains with model.params")
        return
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in report.best_params.items())
    sampled = (
        f" of a seeded {report.rows:,} of {report.train_rows:,} train rows" if report.rows != report.train_rows else ""
    )
    print(
        f"tune: {len(report.trials)} trials ({outcome.new_trials} run here, {outcome.seconds:.1f} s); "
        f"best {report.metric} {report.best_value:.4f} ± {report.best_std:.4f} over {report.cv_folds} folds{sampled} "
        f"(trial {report.best_trial}): {shown}"
    )


def _train(args: argparse.Namespace) -> None:
    from conveyor.stages import train

    cfg = _config(args)
    train.run(
        cfg,
        _contract(cfg),
        data=args.data,
        model_out=args.model,
        metadata_out=args.metadata,
        tuned_params=args.tuned_params,
    )
    print(f"train: {cfg.model.estimator} saved to {args.model}")


def _evaluate(args: argparse.Namespace) -> None:
    from conveyor.stages import evaluate

    evaluation = evaluate.run(_config(args), model_path=args.model, test=args.test, out=args.out)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in evaluation.metrics.items())
    print(f"evaluate: {shown}")


def _gate(args: argparse.Namespace) -> None:
    from conveyor.stages import gate

    verdict = gate.run(
        _config(args),
        model_path=args.model,
        card_path=args.metadata,
        test=args.test,
        evaluation=args.evaluation,
        out=args.out,
        champion_out=args.champion,
    )
    print(f"gate: accepted; {len(verdict.checks)} threshold check(s) passed")


def _schema_infer(args: argparse.Namespace) -> None:
    from conveyor import io
    from conveyor.contract import infer
    from conveyor.ops.init import read_as_asked

    df, _ = read_as_asked(
        args.data, delimiter=args.delimiter, decimal=args.decimal, encoding=args.encoding, missing=args.missing
    )
    inferred = infer(df, target=args.target, max_categories=args.max_categories)
    contract = inferred.contract
    io.write_contract(contract, args.out)
    for line in inferred.lines():
        print(f"  {line}")
    print(
        f"schema infer: {len(contract.columns)} columns from {len(df)} rows written to {args.out}; review it before committing"
    )


def _init(args: argparse.Namespace) -> None:
    from conveyor.ops import init
    from conveyor.urls import is_parquet

    result = init.run(
        data=args.data,
        target=args.target,
        task=args.task,
        params=args.params,
        max_categories=args.max_categories,
        bakeoff_s=args.bakeoff_seconds,
        transform=args.target_transform,
        delimiter=args.delimiter,
        decimal=args.decimal,
        encoding=args.encoding,
        missing=args.missing,
    )
    for line in result.columns:
        print(f"  {line}")
    for item, why in result.derived:
        print(f"init: features.derived: {item['kind']} of {item['column']!r} ({why})")
    csv_format = result.config.data.csv
    if not is_parquet(result.config.data.source):
        print(
            f"init: data.csv: delimiter {csv_format.delimiter!r}, decimal {csv_format.decimal!r}, "
            f"encoding {csv_format.encoding}, missing {list(csv_format.missing)}"
        )
    print(
        f"init: {result.choice.task} ({result.choice.reason}); {args.params} and {result.config.data.schema_path} "
        f"written for {len(result.contract.columns)} columns; review them, then `dvc repro`"
    )


def _report(args: argparse.Namespace) -> None:
    from conveyor.ops import report

    baseline = args.baseline or _config(args).gate.baseline_rev
    written = report.run(
        out=args.out,
        gate=args.gate,
        champion=args.champion,
        validation=args.validation,
        baseline=baseline,
        root=Path.cwd(),
        tuning=args.tuning,
        metadata=args.metadata,
    )
    verdict = {True: "accepted", False: "rejected", None: "no fresh verdict"}[written.accepted]
    print(f"report: {written.markdown} with {len(written.figures)} figure(s); gate: {verdict}")


def _deploy_set_image(args: argparse.Namespace) -> None:
    from conveyor.ops import deploy

    change = deploy.set_image(args.overlay, name=args.name, image=args.image, tag=args.tag, digest=args.digest)
    was = f" (was {change.previous})" if change.changed else " (unchanged)"
    print(f"deploy set-image: {change.path}: {change.name} -> {change.reference}{was}")


def _package(args: argparse.Namespace) -> None:
    from conveyor.stages import package

    cfg = _config(args)
    report = package.run(
        cfg,
        model_path=args.model,
        metadata=args.metadata,
        gate=args.gate,
        evaluation=args.evaluation,
        contract_path=Path(cfg.data.schema_path),
        test=args.test,
        train=args.train,
        bentofile=args.bentofile,
        out=args.out,
        ingest=args.ingest,
    )
    print(f"package: model {report.model_tag}, bento {report.bento_tag}, inference {report.inference}")


def _packaged(args: argparse.Namespace) -> None:
    from conveyor.bundle import missing_from_store, read_package_report

    report = read_package_report(args.report)
    if args.what == "model-tag":
        print(report.model_tag)
    elif args.what == "bento-tag":
        print(report.bento_tag)
    elif missing := missing_from_store(report):
        raise ConveyorError(f"{args.report}: {' and '.join(missing)} not in this machine's BentoML store")


def _monitor(args: argparse.Namespace) -> None:
    from conveyor.bundle import PACKAGE_REPORT
    from conveyor.monitor.render import SUMMARY, summary_markdown
    from conveyor.monitor.run import default_model_tag, run

    model_tag = args.model or default_model_tag(PACKAGE_REPORT)
    report = run(
        _config(args),
        model_tag=model_tag,
        out=args.out,
        logs=args.logs,
        current=args.current,
        labels=args.labels,
        timings=args.timings,
    )
    alerts = ", ".join(check.name for check in report.alerts) or "none"
    print(f"monitor: {report.status} ({report.rows} records; alerts: {alerts}); {args.out / SUMMARY}")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:  # in GitHub Actions: the verdict on the run's page too
        with open(step_summary, "a", encoding="utf-8") as page:
            page.write(summary_markdown(report))
    if args.fail_on_alert and report.status == "alert":
        raise SystemExit(1)


def _alert_timings(args: argparse.Namespace) -> None:
    from conveyor.ops import alerts

    timings = alerts.fetch_stage_timings(args.repo, args.workflow, args.out)
    if timings is None:
        print(
            f"alert timings: no stage timings from a successful main run of {args.workflow}; pipeline time not checked"
        )
    else:
        print(f"alert timings: {timings.total:.0f} s over {len(timings.root)} stages, written to {args.out}")


def _alert_sync(args: argparse.Namespace) -> None:
    from conveyor.ops import alerts

    report = alerts.read_report(args.report)
    url = alerts.run_url()
    done = alerts.sync_issue(args.repo, report, alerts.issue_body(args.report, url), run_url=url)
    print(f"alert sync: {report.status}: {done}")
    if report.status == "alert" and _config(args).monitor.retrain_on_alert:
        alerts.dispatch(args.repo, args.retrain_workflow)
        print(f"alert sync: dispatched {args.retrain_workflow} (monitor.retrain_on_alert)")


def _add_alert(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alert = commands.add_parser(
        "alert", help="GitHub side of monitoring (through gh).", description="GitHub side of monitoring (through gh)."
    )
    alert_commands = alert.add_subparsers(dest="alert_command", required=True, metavar="COMMAND")
    repository = os.environ.get("GITHUB_REPOSITORY")
    timings = alert_commands.add_parser("timings", help="Download the last main pipeline's stage-timings.json.")
    sync = alert_commands.add_parser(
        "sync", help="Open, update or close the model-monitor issue from a monitor report."
    )
    for sub in (timings, sync):
        sub.add_argument(
            "--repo", default=repository, required=repository is None, help="owner/name (default: $GITHUB_REPOSITORY)"
        )
    timings.add_argument(
        "--workflow", required=True, help="the pipeline workflow whose main runs upload stage-timings, e.g. deploy.yml"
    )
    timings.add_argument("--out", type=Path, required=True, help="where to write stage-timings.json")
    timings.set_defaults(handler=_alert_timings)
    sync.add_argument(
        "--report", type=Path, required=True, help="the folder conveyor monitor wrote (monitor.json, summary.md)"
    )
    sync.add_argument(
        "--retrain-workflow", default="retrain.yml", help="dispatched on alert when monitor.retrain_on_alert"
    )
    sync.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    sync.set_defaults(handler=_alert_sync)


def _add_monitor(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--model", help="BentoML model tag (default: the one reports/package.json names)")
    window = sub.add_mutually_exclusive_group(required=True)
    window.add_argument("--logs", help="the service's bentoml.monitor log folder, local or an fsspec URL (s3://…)")
    window.add_argument("--current", help="a CSV/Parquet table of records (path or URL)")
    sub.add_argument(
        "--labels",
        help="CSV/Parquet of the target and request_id (and record), or an id column of the contract, for the performance check",
    )
    sub.add_argument("--timings", type=Path, help="stage-timings.json of the last pipeline run: stage -> seconds")
    sub.add_argument("--out", type=Path, required=True, help="folder for monitor.json, report.html, summary.md")
    sub.add_argument("--fail-on-alert", action="store_true", help="exit 1 when the status is alert")


def _timings(args: argparse.Namespace) -> None:
    from conveyor import io
    from conveyor.artifacts import StageTimings

    # No file: no stage ran in this job (DVC found every output in the cache or the remote).
    timings = io.read_artifact(args.file, StageTimings) if args.file.exists() else StageTimings({})
    rows = [f"| `{stage}` | {seconds:.1f} |" for stage, seconds in timings.root.items()]
    print("\n".join(["## Pipeline stage times", "", "| stage | seconds |", "|---|---|", *rows]))
    print(f"\nTotal {timings.total:.1f} s; slowest: `{timings.slowest}`." if timings.root else "\nNo stage ran.")


def _check_repro(args: argparse.Namespace) -> None:
    from conveyor.ops import repro

    outcome = repro.check(Path.cwd(), rev=args.rev)
    lines = repro.summary(outcome)
    print("\n".join(lines), file=sys.stderr if outcome.problems else sys.stdout)
    if outcome.problems:
        raise SystemExit(1)


def _online_predict(args: argparse.Namespace) -> None:
    import json

    import pandas as pd

    from conveyor import io
    from conveyor.model.predict import predict
    from conveyor.serving.online_features import OnlineFeatures, parse_entity

    cfg = load_config(args.params, check_params=False)
    keys = dict(parse_entity(text) for text in args.entity)
    client = OnlineFeatures(args.url, feature_service=cfg.feature_store.feature_service)
    try:
        features = client.get_one(**keys)
    finally:
        client.close()
    prediction = predict(io.load_model(args.model), pd.DataFrame([features])).tolist()[0]
    print(json.dumps({"entity": keys, "features": features, "prediction": prediction}))


def _add_online_predict(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--url", required=True, help="the Feast feature server, e.g. http://127.0.0.1:6566")
    sub.add_argument("--model", type=Path, required=True, help="the trained model (models/model.skops)")
    sub.add_argument(
        "--entity", action="append", required=True, metavar="KEY=VALUE", help="an entity key, e.g. penguin_id=5"
    )


def _add_report(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--out", type=Path, required=True, help="the Markdown file; images go to <stem>-images/ beside it")
    sub.add_argument("--gate", type=Path, required=True, help="the gate's verdict (reports/gate.json)")
    sub.add_argument(
        "--champion", type=Path, required=True, help="the gate's champion comparison (reports/champion.json)"
    )
    sub.add_argument("--validation", type=Path, required=True, help="the validate stage's report")
    sub.add_argument("--baseline", help="git revision to compare with (default: gate.baseline_rev)")
    sub.add_argument("--tuning", type=Path, help="the tune stage's report (reports/tuning.json): adds a tuning section")
    sub.add_argument(
        "--metadata",
        type=Path,
        default=Path("models/model.json"),
        help="the model card: its derived features get a section (default: models/model.json)",
    )


def _add_init(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--data", required=True, help="the table: CSV or Parquet path, or http(s)/s3 URL")
    sub.add_argument("--target", required=True, help="the label column")
    sub.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="default: inferred (text, true/false or few whole numbers: classification)",
    )
    sub.add_argument(
        "--max-categories", type=int, default=50, help="text columns with more distinct values are free text"
    )
    sub.add_argument(
        "--bakeoff-seconds",
        type=float,
        default=45.0,
        help="time box of the bake-off (linear model, HistGradientBoosting, lightgbm; CV on the train split) "
        "that picks model and gate thresholds; 0: the linear default and chance-based thresholds",
    )
    _add_csv_format(sub)
    sub.add_argument(
        "--target-transform",
        choices=("auto", "none", "log"),
        default="auto",
        help="regression: fit on the log scale (auto: for a strictly positive, skewed target)",
    )


def _add_csv_format(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--delimiter", help="a CSV's field delimiter (default: detected among , ; tab |)")
    sub.add_argument("--decimal", choices=(".", ","), help="a CSV's decimal mark (default: detected)")
    sub.add_argument("--encoding", default="utf-8", help="a CSV's text encoding, e.g. cp1252 (default: utf-8)")
    sub.add_argument(
        "--missing",
        action="append",
        help="a CSV's marker of a missing value, e.g. '?' (repeat for more; default: detected in number columns)",
    )


def _add_deploy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = commands.add_parser("deploy", help="Deployment manifest tools.", description="Deployment manifest tools.")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True, metavar="COMMAND")
    set_image = deploy_commands.add_parser("set-image", help="Point a kustomize overlay at an image tag and digest.")
    set_image.add_argument(
        "--overlay", type=Path, required=True, help="kustomize directory, e.g. deploy/overlays/staging"
    )
    set_image.add_argument(
        "--name", default="conveyor", help="the image name the base manifests use (default: conveyor)"
    )
    set_image.add_argument("--image", required=True, help="image repository, e.g. ghcr.io/owner/conveyor")
    set_image.add_argument("--tag", required=True, help="image tag, e.g. the commit SHA")
    set_image.add_argument(
        "--digest", required=True, help="the digest `docker push` returned (sha256:…): what the cluster pulls"
    )
    set_image.set_defaults(handler=_deploy_set_image)


# The pipeline's commands in dvc.yaml order: handler, help, and the file options each requires.
STAGE_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, tuple[str, ...]]] = {
    "source": (_source, "Fingerprint data.source (a file's hash, a URL's version) for DVC.", ("out",)),
    "ingest": (_ingest, "Read data.source into the raw Parquet table.", ("out", "report")),
    "validate": (_validate, "Check the raw table against the data contract.", ("data", "out", "report")),
    "split": (_split, "Split the validated table into train and test.", ("data", "train", "test")),
    "tune": (
        _tune,
        "Search the estimator's params by cross-validation on the train split (or pass model.params through).",
        ("data", "out", "report", "plots"),
    ),
    "train": (
        _train,
        "Fit the feature + estimator pipeline with the tuned params.",
        ("data", "tuned-params", "model", "metadata"),
    ),
    "evaluate": (
        _evaluate,
        "Metrics, plots, importance, slices and latency on the test split.",
        ("model", "test", "out"),
    ),
    "gate": (
        _gate,
        "Accept or reject the model (thresholds and champion).",
        ("model", "metadata", "test", "evaluation", "out", "champion"),
    ),
    "package": (
        _package,
        "Save the accepted model to the BentoML store and build the bento.",
        ("model", "metadata", "gate", "evaluation", "test", "train", "bentofile", "ingest", "out"),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``conveyor`` argument parser with every command."""
    parser = argparse.ArgumentParser(prog="conveyor", description="Raw tabular data to an accepted, deployable model.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
        sub.set_defaults(handler=handler)
        return sub

    for name, (handler, help_text, paths) in STAGE_COMMANDS.items():
        sub = command(name, handler, help_text)
        for option in paths:
            sub.add_argument(f"--{option}", type=Path, required=True)
    _add_report(
        command("report", _report, "Write the model report (Markdown + PNG plots) against the baseline revision.")
    )
    _add_deploy(commands)
    timings = commands.add_parser(
        "timings",
        help="Print the stage times a pipeline run recorded (CONVEYOR_STAGE_TIMINGS) as Markdown.",
        description="Print the stage times a pipeline run recorded (CONVEYOR_STAGE_TIMINGS) as Markdown.",
    )
    timings.add_argument("--file", type=Path, required=True, help="the stage-timings.json the stages wrote")
    timings.set_defaults(handler=_timings)
    check_repro = commands.add_parser(
        "check-repro",
        help="After `dvc repro`: is the committed dvc.lock current, and are the results the committed ones?",
        description=(
            "Compare the workspace after `dvc repro` with a revision: every stage's command, params and input "
            "files exactly; tracked reports within a stated numeric tolerance; machine-dependent bytes named."
        ),
    )
    check_repro.add_argument(
        "--rev", default="HEAD", help="the revision holding the committed dvc.lock (default: HEAD)"
    )
    check_repro.set_defaults(handler=_check_repro)
    _add_init(
        command(
            "init",
            _init,
            "Retarget to a table: infer its contract and task, rewrite params.yaml's data, model and gate keys.",
        )
    )
    _add_monitor(
        command("monitor", _monitor, "Judge served records against the training data: drift, quality, performance.")
    )
    _add_alert(commands)
    _add_online_predict(
        command(
            "online-predict",
            _online_predict,
            "Predict for an entity key alone: its features from Feast's feature server (feature_store.feature_service).",
        )
    )
    packaged = commands.add_parser(
        "packaged",
        help="Print what the package stage made (reports/package.json), or check this machine's store has it.",
        description="Print the model or bento tag reports/package.json names, or exit 1 unless both are in the store.",
    )
    packaged.add_argument("what", choices=("model-tag", "bento-tag", "in-store"))
    packaged.add_argument(
        "--report", type=Path, default=Path("reports/package.json"), help="default: reports/package.json"
    )
    packaged.set_defaults(handler=_packaged)

    schema = commands.add_parser("schema", help="Data contract tools.", description="Data contract tools.")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True, metavar="COMMAND")
    infer = schema_commands.add_parser("infer", help="Write a data contract inferred from a sample.")
    infer.add_argument("--data", required=True, help="CSV or Parquet sample (path or URL)")
    infer.add_argument("--target", required=True, help="the label column")
    infer.add_argument("--out", type=Path, required=True, help="where to write the contract (YAML)")
    infer.add_argument(
        "--max-categories", type=int, default=50, help="text columns with more distinct values are free text"
    )
    _add_csv_format(infer)
    infer.set_defaults(handler=_schema_infer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; expected failures (:class:`ConveyorError`) print one message and return 1.

    Anything else is a bug, in Conveyor or a library, and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        args.handler(args)
    except ConveyorError as exc:
        print(f"conveyor {args.command}: error: {scrub(str(exc), known_secrets())}", file=sys.stderr)
        return 1
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            # A full, read-only or failing disk under a library's own writes (the BentoML store,
            # dvclive): the machine's state, not a bug. One line naming the path.
            where = exc.filename or "a file"
            message = f"conveyor {args.command}: error: {where}: cannot write: {exc.strerror}"
            print(scrub(message, known_secrets()), file=sys.stderr)
            return 1
        # A bug keeps its traceback, but not a credential of data.source_env's URL.
        if not known_secrets():
            raise
        print(scrub(traceback.format_exc(), known_secrets()), file=sys.stderr, end="")
        return 1
    if args.command in STAGE_COMMANDS and (timings := os.environ.get(STAGE_TIMINGS_VARIABLE)):
        _record_stage_time(Path(timings), args.command, time.perf_counter() - started)
    return 0


# Where the workflows collect each stage's wall time (an untracked file: a time is no output).
STAGE_TIMINGS_VARIABLE = "CONVEYOR_STAGE_TIMINGS"


def _record_stage_time(path: Path, stage: str, seconds: float) -> None:
    from conveyor import io
    from conveyor.artifacts import StageTimings

    recorded = io.read_artifact(path, StageTimings).root if path.is_file() else {}
    io.write_artifact(StageTimings({**recorded, stage: round(seconds, 3)}), path)
