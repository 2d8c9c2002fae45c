"""``conveyor …`` commands. Each is a thin shell around a stage's ``run`` or a helper.

Paths are arguments, never defaults: ``dvc.yaml`` is the one place that names the pipeline's
files, so a path cannot drift between the orchestrator and the code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.config import Config, ConfigError, load_config
from conveyor.contract import Contract, ContractError

# Errors a user can fix: shown as one clear message, not a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ContractError, ValueError, FileNotFoundError)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.params)


def _contract(cfg: Config) -> Contract:
    from conveyor import io

    return io.read_contract(cfg.data.schema_path)


def _ingest(args: argparse.Namespace) -> None:
    from conveyor.stages import ingest

    summary = ingest.run(_config(args), out=args.out, report=args.report)
    print(f"ingest: {summary['rows']} rows, {len(summary['columns'])} columns, hash {summary['hash'][:12]}")


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
    print(
        f"tune: {len(report.trials)} trials ({outcome.new_trials} run here, {outcome.seconds:.1f} s); "
        f"best {report.metric} {report.best_value:.4f} ± {report.best_std:.4f} over {report.cv_folds} folds "
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

    verdict = gate.run(_config(args), model_path=args.model, test=args.test, metrics=args.metrics, out=args.out)
    print(f"gate: accepted ({verdict['decided_by']}; {len(verdict['checks'])} checks passed)")


def _schema_infer(args: argparse.Namespace) -> None:
    from conveyor import io
    from conveyor.contract import infer_contract

    df = io.read_source(args.data)
    contract = infer_contract(df, target=args.target, max_categories=args.max_categories)
    io.write_contract(contract, args.out)
    print(
        f"schema infer: {len(contract.columns)} columns from {len(df)} rows written to {args.out}; review it before committing"
    )


def _report(args: argparse.Namespace) -> None:
    from conveyor import report

    baseline = args.baseline or _config(args).gate.baseline_rev
    written = report.run(
        out=args.out,
        gate=args.gate,
        validation=args.validation,
        baseline=baseline,
        root=Path.cwd(),
        tuning=args.tuning,
    )
    verdict = {True: "accepted", False: "rejected", None: "no fresh verdict"}[written.accepted]
    print(f"report: {written.markdown} with {len(written.figures)} figure(s); gate: {verdict}")


def _deploy_set_image(args: argparse.Namespace) -> None:
    from conveyor import deploy

    change = deploy.set_image(args.overlay, name=args.name, image=args.image, tag=args.tag)
    was = f" (was {change.previous})" if change.changed else " (unchanged)"
    print(f"deploy set-image: {change.path}: {change.name} -> {change.image}:{change.tag}{was}")


def _package(args: argparse.Namespace) -> None:
    from conveyor.stages import package

    cfg = _config(args)
    report = package.run(
        cfg,
        model_path=args.model,
        metadata=args.metadata,
        gate=args.gate,
        metrics=args.metrics,
        contract_path=Path(cfg.data.schema_path),
        test=args.test,
        bentofile=args.bentofile,
        out=args.out,
    )
    print(f"package: model {report['model_tag']}, bento {report['bento_tag']}, inference {report['inference']}")


def _add_report(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--out", type=Path, required=True, help="the Markdown file; images go to <stem>-images/ beside it")
    sub.add_argument("--gate", type=Path, required=True, help="the gate's verdict (reports/gate.json)")
    sub.add_argument("--validation", type=Path, required=True, help="the validate stage's report")
    sub.add_argument("--baseline", help="git revision to compare with (default: gate.baseline_rev)")
    sub.add_argument("--tuning", type=Path, help="the tune stage's report (reports/tuning.json): adds a tuning section")


def _add_deploy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = commands.add_parser("deploy", help="Deployment manifest tools.", description="Deployment manifest tools.")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True, metavar="COMMAND")
    set_image = deploy_commands.add_parser("set-image", help="Point a kustomize overlay at an image tag.")
    set_image.add_argument(
        "--overlay", type=Path, required=True, help="kustomize directory, e.g. deploy/overlays/staging"
    )
    set_image.add_argument(
        "--name", default="conveyor", help="the image name the base manifests use (default: conveyor)"
    )
    set_image.add_argument("--image", required=True, help="image repository, e.g. ghcr.io/owner/conveyor")
    set_image.add_argument("--tag", required=True, help="image tag, e.g. the commit SHA")
    set_image.set_defaults(handler=_deploy_set_image)


# The pipeline's commands in dvc.yaml order: handler, help, and the file options each requires.
STAGE_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str, tuple[str, ...]]] = {
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
    "gate": (_gate, "Accept or reject the model (thresholds and champion).", ("model", "test", "metrics", "out")),
    "package": (
        _package,
        "Save the accepted model to the BentoML store and build the bento.",
        ("model", "metadata", "gate", "metrics", "test", "bentofile", "out"),
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

    schema = commands.add_parser("schema", help="Data contract tools.", description="Data contract tools.")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True, metavar="COMMAND")
    infer = schema_commands.add_parser("infer", help="Write a data contract inferred from a sample.")
    infer.add_argument("--data", required=True, help="CSV or Parquet sample (path or URL)")
    infer.add_argument("--target", required=True, help="the label column")
    infer.add_argument("--out", type=Path, required=True, help="where to write the contract (YAML)")
    infer.add_argument(
        "--max-categories", type=int, default=50, help="text columns with more distinct values are free text"
    )
    infer.set_defaults(handler=_schema_infer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one message and return 1."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except USER_ERRORS as exc:
        print(f"conveyor {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
