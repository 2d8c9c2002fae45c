"""Conveyor: raw tabular data to an accepted, deployable model."""

__all__ = [
    "artifacts",
    "bundle",
    "cli",
    "config",
    "contract",
    "engine",
    "errors",
    "feature_store",
    "io",
    "model",
    "monitor",
    "ops",
    "provenance",
    "serving",
    "stages",
    "store",
    "urls",
]
