"""Operations around the pipeline: retargeting (init), the PR report, the reproducibility check, deployment manifests and monitor alerts."""

__all__ = ["alerts", "bakeoff", "deploy", "init", "report", "repro"]
