"""The service: the engine, request types, connection limits, middleware, the route table, OpenAPI, metrics, the prediction log, online features from a feature store, the docs page and the BentoML wiring.

Everything but :mod:`conveyor.serving.service` runs without BentoML, in process, in tests.
"""

__all__ = [
    "connection",
    "docs",
    "engine",
    "metrics",
    "middleware",
    "online_features",
    "openapi",
    "prediction_log",
    "request",
    "routes",
    "service",
]
