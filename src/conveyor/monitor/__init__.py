"""Monitoring: the windows of served records, the checks (one function each), drift, the outputs and the command."""

__all__ = ["checks", "drift", "render", "run", "windows"]
