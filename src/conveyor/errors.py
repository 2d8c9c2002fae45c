"""Conveyor's expected failures: one family, so the CLI can tell a user's mistake from a bug.

Every expected failure (a params file, contract or data that cannot be used, a model the gate
refused, a missing or corrupt artifact) is a :class:`ConveyorError` whose message is one line a
person can act on: the file, key, column or field, what was found and what to do. The CLI prints
exactly these as ``conveyor <command>: error: …``; anything else, a ``ValueError`` from inside
pandas or scikit-learn included, is a bug and keeps its traceback.
"""

from __future__ import annotations


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
