"""report: the model report a pull request gets, as Markdown plus the PNG plots it links.

It reads what the pipeline wrote (the gate's verdict, the validation summary) and asks DVC for
everything that compares two revisions: the metrics and params diffs against the baseline, and
every plot with both revisions in one figure, rendered to PNG with vl-convert. Each figure is
also drawn in Markdown that GitHub renders itself (a Mermaid chart, or a table for the confusion
matrix), so the pull request comment shows every plot without an image upload. CML posts the
result; this module never talks to GitHub, so the report is the same locally and in CI.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from conveyor import io
from conveyor.artifacts import Champion, GateVerdict, ModelCard, TunedParams, TuningReport, ValidationReport
from conveyor.errors import ArtifactError, ConveyorError
from conveyor.provenance import git, resolve_revision

__all__ = [
    "Baseline",
    "Figure",
    "Report",
    "ReportError",
    "bar_chart",
    "baseline_params",
    "binned_chart",
    "build",
    "confusion_table",
    "curve_chart",
    "declared_plots",
    "dvc",
    "features_section",
    "figure_specs",
    "figure_title",
    "is_checkout_of",
    "metrics_section",
    "native_figure",
    "params_section",
    "plots_section",
    "points_by_revision",
    "render_plots",
    "resample",
    "resolve_baseline",
    "run",
    "shown_metrics",
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
# Decimals every metric is shown with; a difference that rounds to zero there is "unchanged".
DECIMALS = 4
# Plot folders that hold one file per class (evaluate's one-against-the-rest curves).
PER_CLASS = frozenset({"roc", "precision_recall", "calibration"})
# A curve on the unit square is drawn through this many evenly spaced points (Mermaid's line
# charts take y values at evenly spaced x); a scatter plot becomes at most MAX_BINS bin means,
# or one mean per x value when it has at most MAX_CATEGORIES of them (tuning trials).
GRID = 21
MAX_BINS = 12
MAX_CATEGORIES = 30


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
    """One rendered plot: its title, the PNG's path relative to the report, and the same figure as
    Markdown GitHub draws itself (:func:`native_figure`)."""

    title: str
    link: str
    native: list[str] = field(default_factory=list)
    same_as_baseline: bool = False


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


# How `dvc status --json` lists an always_changed stage that is otherwise up to date.
ALWAYS_CHANGED = "always changed"


def stale_stages(status: Mapping[str, Any]) -> list[str]:
    """Stages that ``dvc status gate --with-deps --json`` lists as not up to date, apart from the gate.

    A rejected model leaves only the gate unfinished (its verdict is fresh); a stage upstream of
    it means the pipeline stopped earlier and the reports on disk are from an older run. Stages
    after the gate (packaging) do not run when it rejects, and do not matter here. A stage that
    DVC lists only as ``always changed`` (``source``, which fingerprints data.source on every
    run) is not stale: what it writes is a dependency of ingest, which shows a changed source.
    """
    return sorted(
        name for name, changes in status.items() if name.split(":")[-1] != GATE_STAGE and changes != [ALWAYS_CHANGED]
    )


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


MetricsDiff = Mapping[str, Mapping[str, Mapping[str, Any]]]


def metrics_section(title: str, diff: MetricsDiff, *, baseline: str | None, gated: Sequence[str]) -> list[str]:
    """Every metric, the gate's first, for the baseline and the candidate, with the difference.

    ``diff`` is ``dvc metrics diff --all --json`` (``{file: {metric: {"old", "new"}}}``; see
    :func:`shown_metrics` for a report with no baseline). A difference that rounds to zero at
    :data:`DECIMALS` is "unchanged", never ``-0.0000``.
    """
    rows = [
        (_key(path, name, "reports/metrics.json"), values)
        for path, metrics in diff.items()
        for name, values in metrics.items()
    ]
    if not rows:
        return [f"## {title}", "", "No metrics yet."]
    order = {name: index for index, name in enumerate(dict.fromkeys(gated))}
    rows.sort(key=lambda row: (order.get(row[0], len(order)), row[0]))
    if baseline is None:
        lines = ["| Metric | candidate |", "|---|---|"]
        lines += [f"| {_metric_name(name, order)} | {_value(values.get('new'))} |" for name, values in rows]
    else:
        lines = [f"| Metric | `{baseline}` | candidate | Change |", "|---|---|---|---|"]
        lines += [
            f"| {_metric_name(name, order)} | {_value(values.get('old'))} | {_value(values.get('new'))} | "
            f"{_change(values.get('old'), values.get('new'))} |"
            for name, values in rows
        ]
    return [f"## {title}", "", *lines]


def shown_metrics(show: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``dvc metrics show --json`` in the shape of :func:`metrics_section`'s ``diff`` (no ``old``)."""
    files = show.get("", {}).get("data", {})
    return {path: {k: {"new": v} for k, v in _flat(entry.get("data", {}))} for path, entry in files.items()}


def params_section(title: str, diff: MetricsDiff, *, baseline: str) -> list[str]:
    """The params that differ from the baseline's (``dvc params diff --json``), or "No param changed."."""
    rows = sorted(
        (_key(path, name, "params.yaml"), values) for path, params in diff.items() for name, values in params.items()
    )
    if not rows:
        return [f"## {title}", "", "No param changed."]
    lines = [f"| Param | `{baseline}` | candidate |", "|---|---|---|"]
    lines += [f"| {_cell(name)} | {_setting(v.get('old'))} | {_setting(v.get('new'))} |" for name, v in rows]
    return [f"## {title}", "", *lines]


def _flat(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    # DVC's diffs name a nested metric by its dotted path; `show` nests it.
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _key(path: str, name: str, usual: str) -> str:
    return name if path == usual else f"{path}:{name}"


def _metric_name(name: str, gated: Mapping[str, int]) -> str:
    return f"{_cell(name)} (gate)" if name in gated else _cell(name)


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _cell(str(value))
    return f"{value:.{DECIMALS}f}"


def _change(old: Any, new: Any) -> str:
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)]
    if old is None and new is not None:
        return "new"
    if new is None and old is not None:
        return "removed"
    if not all(numbers):
        return "unchanged" if old == new else "changed"
    shown = f"{new - old:+.{DECIMALS}f}"
    return "unchanged" if float(shown) == 0 else shown


def _setting(value: Any) -> str:
    return "—" if value is None else _cell(json.dumps(value))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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


def features_section(card: ModelCard | None) -> list[str]:
    """What the model takes and computes, from ``models/model.json``: its columns and each ``features.derived`` step.

    Empty without a card, or for a model with no derived features (whose columns the params diff shows).
    """
    if card is None:
        return []
    derived = list(card.params.get("features", {}).get("derived", ()))
    if not derived:
        return []
    lines = ["## Features", "", "| step | kind | reads | settings |", "|---|---|---|---|"]
    for name in ("numeric", "categorical"):
        if card.features.get(name):
            lines.append(f"| {name} | as is | {', '.join(f'`{c}`' for c in card.features[name])} | |")
    steps = [name for name in card.features if name not in ("numeric", "categorical")]
    for name, item in zip(steps, derived, strict=False):
        settings = ", ".join(f"{k}: {_param(v)}" for k, v in item.items() if k not in ("kind", "column", "columns"))
        reads = ", ".join(f"`{c}`" for c in card.features[name])
        lines.append(f"| {name} | {item['kind']} | {reads} | {settings} |")
    return lines


def _param(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else f"`{value}`"


def figure_specs(plots: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(plot name, index, Vega-Lite spec) for each figure in ``dvc plots diff --json`` output.

    The uncommitted revision is relabelled from DVC's "workspace" to "candidate", so the
    figure's legend reads as a comparison of the candidate with the baseline. A plot folder that
    holds only a placeholder (see ``conveyor.io.PLOT_PLACEHOLDER``) has no figure.
    """
    for name, renders in plots.get("data", {}).items():
        for index, render in enumerate(r for r in renders if r.get("type") == "vega"):
            yield name, index, _relabel(render["content"])


Points = list[dict[str, Any]]


def points_by_revision(spec: Mapping[str, Any]) -> dict[str, Points]:
    """Each revision's points in a figure (as DVC read them from its plot file), in DVC's order.

    The one place that reads plot data: the native figures are drawn from what this returns,
    whatever shape evaluate gives its plot files.
    """
    found: dict[str, Points] = {}
    for point in spec.get("data", {}).get("values", []):
        found.setdefault(str(point.get("rev", CANDIDATE)), []).append({k: v for k, v in point.items() if k != "rev"})
    return found


def declared_plots(root: Path) -> dict[str, dict[str, Any]]:
    """The ``plots`` section of ``root/dvc.yaml``: each plot path (file or folder) and its properties."""
    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    entries = (yaml.safe_load(text) or {}).get("plots", [])
    return {path: dict(props or {}) for entry in entries if isinstance(entry, dict) for path, props in entry.items()}


def _definition(name: str, declared: Mapping[str, Mapping[str, Any]], spec: Mapping[str, Any]) -> dict[str, Any]:
    for path, props in declared.items():
        if name == path or name.startswith(f"{path.rstrip('/')}/"):
            return dict(props)
    # Not declared in dvc.yaml (a plot DVC found another way): the axes its spec draws.
    encoding = spec.get("encoding", {})
    return {"x": encoding.get("x", {}).get("field", "x"), "y": encoding.get("y", {}).get("field", "y")}


def figure_title(name: str, spec: Mapping[str, Any]) -> str:
    """The figure's title from dvc.yaml; a per-class plot's title names its class ("ROC, Adelie against the rest")."""
    title = spec.get("title", {})
    label = str(title.get("text", name) if isinstance(title, dict) else title)
    path = Path(name)
    if path.parent.name not in PER_CLASS:
        return label
    return label.replace("one class", path.stem, 1) if "one class" in label else f"{label}: {path.stem}"


def render_plots(
    plots: Mapping[str, Any],
    directory: Path,
    *,
    link_base: str,
    declared: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str | None = None,
) -> list[Figure]:
    """Render each of :func:`figure_specs` to a PNG in ``directory`` and as :func:`native_figure`.

    ``baseline`` is the baseline's revision as DVC names it. When the candidate's points are the
    baseline's, each figure draws them once and says so, rather than one line hidden under the other.
    """
    import vl_convert as vlc

    directory.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, index, found in figure_specs(plots):
        stem = _slug(Path(name).with_suffix("").as_posix()) + (f"-{index}" if index else "")
        title = figure_title(name, found)
        series = points_by_revision(found)
        identical = baseline is not None and baseline in series and series.get(CANDIDATE) == series[baseline]
        spec = _candidate_only(found) if identical else found
        spec["title"] = {**spec["title"], "text": title} if isinstance(spec.get("title"), dict) else title
        (directory / f"{stem}.png").write_bytes(vlc.vegalite_to_png(spec, scale=1.0))
        if identical:
            series = {CANDIDATE: series[CANDIDATE]}
        props = _definition(name, declared or {}, spec)
        native = native_figure(title, series, props, baseline=baseline, identical=identical)
        figures.append(Figure(title, f"{link_base}/{stem}.png", native, identical))
    return figures


def _relabel(value: Any) -> Any:
    if value == "workspace":
        return CANDIDATE
    if isinstance(value, Mapping):
        return {k: _relabel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relabel(v) for v in value]
    return value


def _candidate_only(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the candidate's points alone, and its colour scales naming only the candidate."""
    values = [p for p in spec["data"]["values"] if p.get("rev") == CANDIDATE]

    def prune(value: Any) -> Any:
        if isinstance(value, Mapping):
            pruned = {k: prune(v) for k, v in value.items()}
            domain = pruned.get("domain")
            if isinstance(domain, list) and CANDIDATE in domain:
                keep = domain.index(CANDIDATE)
                pruned["domain"] = [CANDIDATE]
                if isinstance(pruned.get("range"), list) and len(pruned["range"]) == len(domain):
                    pruned["range"] = [pruned["range"][keep]]
            return pruned
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    return {**prune({k: v for k, v in spec.items() if k != "data"}), "data": {**spec["data"], "values": values}}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.removeprefix("reports/plots/")).strip("-")


def native_figure(
    title: str, series: Mapping[str, Points], props: Mapping[str, Any], *, baseline: str | None, identical: bool = False
) -> list[str]:
    """The figure as Markdown that GitHub draws itself: a heading, the chart, and how to read it.

    A confusion matrix is a table (counts per cell); every other plot is a Mermaid ``xychart-beta``
    chart, rendered by GitHub in the page (nothing leaves GitHub; it works in a private repository).
    Mermaid's charts have no legend, so the candidate is always the line and the baseline the bars.
    ``props`` is the plot's entry in dvc.yaml (template, x, y, axis labels).
    """
    candidate = series.get(CANDIDATE)
    other = series.get(baseline) if baseline else None
    template, x, y = props.get("template"), str(props.get("x", "x")), str(props.get("y", "y"))
    if template == "confusion_counts":
        body = confusion_table(candidate or [], other, x, y)
        reading = f"Test rows per cell: candidate (`{baseline}` in brackets)." if other else "Test rows per cell."
    else:
        if template == "unit_curve":
            body, how = curve_chart(title, candidate, other, x=x, y=y, props=props)
        elif template == "bar_horizontal":
            body, how = bar_chart(title, candidate, other, value=x, category=y)
        else:
            body, how = binned_chart(title, candidate, other, x, y)
        drawn = "; ".join([*(["line: candidate"] if candidate else []), *([f"bars: `{baseline}`"] if other else [])])
        reading = f"{drawn[:1].upper()}{drawn[1:]}. {how}"
    if identical:
        reading += f" The candidate's plot is the same as `{baseline}`'s: drawn once."
    elif baseline and candidate is None:
        reading += " The candidate has no such plot."
    elif baseline and other is None:
        reading += f" `{baseline}` has no such plot."
    return [f"### {title}", "", *body, "", reading.strip()]


def confusion_table(candidate: Points, baseline: Points | None, x: str, y: str) -> list[str]:
    """A Markdown confusion matrix: a row per actual class (``x``), a column per prediction (``y``).

    Each cell holds the candidate's count, and the baseline's in brackets when there is one.
    """
    mine, theirs = _cells(candidate, x, y), _cells(baseline or [], x, y)
    labels = sorted({label for pair in [*mine, *theirs] for label in pair})

    def cell(pair: tuple[str, str]) -> str:
        parts = [str(mine.get(pair, 0))] if candidate else []
        parts += [f"({theirs.get(pair, 0)})"] if baseline is not None else []
        return " ".join(parts)

    lines = [f"| {_cell(x)} \\ {_cell(y)} | {' | '.join(_cell(label) for label in labels)} |"]
    lines.append("|---" * (len(labels) + 1) + "|")
    lines += [f"| **{_cell(a)}** | {' | '.join(cell((a, p)) for p in labels)} |" for a in labels]
    return lines


def _cells(points: Points, x: str, y: str) -> dict[tuple[str, str], int]:
    # One point per test row (dvclive's format); a point carrying a `count` stands for that many.
    cells: dict[tuple[str, str], int] = {}
    for point in points:
        pair = (str(point[x]), str(point[y]))
        cells[pair] = cells.get(pair, 0) + int(point.get("count", 1))
    return cells


def curve_chart(
    title: str, candidate: Points | None, baseline: Points | None, *, x: str, y: str, props: Mapping[str, Any]
) -> tuple[list[str], str]:
    """A curve on the unit square, drawn through :data:`GRID` evenly spaced x values (:func:`resample`)."""
    grid = [i / (GRID - 1) for i in range(GRID)]
    lines = [
        (kind, resample(points, x, y, grid)) for kind, points in (("bar", baseline), ("line", candidate)) if points
    ]
    x_label, y_label = str(props.get("x_label", x)), str(props.get("y_label", y))
    chart = _xychart(title, f'"{_label(x_label)}" 0 --> 1', f'"{_label(y_label)}" 0 --> 1', lines)
    how = (
        f"Each curve is drawn through {GRID} evenly spaced values of {x_label.lower()}: at each, the highest "
        "point of the measured curve there (beyond its ends, the nearest end's value)."
    )
    return chart, how


def resample(points: Points, x: str, y: str, grid: Sequence[float]) -> list[float]:
    """The curve through ``points`` (in their order) at each of ``grid``: its highest y at that x.

    Between two points the curve is the straight segment joining them (as the PNG draws it); a
    vertical step counts with its top. Beyond the measured x range, the nearest end's value.
    """
    xy = _pairs(points, x, y)
    if not xy:
        return [0.0 for _ in grid]
    values = []
    for g in grid:
        found = [
            max(y0, y1) if x0 == x1 else y0 + (y1 - y0) * (g - x0) / (x1 - x0)
            for (x0, y0), (x1, y1) in pairwise(xy)
            if min(x0, x1) <= g <= max(x0, x1)
        ]
        found += [py for px, py in xy if px == g]
        if not found:
            nearest = min(abs(px - g) for px, _ in xy)
            found = [py for px, py in xy if abs(px - g) == nearest]
        values.append(max(found))
    return values


def bar_chart(
    title: str, candidate: Points | None, baseline: Points | None, *, value: str, category: str
) -> tuple[list[str], str]:
    """A horizontal bar chart: ``value`` per ``category`` (permutation importance per feature)."""
    sides = [
        {str(p[category]): float(p[value]) for p in points if isinstance(p.get(value), int | float)} if points else None
        for points in (candidate, baseline)
    ]
    ranked = sorted(
        {c for side in sides if side for c in side}, key=lambda c: [-(side or {}).get(c, 0.0) for side in sides]
    )
    lines = [
        (kind, [side.get(c, 0.0) for c in ranked])
        for kind, side in (("bar", sides[1]), ("line", sides[0]))
        if side is not None
    ]
    labels = ", ".join(f'"{_label(c)}"' for c in ranked)
    chart = _xychart(
        title, f'"{_label(category)}" [{labels}]', f'"{_label(value)}" {_range(lines)}', lines, horizontal=True
    )
    missing = any(side is not None and len(side) < len(ranked) for side in sides)
    how = f"{category.capitalize()}s in order of the candidate's {value}." + (
        " A missing one is drawn as 0." if missing else ""
    )
    return chart, how


def binned_chart(
    title: str, candidate: Points | None, baseline: Points | None, x: str, y: str
) -> tuple[list[str], str]:
    """A scatter plot as the mean ``y`` per value of ``x``, or per equal-count bin of ``x`` (a binned scatter plot)."""
    pairs = [(kind, _pairs(points or [], x, y)) for kind, points in (("bar", baseline), ("line", candidate))]
    sides = [(kind, xy) for kind, xy in pairs if xy]
    if not sides:
        return ["*No points to draw.*"], ""
    pooled = sorted(px for _, xy in sides for px, _ in xy)
    distinct = sorted(set(pooled))
    if len(distinct) <= MAX_CATEGORIES:
        bins = [(v, v) for v in distinct]
        how = f"Each point is the mean {y} at one {x}."
    else:
        cuts = [pooled[round(i * (len(pooled) - 1) / MAX_BINS)] for i in range(MAX_BINS + 1)]
        bins = list(pairwise(dict.fromkeys(cuts)))
        how = (
            f"A binned scatter plot of {len(pooled)} points: each is the mean {y} over one of {len(bins)} "
            f"bins of {x} holding about as many points each, labelled with its median {x}."
        )
    last = len(bins) - 1
    means: list[list[float]] = [[] for _ in sides]
    labels = []
    for index, (low, high) in enumerate(bins):
        inside = [
            [py for px, py in xy if low <= px < high or (px == high and (index == last or low == high))]
            for _, xy in sides
        ]
        if not all(inside):
            continue
        members = [px for px in pooled if low <= px < high or (px == high and (index == last or low == high))]
        labels.append(f'"{_label(f"{statistics.median(members):.4g}")}"')
        for side, values in zip(means, inside, strict=True):
            side.append(statistics.fmean(values))
    lines = [(kind, side) for (kind, _), side in zip(sides, means, strict=True)]
    chart = _xychart(title, f'"{_label(x)}" [{", ".join(labels)}]', f'"{_label(y)}" {_range(lines)}', lines)
    return chart, how


def _pairs(points: Points, x: str, y: str) -> list[tuple[float, float]]:
    # A point without a finite number on either axis cannot be drawn (DVC's JSON has no Infinity:
    # ``io.parse_json`` reads it as None).
    pairs = []
    for point in points:
        try:
            pair = (float(point[x]), float(point[y]))
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(v) for v in pair):
            pairs.append(pair)
    return pairs


def _xychart(
    title: str, x_axis: str, y_axis: str, lines: Sequence[tuple[str, Sequence[float]]], *, horizontal: bool = False
) -> list[str]:
    chart = ["```mermaid", "xychart-beta horizontal" if horizontal else "xychart-beta", f'    title "{_label(title)}"']
    chart += [f"    x-axis {x_axis}", f"    y-axis {y_axis}"]
    chart += [f"    {kind} [{', '.join(_plain(v) for v in values)}]" for kind, values in lines]
    return [*chart, "```"]


def _range(lines: Sequence[tuple[str, Sequence[float]]]) -> str:
    values = [v for _, side in lines for v in side] or [0.0]
    low, high = min(0.0, *values), max(0.0, *values)
    pad = (high - low) * 0.05 or 1.0
    return f"{_plain(low - pad if low < 0 else low)} --> {_plain(high + pad)}"


def _plain(value: float) -> str:
    # Mermaid's numbers have no exponent; never "-0.0000".
    shown = f"{value:.{DECIMALS}f}"
    return shown.lstrip("-") if float(shown) == 0 else shown


def plots_section(figures: Sequence[Figure], baseline: Baseline) -> list[str]:
    """Each figure as a heading, its native chart or table, and its PNG (kept in the report's folder)."""
    if not figures:
        return ["## Plots", "", "No plots were found."]
    if not baseline.rev:
        lead = "Each figure shows the candidate only."
    elif all(figure.same_as_baseline for figure in figures):
        lead = f"The candidate's plots are the same as `{baseline.requested}`'s: each figure shows them once."
    else:
        lead = f"Each figure shows the candidate and `{baseline.requested}` together."
    lines = ["## Plots", "", lead]
    for figure in figures:
        lines += ["", *figure.native, "", f"![{figure.title}]({figure.link})"]
    return lines


def _label(text: str) -> str:
    # A Mermaid string cannot hold a double quote.
    return text.replace('"', "'")


def _card(path: Path | None) -> ModelCard | None:
    if path is None or not path.exists():
        return None
    try:
        return io.read_artifact(path, ModelCard)
    except ArtifactError:
        return None  # a card from before today's format: the report goes on without the section


def build(
    *,
    gate: GateVerdict | None,
    champion: Champion | None,
    validation: ValidationReport | None,
    stale: Sequence[str],
    baseline: Baseline,
    metrics: MetricsDiff,
    params: MetricsDiff,
    notes: Sequence[str],
    figures: Sequence[Figure],
    tuning: Sequence[str] = (),
    candidate_is_baseline: bool = False,
    features: Sequence[str] = (),
) -> str:
    """The report's Markdown, verdict first; pure.

    ``metrics`` and ``params`` are DVC's diffs against the baseline (:func:`metrics_section`,
    :func:`params_section`); ``tuning`` and ``features`` are :func:`tuning_section`'s and
    :func:`features_section`'s lines. ``candidate_is_baseline``: the checkout is the baseline's
    commit, unchanged.
    """
    against = f"`{baseline.requested}` (`{baseline.commit[:12]}`)" if baseline.commit else f"`{baseline.requested}`"
    lines = ["# Model report", ""]
    if baseline.problem:
        lines += [f"> ⚠️ No comparison with the baseline: {baseline.problem}", ""]
    if candidate_is_baseline:
        notes = [
            f"The candidate is {against} itself: every comparison below is with itself, and each figure shows it once.",
            *notes,
        ]
    lines += [f"> ⚠️ {note}" for note in notes]
    if notes:
        lines.append("")
    lines += [*verdict_section(gate, champion, stale), ""]
    if tuning:
        lines += [*tuning, ""]
    if features:
        lines += [*features, ""]
    gated = [check.metric for check in gate.checks] if gate else []
    if baseline.rev:
        lines += metrics_section(f"Metrics against {against}", metrics, baseline=baseline.requested, gated=gated)
        lines += ["", *params_section(f"Params against {against}", params, baseline=baseline.requested)]
    else:
        lines += metrics_section("Metrics", metrics, baseline=None, gated=gated)
    lines += ["", *validation_section(validation), "", *plots_section(figures, baseline)]
    return "\n".join(lines) + "\n"


def is_checkout_of(baseline: Baseline, *, root: Path) -> bool:
    """Whether the checkout is the baseline's commit with no tracked file changed: the candidate is the baseline."""
    if baseline.commit is None or git(root, "rev-parse", "HEAD") != baseline.commit:
        return False
    return git(root, "status", "--porcelain", "--untracked-files=no") == ""


def run(
    *,
    out: Path,
    gate: Path,
    champion: Path,
    validation: Path,
    baseline: str,
    root: Path,
    tuning: Path | None = None,
    metadata: Path | None = None,
) -> Report:
    """Ask DVC and git for the comparison, render the plots, write ``out`` and its images.

    ``tuning`` is the tune stage's report; when given, the report gains a tuning section.
    ``metadata`` is ``models/model.json``; where it lists derived features, a features section.
    """
    resolved = resolve_baseline(baseline, root=root)
    stale = stale_stages(io.parse_json(dvc(root, "status", GATE_STAGE, "--with-deps", "--json")[0] or "{}"))
    notes = []
    metrics: MetricsDiff
    params: MetricsDiff = {}
    if resolved.rev:
        shown, errors = dvc(root, "metrics", "diff", resolved.rev, "--all", "--json")
        metrics = io.parse_json(shown or "{}")
        if "failed to load some metrics" in errors and resolved.rev in errors.split("revisions:")[-1]:
            notes.append(f"`{baseline}` has no metrics yet: every metric below is new.")
        params = io.parse_json(dvc(root, "params", "diff", resolved.rev, "--json")[0] or "{}")
        plots = io.parse_json(dvc(root, "plots", "diff", resolved.rev, "--json")[0])
    else:
        metrics = shown_metrics(io.parse_json(dvc(root, "metrics", "show", "--json")[0] or "{}"))
        plots = io.parse_json(dvc(root, "plots", "show", "--json")[0])
    image_dir = out.parent / f"{out.stem}-images"
    figures = render_plots(
        plots, image_dir, link_base=image_dir.name, declared=declared_plots(root), baseline=resolved.rev
    )
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
        metrics=metrics,
        params=params,
        notes=notes,
        figures=figures,
        tuning=tuning_lines,
        candidate_is_baseline=is_checkout_of(resolved, root=root),
        features=features_section(_card(metadata)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown, encoding="utf-8")
    accepted = None if stale or verdict is None else verdict.accepted
    return Report(out, [image_dir / Path(f.link).name for f in figures], accepted)
