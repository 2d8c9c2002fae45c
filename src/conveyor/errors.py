"""Conveyor's expected failures and their wording for people: one family, so the CLI can tell a user's mistake from a bug.

Every expected failure (a params file, contract or data that cannot be used, a model the gate
refused, a missing or corrupt artifact) is a :class:`ConveyorError` whose message is one line a
person can act on: the file, key, column or field, what was found and what to do. The CLI prints
exactly these as ``conveyor <command>: error: …``; anything else, a ``ValueError`` from inside
pandas or scikit-learn included, is a bug and keeps its traceback.

:func:`describe_errors` and :func:`yaml_problem` word pydantic's and YAML's errors that way, so
``params.yaml``, the data contract and every artifact report a mistake alike.
"""

from __future__ import annotations

import re
from typing import get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "ArtifactError",
    "ClusterError",
    "ConfigError",
    "ContractError",
    "ConveyorError",
    "DataError",
    "MonitorError",
    "describe_errors",
    "yaml_problem",
]


class ConveyorError(Exception):
    """An expected failure; its message names what is wrong and where."""


class ConfigError(ConveyorError):
    """A params file that cannot be used; the message names the key and what was expected."""


class ContractError(ConveyorError):
    """A data contract that cannot be used; the message names the file and the key."""


class DataError(ConveyorError):
    """Data that cannot be read or does not fit the model; the message says where and why."""


class ArtifactError(ConveyorError):
    """A file one stage wrote for another is missing, unreadable or corrupt; the message names it."""


class MonitorError(ConveyorError):
    """A window, reference or label file that cannot be monitored; the message names it."""


class ClusterError(ConveyorError):
    """The scheduler named by ``dask.address`` cannot be reached."""


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, with where it is: ``not valid YAML at line 3, column 2: …``."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"not valid YAML{where}: {problem}"


def describe_errors(exc: ValidationError, *, source: str, root: type[BaseModel]) -> str:
    """A pydantic error as text for people: ``source: dotted.key: problem, got value``, one line per error.

    ``root`` is the model that was validated; unknown keys are answered with the keys it accepts there.
    Shared by ``params.yaml`` and the data contract, so both files report mistakes the same way.
    """
    lines = [_explain(error, root) for error in exc.errors()]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return "\n  ".join([f"{source}: {len(lines)} invalid settings:", *lines])


def _explain(error: ErrorDetails, root: type[BaseModel]) -> str:
    """One error as ``dotted.key: what was wrong, what was expected``."""
    loc = error["loc"]
    key = ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "value_error":
        # Cross-field validators write "dotted.key: message" themselves, naming the key they mean.
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        return message if _KEY_PREFIX.match(message) else f"{key or '(top level)'}: {message}"
    if kind == "extra_forbidden":
        known = _known_keys(root, loc[:-1])
        return f"{key}: unknown key; expected one of {known}" if known else f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        message = "expected a mapping of keys"
    elif kind == "tuple_type":
        message = "expected a list"
    else:
        message = error["msg"].replace("Input should be", "expected")
    return f"{key or '(top level)'}: {message}, got {error.get('input')!r}"


_KEY_PREFIX = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*: ")


def _known_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts, for an "unknown key" message."""
    model = root
    parts = list(loc)
    while parts:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == parts[0]), None)
        if field is None:
            return []
        annotation, parts = field.annotation, parts[1:]
        if get_origin(annotation) is dict and parts:
            annotation, parts = get_args(annotation)[1], parts[1:]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(f.alias or n for n, f in model.model_fields.items())
