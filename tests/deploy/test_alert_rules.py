"""deploy/'s Prometheus resources: the rules are valid (`promtool check rules`), each alert fires on
synthetic series of the metric it watches and stays quiet on healthy ones (`promtool test rules`),
and the ServiceMonitor scrapes the Service the overlays render. promtool is Debian's `prometheus`
package (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run
from test_deploy import OVERLAYS, render

RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"
NAMESPACE = "conveyor-prod"
# Series in the namespace the ServiceMonitor's targets get.
NAMESPACED = f'namespace="{NAMESPACE}"'
PREDICT = f'{NAMESPACED},endpoint="/predict"'
PREDICTION_LOG = "conveyor_prediction_log_records_total"
WEEK_IN_STEPS = 7 * 24 * 3


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: `make setup` installs Debian's prometheus package with apt-get as root or "
            "with sudo; elsewhere install Prometheus's promtool"
        )
    return found


def rule_groups(*, annotations: bool) -> dict[str, Any]:
    """The PrometheusRule's spec as a plain Prometheus rules file."""
    spec = yaml.safe_load(RULE.read_text())["spec"]
    if not annotations:
        # promtool compares rendered annotations verbatim; the firing logic is what these tests are about.
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return dict(spec)


def alert(name: str, eval_time: str, *firing: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": [{"exp_labels": labels} for labels in firing]}


def mix(first: int, then: int) -> str:
    """A prediction counter: ``first`` per 20 minutes for a week, then ``then`` per 20 minutes for 3 hours."""
    week_total = first * WEEK_IN_STEPS
    return f"0+{first}x{WEEK_IN_STEPS} {week_total + then}+{then}x8"


# Request-level alerts, evaluated every minute as Prometheus would.
SERVICE_TESTS: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [
            {"series": f'conveyor_request_total{{{PREDICT},http_response_code="200"}}', "values": "0+100x40"},
            {"series": f'conveyor_request_total{{{PREDICT},http_response_code="500"}}', "values": "0+5x40"},
            {"series": f'conveyor_request_total{{{PREDICT},http_response_code="400"}}', "values": "0+1x40"},
            {"series": f'conveyor_refused_requests_total{{{PREDICT},field="island"}}', "values": "0+10x40"},
            {"series": f'{PREDICTION_LOG}{{{NAMESPACED},outcome="exported"}}', "values": "0+90x40"},
            {"series": f'{PREDICTION_LOG}{{{NAMESPACED},outcome="failed"}}', "values": "0+10x40"},
            *(
                {
                    "series": f'conveyor_request_duration_seconds_bucket{{{PREDICT},http_response_code="200",le="{le}"}}',
                    "values": values,
                }
                for le, values in (("0.5", "0+10x40"), ("1", "0+20x40"), ("2.5", "0+106x40"), ("+Inf", "0+106x40"))
            ),
        ],
        "alert_rule_test": [
            alert("ConveyorHighErrorRate", "8m"),  # not yet for 10 minutes
            alert("ConveyorHighErrorRate", "20m", {"severity": "critical", "namespace": NAMESPACE}),
            alert("ConveyorHighLatency", "20m", {"severity": "warning", "namespace": NAMESPACE}),
            alert("ConveyorHighRefusalRate", "35m", {"severity": "warning", "namespace": NAMESPACE}),
            alert("ConveyorPredictionLogLoss", "12m"),  # not yet for 15 minutes
            alert("ConveyorPredictionLogLoss", "35m", {"severity": "warning", "namespace": NAMESPACE}),
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": f'conveyor_request_total{{{PREDICT},http_response_code="200"}}', "values": "0+100x40"},
            {"series": f'conveyor_refused_requests_total{{{PREDICT},field="island"}}', "values": "0+1x40"},
            {"series": f'{PREDICTION_LOG}{{{NAMESPACED},outcome="exported"}}', "values": "0+99x40"},
            {"series": f'{PREDICTION_LOG}{{{NAMESPACED},outcome="dropped"}}', "values": "0+1x40"},
            *(
                {
                    "series": f'conveyor_request_duration_seconds_bucket{{{PREDICT},http_response_code="200",le="{le}"}}',
                    "values": values,
                }
                for le, values in (("0.5", "0+99x40"), ("1", "0+100x40"), ("2.5", "0+100x40"), ("+Inf", "0+100x40"))
            ),
        ],
        "alert_rule_test": [
            alert("ConveyorHighErrorRate", "35m"),
            alert("ConveyorHighLatency", "35m"),
            alert("ConveyorHighRefusalRate", "35m"),
            alert("ConveyorPredictionLogLoss", "35m"),
        ],
    },
]
# The weekly prediction mix, evaluated every 20 minutes: a week of one-minute evaluations takes promtool ~15 s.
MIX_TESTS: list[dict[str, Any]] = [
    {
        "interval": "20m",
        "input_series": [
            {"series": f'conveyor_predictions_total{{{PREDICT},prediction="Adelie"}}', "values": mix(50, 90)},
            {"series": f'conveyor_predictions_total{{{PREDICT},prediction="Gentoo"}}', "values": mix(50, 10)},
            {
                "series": 'conveyor_predictions_total{namespace="conveyor-staging",endpoint="/predict",prediction="Adelie"}',
                "values": mix(50, 50),
            },
            {
                "series": 'conveyor_predictions_total{namespace="conveyor-staging",endpoint="/predict",prediction="Gentoo"}',
                "values": mix(50, 50),
            },
        ],
        "alert_rule_test": [
            alert("ConveyorPredictionMixShift", "7d"),
            alert(
                "ConveyorPredictionMixShift",
                "7d3h",
                {"severity": "warning", "namespace": NAMESPACE, "prediction": "Adelie"},
                {"severity": "warning", "namespace": NAMESPACE, "prediction": "Gentoo"},
            ),
        ],
    },
]


def test_the_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(annotations=True)))
    result = run(tmp_path, promtool(), "check", "rules", rules)
    assert "SUCCESS: 7 rules found" in result.stdout


@pytest.mark.parametrize(("evaluation_interval", "tests"), [("1m", SERVICE_TESTS), ("20m", MIX_TESTS)])
def test_each_alert_fires_on_its_metric_and_not_on_healthy_series(
    tmp_path: Path, evaluation_interval: str, tests: list[dict[str, Any]]
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(annotations=False)))
    unit_tests = {"rule_files": ["rules.yaml"], "evaluation_interval": evaluation_interval, "tests": tests}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests))
    result = run(tmp_path, promtool(), "test", "rules", "tests.yaml", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_rule_reads_recorded_series_from_earlier_in_its_own_group() -> None:
    """Groups evaluate independently (promtool even picks their order at random), so a rule that read
    a series recorded in another group could see it one interval late or not at all."""
    for group in rule_groups(annotations=False)["groups"]:
        recorded_before: set[str] = set()
        for rule in group["rules"]:
            # Recording rule names hold colons; raw metric names by convention do not.
            read = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_:]+", rule["expr"]))
            assert read <= recorded_before, (group["name"], rule.get("alert") or rule.get("record"), read)
            if "record" in rule:
                recorded_before.add(rule["record"])


def test_every_alert_has_a_firing_test() -> None:
    groups = rule_groups(annotations=False)["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    cases = [case for test in SERVICE_TESTS + MIX_TESTS for case in test["alert_rule_test"]]
    assert {case["alertname"] for case in cases if case["exp_alerts"]} == alerts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_monitor_scrapes_the_rendered_service(overlay: str) -> None:
    docs = {doc["kind"]: doc for doc in render(ROOT / "deploy" / "overlays" / overlay)}
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    assert (
        monitor["metadata"]["namespace"]
        == service["metadata"]["namespace"]
        == docs["PrometheusRule"]["metadata"]["namespace"]
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
