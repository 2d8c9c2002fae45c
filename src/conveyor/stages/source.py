"""source: fingerprint ``data.source`` so that DVC reruns ingest exactly when the source changed.

DVC hashes every dependency of a stage before running it, so ``data.source`` is no dependency of
any stage: a FIFO or ``/dev/zero`` there would block DVC forever, and a URL would put whatever it
carries into ``dvc.lock``. This stage runs on every ``dvc repro`` (``always_changed``), refuses
anything that is not a regular file or a URL, and writes what identifies the source's content;
ingest depends on that file, which changes only when the source does.
"""

from __future__ import annotations

from pathlib import Path

from conveyor import io
from conveyor.artifacts import SourceFingerprint
from conveyor.config import Config, DataConfig
from conveyor.urls import redact_url

__all__ = ["fingerprint", "run"]


def fingerprint(cfg: DataConfig, *, url: str) -> SourceFingerprint:
    """What identifies the current content of ``cfg.source``; ``url`` is the one to open (credentials included)."""
    shown = redact_url(cfg.source)
    if cfg.is_sql:
        return SourceFingerprint(kind="sql", source=shown)
    local = io.local_path(cfg.source)
    if local is not None:
        size, sha256 = io.file_digest(local)
        return SourceFingerprint(kind="file", source=shown, size=size, sha256=sha256)
    return SourceFingerprint(kind="url", source=shown, version=io.url_version(url, shown=shown))


def run(cfg: Config, *, out: Path) -> SourceFingerprint:
    """Fingerprint the source and write it to ``out`` (unchanged bytes when the source is unchanged)."""
    found = fingerprint(cfg.data, url=cfg.data.url())
    io.write_artifact(found, out)
    return found
