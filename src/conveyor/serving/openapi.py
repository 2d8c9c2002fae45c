"""The service's OpenAPI 3.1 document, built from the route table and the types that validate requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from conveyor.bundle import Bundle
from conveyor.serving.middleware import JSON_TYPE

if TYPE_CHECKING:
    from conveyor.serving.routes import RouteSpec

__all__ = ["openapi"]

REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Why a request was refused: a summary and each problem found (never the values sent)",
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["error", "detail"],
}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON_TYPE: {"schema": dict(schema)}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def openapi(bundle: Bundle, request_body: TypeAdapter[Any], routes: Iterable[RouteSpec]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service for ``bundle``: what it accepts, answers and refuses.

    Each of ``routes`` (the service's rows of :data:`conveyor.serving.routes.ROUTES`) with a summary
    is a path. The request schema is the JSON schema of ``request_body``, the type that validates
    the body, so anything it allows is accepted and anything it forbids (a missing or unknown key,
    a value out of range) is refused; every status the server itself sends is listed with the body
    it carries.
    """
    request = request_body.json_schema(ref_template=REF)
    schemas: dict[str, Any] = request.pop("$defs", {})
    schemas |= {"PredictRequest": request, "Error": ERROR_SCHEMA}
    error = {"$ref": REF.format(model="Error")}
    refusals = {
        "400": _json(error, "The body is not JSON, or not what the schema allows"),
        "413": _json(error, f"The body is larger than {bundle.serve.max_body_bytes} bytes"),
        "415": _json(error, f"The content type is not {JSON_TYPE}"),
        "429": _json(error, f"More than {bundle.serve.max_concurrency} requests in progress; retry later"),
        "503": _json(error, "The model is still loading"),
        "504": _json(error, "Not answered in time (a body sent too slowly)"),
    }
    if bundle.info.online_features is not None:
        refusals |= {
            "404": _json(error, "An entity the online feature store has no features for (the error names its key)"),
            "502": _json(error, "The feature server answered features the data contract refuses"),
            "503": _json(error, "The model is still loading, or the feature server cannot be reached"),
        }
    limited = {"413": refusals["413"]}
    loading = limited | {status: refusals[status] for status in ("429", "503", "504")}
    if bundle.is_classifier:
        classes = list(bundle.info.classes or [])
        label = {"type": "boolean"} if bundle.bool_labels else {"type": "string", "enum": classes}
        labels: dict[str, Any] = {"type": "array", "items": label}
        probability = {"type": "number", "minimum": 0.0, "maximum": 1.0}
        schemas["Probabilities"] = {
            "type": "object",
            "properties": dict.fromkeys(classes, probability),
            "required": classes,
            "additionalProperties": False,
        }
    else:
        labels = {"type": "array", "items": {"type": "number"}}
    body = {"required": True, "content": {JSON_TYPE: {"schema": {"$ref": REF.format(model="PredictRequest")}}}}
    request_id = {
        "X-Request-ID": {
            "description": "This request's id: 16 hex digits, the request_id of its records in the prediction log",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        }
    }

    def prediction(summary: str, answer: Mapping[str, Any], operation: str) -> dict[str, Any]:
        return {
            "post": {
                "operationId": operation,
                "summary": summary,
                "requestBody": body,
                "responses": {"200": _json(answer, summary) | {"headers": request_id}, **refusals},
            }
        }

    def read(summary: str, answer: dict[str, Any], operation: str, refused: Mapping[str, Any]) -> dict[str, Any]:
        return {"operationId": operation, "summary": summary, "responses": {"200": answer, **refused}}

    metadata = _json({"type": "object"}, "The model's tag, provenance, metrics, limits and data contract")
    answers: dict[str, Any] = {"labels": labels}
    if bundle.is_classifier:
        answers["probabilities"] = {"type": "array", "items": {"$ref": REF.format(model="Probabilities")}}
    paths: dict[str, Any] = {}
    for route in routes:
        operation = route.path.strip("/")
        if not route.summary:
            continue
        if route.kind in answers:
            paths[route.path] = prediction(route.summary, answers[route.kind], operation)
        elif route.kind == "metadata":
            paths[route.path] = {
                "get": read(route.summary, metadata, operation, loading),
                "post": read(
                    f"{route.summary} (POST, as earlier versions answered)", metadata, f"{operation}_post", loading
                ),
            }
        else:
            paths[route.path] = {"get": read(route.summary, _text(route.summary), operation, limited)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "conveyor",
            "version": bundle.info.model_tag,
            "description": f"Predictions of {bundle.info.target} from the model that passed the gate",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
