"""The BentoML store (``$BENTOML_HOME``): entries registered whole, torn ones found and replaced.

BentoML saves a model or bento by creating its final folder and copying into it, so a kill
during ``package`` left a partial entry under the final tag that later runs took for a good one.
Here every entry is built in a staging folder under ``$BENTOML_HOME/tmp``, given a manifest
(:data:`MANIFEST`: the SHA-256 of every file in it, ``sha256sum -c`` format) and renamed into
place, which is atomic: an entry is in the store whole or not at all. An entry that is already
there is checked against its manifest first; one that fails (a file missing or changed, or no
manifest: made before this check, or torn) is replaced by a fresh one.

All of it runs under one lock per store (:data:`LOCK`), so the staging folders found while
holding it belong to runs that were killed, and are removed; so are BentoML's own
``bentoml_bento_*`` build folders once older than :data:`STALE_BUILD_S` (a ``bentoml build``
beside this one may still be using a younger one).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from conveyor.errors import ArtifactError

__all__ = [
    "LOCK",
    "MANIFEST",
    "STAGING_PREFIX",
    "STALE_BUILD_S",
    "Kind",
    "StoreError",
    "clean_stale",
    "entry_problem",
    "locked",
    "save_bento",
    "save_model",
    "write_manifest",
]

Kind = Literal["models", "bentos"]
MANIFEST = "conveyor-entry.sha256"
LOCK = "conveyor-store.lock"
STAGING_PREFIX = "conveyor-staging-"
BENTO_BUILD_PREFIX = "bentoml_bento_"
STALE_BUILD_S = 3600.0
LOCK_WAIT_S = 900.0
LOCK_POLL_S = 0.2


class StoreError(ArtifactError):
    """The BentoML store cannot be written or locked; the message names the path."""


def home() -> Path:
    """The store's root: ``$BENTOML_HOME``, else BentoML's default ``~/bentoml``."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()


def _entry(kind: Kind, tag: str) -> Path:
    name, version = tag.split(":", 1)
    return home() / kind / name / version


def _files(directory: Path) -> list[str]:
    """Every file under ``directory`` but the manifest, as sorted POSIX paths relative to it."""
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if (path.is_file() or path.is_symlink()) and path.name != MANIFEST
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Record the SHA-256 of every file in the entry ``directory`` in its :data:`MANIFEST`."""
    lines = "".join(f"{_digest(directory / name)}  {name}\n" for name in _files(directory))
    (directory / MANIFEST).write_text(lines, encoding="utf-8")


def entry_problem(kind: Kind, tag: str) -> str | None:
    """What is wrong with the store's entry for ``tag`` (``missing``, or the first torn file); None if whole.

    Every file the manifest lists must be there with its hash. Files it does not list are let be:
    serving a bento from the store writes ``__pycache__`` folders into it.
    """
    directory = _entry(kind, tag)
    if not directory.is_dir():
        return "missing"
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return f"{manifest}: missing (the entry was not saved whole)"
    listed: dict[str, str] = {}
    for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        expected, separator, name = line.partition("  ")
        if not separator or name in listed:
            return f"{manifest}: not a manifest (line {line[:60]!r})"
        listed[name] = expected
    for name, expected in listed.items():
        path = directory / name
        if not path.is_file():
            return f"{path}: missing"
        if _digest(path) != expected:
            return f"{path}: its SHA-256 differs from the one recorded when it was saved"
    return None if listed else f"{manifest}: lists no file"


@contextmanager
def locked(wait_s: float = LOCK_WAIT_S) -> Iterator[Path]:
    """Hold the store's lock; yields a fresh staging folder, after removing what killed runs left.

    Raises :class:`StoreError` naming the lock file if another run holds it for over ``wait_s``.
    """
    tmp = home() / "tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        handle = (tmp / LOCK).open("a")
    except OSError as error:
        raise StoreError(f"{tmp}: cannot write the BentoML store's temporary folder ({error.strerror})") from None
    with handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"{tmp / LOCK}: another package run has held it for over {wait_s:.0f} s") from None
                time.sleep(LOCK_POLL_S)
        try:
            clean_stale(tmp)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=tmp))
            try:
                with _temporaries_in(staging):
                    yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_stale(tmp: Path, *, now: float | None = None) -> list[Path]:
    """Remove the staging folders of killed runs and old ``bentoml_bento_*`` folders from ``tmp``; returns them.

    Only called with the store's lock held, so no staging folder found belongs to a live run.
    """
    now = time.time() if now is None else now
    removed = []
    for path in sorted(tmp.glob(f"{STAGING_PREFIX}*")) + sorted(tmp.glob(f"{BENTO_BUILD_PREFIX}*")):
        if path.name.startswith(BENTO_BUILD_PREFIX) and now - path.lstat().st_mtime < STALE_BUILD_S:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def _temporaries_in(staging: Path) -> Iterator[None]:
    """BentoML's scratch folders (a model's ``tempfile.mkdtemp``, a bento's build folder) inside ``staging``,
    so a killed run leaves them where the next one removes them."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    scratch = staging / "scratch"
    scratch.mkdir()
    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        with BentoMLContainer.tmp_bento_store_dir.patch(str(scratch)):
            yield
    finally:
        tempfile.tempdir = previous


def _install(kind: Kind, tag: str, built: Path, staging: Path) -> None:
    """Move the staged entry ``built`` to its place in the store, a bad entry already there aside."""
    final = _entry(kind, tag)
    write_manifest(built)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Aside into the staging folder, removed with it: the swap leaves no moment with a torn entry.
            final.rename(staging / f"replaced-{final.name}")
        built.rename(final)
        latest = final.parent / "latest"
        (staging / "latest").write_text(final.name, encoding="utf-8")
        (staging / "latest").replace(latest)
    except OSError as error:
        raise StoreError(f"{final}: cannot move the saved {kind[:-1]} into the store ({error.strerror})") from None


def save_model(
    tag: str, *, write: Callable[[Path], None], labels: dict[str, str], metadata: dict[str, Any], staging: Path
) -> bool:
    """Save the model ``tag`` (``write`` fills its folder) unless a whole entry is there; True if saved.

    ``staging`` is :func:`locked`'s folder. A torn entry is replaced.
    """
    if entry_problem("models", tag) is None:
        return False
    import bentoml
    from bentoml._internal.models import ModelStore

    with bentoml.models.create(
        tag, labels=labels, metadata=metadata, _model_store=ModelStore(str(staging / "models"))
    ) as saved:
        write(Path(saved.path))
    name, version = tag.split(":", 1)
    _install("models", tag, staging / "models" / name / version, staging)
    return True


def save_bento(tag: str, *, build: Callable[[Any], object], staging: Path) -> bool:
    """Build the bento ``tag`` (``build`` takes the BentoStore to save into) unless a whole entry is there; True if built.

    ``staging`` is :func:`locked`'s folder. A torn entry is replaced.
    """
    if entry_problem("bentos", tag) is None:
        return False
    from bentoml._internal.bento import BentoStore

    build(BentoStore(str(staging / "bentos")))
    name, version = tag.split(":", 1)
    _install("bentos", tag, staging / "bentos" / name / version, staging)
    return True
