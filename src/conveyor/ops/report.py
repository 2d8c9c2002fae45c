"""report: the model report a pull request gets, as Markdown plus the PNG plots it links.

It reads what the pipeline wrote (the gate's verdict, the validation summary) and asks DVC for
everything that compares two revisions: the metrics and params diffs against the baseline, and
every plot with both revisions in one figure, rendered to PNG with vl-convert. CML posts the
result; this module never talks to GitHub, so the report is the same locally and in CI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import io
from conveyor.artifacts import Champion, GateVerdict, TunedParams, TuningReport, ValidationReport
from conveyor.errors import ArtifactError, ConveyorError
from conveyor.provenance import git, resolve_revision

__all__ = [
    "Baseline",
    "Figure",
    "Report",
    "ReportError",
    "baseline_params",
    "build",
    "diff_section",
    "dvc",
    "figure_specs",
    "plots_section",
    "render_plots",
    "resolve_baseline",
    "run",
    "stale_stages",
    "tuning_section",
    "validation_section",
    "verdict_section",
]

# DVC calls the uncommitted side of a diff "workspace"; in a review it is the candidate model.
CANDIDATE = "candidate"
# The stage whose failure still leaves a verdict worth reading (``reports/gate.json``).
GATE_STAGE = "gate"
# Where the tune stage leaves the params train fitted (committed: DVC does not cache it).
TUNED_PARAMS = "models/tuned_params.json"


class ReportError(ConveyorError):
    """DVC could not answer a question the report needs (e.g. not a DVC repository); carries its error."""


@dataclass(frozen=True)
class Baseline:
    """The revision the candidate is compared with: ``rev`` to hand to DVC, or why there is none."""

    requested: str
    rev: str | None
    commit: str | None
    problem: str | None


@dataclass(frozen=True)
class Figure:
    """One rendered plot: its title and the PNG's path relative to the report."""

    title: str
    link: str


@dataclass(frozen=True)
class Report:
    """What :func:`run` wrote."""

    markdown: Path
    figures: list[Path]
    accepted: bool | None


def resolve_baseline(requested: str, *, root: Path) -> Baseline:
    """Find ``requested`` (or ``origin/<requested>``, as a CI checkout has it) in git.

    A shallow clone is named as such: it is the usual reason a CI job cannot see ``main``.
    """
    found = resolve_revision(requested, root)
    if found is not None:
        return Baseline(requested, *found, None)
    if git(root, "rev-parse", "--is-shallow-repository") == "true":
        problem = (
            f"this is a shallow clone, so the baseline revision {requested!r} is not in its history. "
            "Fetch the full history (actions/checkout with `fetch-depth: 0`, or `git fetch --unshallow`) "
            "to compare with it."
        )
    else:
        problem = f"there is no git revision {requested!r} here (first model, or the branch was not fetched)."
    return Baseline(requested, None, None, problem)


def dvc(root: Path, *args: str) -> tuple[str, str]:
    """Run ``dvc ARGS`` with this interpreter's DVC; return (stdout, stderr) or raise :class:`ReportError`."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReportError(f"`dvc {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout, result.stderr


def stale_stages(status: Mapping[str, Any]) -> list[str]:
    """Stages that ``dvc status gate --with-deps --json`` lists as not up to date, apart from the gate.

    A rejected model leaves only the gate unfinished (its verdict is fresh); a stage upstream of
    it means the pipeline stopped earlier and the reports on disk are from an older run. Stages
    after the gate (packaging) do not run when it rejects, and do not matter here.
    """
    return sorted(name for name in status if name.split(":")[-1] != GATE_STAGE)


def verdict_section(gate: GateVerdict | None, champion: Champion | None, stale: Sequence[str]) -> list[str]:
    """The gate's verdict and every check (value, bound, baseline) as Markdown lines.

    ``champion`` is shown only when it belongs to the model the verdict is about.
    """
    if stale:
        return [
            "## Gate: ⚠️ not reached",
            "",
            f"The pipeline stopped before the gate: {', '.join(f'`{s}`' for s in stale)} did not finish "
            "(see the job log). Everything below comes from the last committed run, not from this change.",
        ]
    if gate is None:
        return ["## Gate: ⚠️ no verdict", "", "`reports/gate.json` is missing: the gate has not run."]
    if champion is not None and champion.challenger_sha256 != gate.model_sha256:
        champion = None
    checks = [*gate.checks, *(champion.checks if champion else [])]
    lines = [f"## Gate: {'✅ accepted' if gate.accepted else '❌ rejected'}", ""]
    failed = [c for c in checks if not c.passed]
    if failed:
        lines += ["Failed checks:", "", *(f"- {c}" for c in failed), ""]
    if champion is None:
        lines += ["Champion: unknown (`reports/champion.json` is missing or from another model).", ""]
    else:
        lines += [f"Champion `{champion.rev}` ({champion.status.replace('_', ' ')}): {champion.reason}.", ""]
    lines += ["| Check | Metric | Value | Bound | Baseline | Result |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {c.kind} | {c.metric} | {_number(c.value)} | {c.direction} {c.bound:.4f} | {_number(c.baseline)} | "
        f"{'✅ passed' if c.passed else '❌ failed'} |"
        for c in checks
    ]
    return lines


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def diff_section(title: str, table: str, *, unchanged: str) -> list[str]:
    """A section holding one of DVC's ``--md`` tables, or ``unchanged`` when DVC printed none."""
    body = table.strip()
    return [f"## {title}", "", body if body else unchanged]


def validation_section(validation: ValidationReport | None) -> list[str]:
    """Rows, columns and every warning or error the validate stage recorded."""
    if validation is None:
        return ["## Data validation", "", "`reports/validation.json` is missing: validation has not run."]
    errors, warnings = validation.errors, validation.warnings
    lines = [
        "## Data validation",
        "",
        f"{'✅ passed' if validation.passed else '❌ failed'}: {validation.rows} rows, "
        f"{validation.columns} columns, {len(errors)} error(s), {len(warnings)} warning(s).",
    ]
    findings = [("error", f) for f in errors] + [("warning", f) for f in warnings]
    if findings:
        lines.append("")
        lines += [
            f"- {level}: [{f.check}] {'`' + f.column + '`: ' if f.column else ''}{f.message}" for level, f in findings
        ]
    return lines


def baseline_params(baseline: Baseline, *, root: Path) -> dict[str, Any] | None:
    """The params the baseline's model was trained with (its tune stage's output), or None if it has none."""
    if baseline.commit is None:
        return None
    text = git(root, "show", f"{baseline.commit}:{TUNED_PARAMS}")
    if text is None:
        return None
    try:
        return TunedParams.model_validate_json(text).params
    except ValueError:
        return None


def tuning_section(
    tuning: TuningReport | None, *, baseline: Baseline, champion: Mapping[str, Any] | None, history: Figure | None
) -> list[str]:
    """Trials, the best cross-validated value and the chosen params against the baseline's, with the history plot."""
    lines = ["## Tuning", ""]
    if tuning is None:
        return [*lines, "`reports/tuning.json` is missing: the tune stage has not run."]
    if not tuning.enabled:
        return [*lines, "Off (`tune.enabled: false`): the model trains with `model.params`."]
    counts = {state: sum(1 for t in tuning.trials if t.state == state) for state in ("complete", "pruned", "fail")}
    done = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines += [
        f"Optuna study `{tuning.study}` on `{tuning.estimator}`: {len(tuning.trials)} trials ({done}). "
        f"Best {tuning.metric}: **{_number(tuning.best_value)} ± {_number(tuning.best_std)}** "
        f"({tuning.cv_folds}-fold cross-validation on the train split, trial {tuning.best_trial}).",
        "",
    ]
    side = f"`{baseline.requested}`"
    names = sorted(set(tuning.best_params) | set(champion or {}))
    lines += [f"| Param | candidate | {side} |", "|---|---|---|"]
    lines += [
        f"| {name} | {_param(tuning.best_params.get(name))} | {'—' if champion is None else _param(champion.get(name))} |"
        for name in names
    ]
    if history is not None:
        lines += ["", f"![{history.title}]({history.link})"]
    return lines


def _param(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else f"`{value}`"


def figure_specs(plots: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(plot name, index, Vega-Lite spec) for each figure in ``dvc plots diff --json`` output.

    The uncommitted revision is relabelled from DVC's "workspace" to "candidate", so the
    figure's legend reads as a comparison of the candidate with the baseline. A plot file with
    no points (evaluate's placeholder for the other task's plots) has no figure.
    """
    for name, renders in plots.get("data", {}).items():
        for index, render in enumerate(r for r in renders if r.get("type") == "vega"):
            yield name, index, _relabel(render["content"])


def render_plots(plots: Mapping[str, Any], directory: Path, *, link_base: str) -> list[Figure]:
    """Render each of :func:`figure_specs` to a PNG in ``directory``."""
    import vl_convert as vlc

    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, index, spec in figure_specs(plots):
        stem = _slug(Path(name).with_suffix("").as_posix()) + (f"-{index}" if index else "")
        png = vlc.vegalite_to_png(spec, scale=1.0)
        (directory / f"{stem}.png").write_bytes(png)
        title = spec.get("title", {})
        label = title.get("text", name) if isinstance(title, dict) else str(title)
        suffix = f" ({Path(name).stem})" if Path(name).parent.name in {"roc", "precision_recall", "calibration"} else ""
        figures.append(Figure(f"{label}{suffix}", f"{link_base}/{stem}.png"))
    return figures


def _relabel(value: Any) -> Any:
    if value == "workspace":
        return CANDIDATE
    if isinstance(value, Mapping):
        return {k: _relabel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relabel(v) for v in value]
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.removeprefix("reports/plots/")).strip("-")


def plots_section(figures: Sequence[Figure], baseline: Baseline) -> list[str]:
    """Image links, each figure showing the candidate and (when DVC has it) the baseline."""
    sides = f"`{CANDIDATE}` and `{baseline.requested}` together" if baseline.rev else f"`{CANDIDATE}` only"
    if not figures:
        return ["## Plots", "", "No plots were found."]
    return ["## Plots", "", f"Each figure shows {sides}.", "", *(f"![{f.title}]({f.link})" for f in figures)]


def build(
    *,
    gate: GateVerdict | None,
    champion: Champion | None,
    validation: ValidationReport | None,
    stale: Sequence[str],
    baseline: Baseline,
    metrics_table: str,
    params_table: str,
    notes: Sequence[str],
    figures: Sequence[Figure],
    tuning: Sequence[str] = (),
) -> str:
    """The report's Markdown, verdict first; pure. ``tuning`` is :func:`tuning_section`'s lines."""
    against = f"`{baseline.requested}` (`{baseline.commit[:12]}`)" if baseline.commit else f"`{baseline.requested}`"
    lines = ["# Model report", ""]
    if baseline.problem:
        lines += [f"> ⚠️ No comparison with the baseline: {baseline.problem}", ""]
    lines += [f"> ⚠️ {note}" for note in notes]
    if notes:
        lines.append("")
    lines += [*verdict_section(gate, champion, stale), ""]
    if tuning:
        lines += [*tuning, ""]
    if baseline.rev:
        lines += diff_section(f"Metrics against {against}", metrics_table, unchanged="No metric changed.")
        lines += ["", *diff_section(f"Params against {against}", params_table, unchanged="No param changed.")]
    else:
        lines += diff_section("Metrics", metrics_table, unchanged="No metrics yet.")
    lines += ["", *validation_section(validation), "", *plots_section(figures, baseline)]
    return "\n".join(lines) + "\n"


def run(
    *, out: Path, gate: Path, champion: Path, validation: Path, baseline: str, root: Path, tuning: Path | None = None
) -> Report:
    """Ask DVC and git for the comparison, render the plots, write ``out`` and its images.

    ``tuning`` is the tune stage's report; when given, the report gains a tuning section.
    """
    resolved = resolve_baseline(baseline, root=root)
    stale = stale_stages(io.parse_json(dvc(root, "status", GATE_STAGE, "--with-deps", "--json")[0] or "{}"))
    notes = []
    if resolved.rev:
        metrics_table, errors = dvc(root, "metrics", "diff", resolved.rev, "--md")
        if "failed to load some metrics" in errors and resolved.rev in errors.split("revisions:")[-1]:
            notes.append(f"`{baseline}` has no metrics yet: every metric below is new.")
        params_table = dvc(root, "params", "diff", resolved.rev, "--md")[0]
        plots = io.parse_json(dvc(root, "plots", "diff", resolved.rev, "--json")[0])
    else:
        metrics_table = dvc(root, "metrics", "show", "--md")[0]
        params_table = ""
        plots = io.parse_json(dvc(root, "plots", "show", "--json")[0])
    image_dir = out.parent / f"{out.stem}-images"
    figures = render_plots(plots, image_dir, link_base=image_dir.name)
    verdict = io.read_artifact(gate, GateVerdict) if gate.exists() else None
    tuning_lines: list[str] = []
    if tuning is not None:
        try:
            study: TuningReport | None = io.read_artifact(tuning, TuningReport)
        except ArtifactError:
            study = None
        history = next((f for f in figures if "tuning-plots-custom-history" in f.link), None)
        tuning_lines = tuning_section(
            study, baseline=resolved, champion=baseline_params(resolved, root=root), history=history
        )
    markdown = build(
        gate=verdict,
        champion=io.read_artifact(champion, Champion) if champion.exists() else None,
        validation=io.read_artifact(validation, ValidationReport) if validation.exists() else None,
        stale=stale,
        baseline=resolved,
        metrics_table=metrics_table,
        params_table=params_table,
        notes=notes,
        figures=figures,
        tuning=tuning_lines,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding="utf-8")
    accepted = None if stale or verdict is None else verdict.accepted
    return Report(out, [image_dir / Path(f.link).name for f in figures], accepted)
