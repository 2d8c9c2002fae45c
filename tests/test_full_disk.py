"""A full or read-only disk under any stage: one line naming the path, and every accepted output kept.

The outputs' folders (``data``, ``models``, ``reports``) of a reproduced copy become tiny tmpfs
mounts holding the same files, then full (a filler file takes the rest) or read-only. Each stage
is forced to run under ``dvc repro``, which used to delete the outputs first: ``models/model.json``
and the reports, which DVC does not cache, were gone until rebuilt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import clone_of, run

MOUNTED = ("data", "models", "reports")


def _mount(folder: Path, *options: str) -> None:
    # options may end with the device ("tmpfs"); the mount point comes last.
    subprocess.run(["mount", *options, folder], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def mounted_repo(reproduced_repo: Path, tmp_path: Path) -> Iterator[Path]:
    """A reproduced copy whose output folders are tmpfs mounts with the same files; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    mounts: list[Path] = []
    try:
        for name in MOUNTED:
            folder = repo / name
            aside = tmp_path / f"aside-{name}"
            shutil.move(folder, aside)
            folder.mkdir()
            used = sum(path.stat().st_size for path in aside.rglob("*") if path.is_file())
            try:
                _mount(folder, "-t", "tmpfs", "-o", f"size={used // 1024 + 2048}k", "tmpfs")
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot mount a tmpfs here: {exc.stderr.strip()}")
            mounts.append(folder)
            shutil.copytree(aside, folder, dirs_exist_ok=True, symlinks=True)
        yield repo
    finally:
        for folder in reversed(mounts):
            subprocess.run(["umount", folder], check=False, capture_output=True, timeout=30)


def _write_until_full(path: Path, size: int) -> None:
    # At most 65,536 writes: 4 GiB at the largest size, far beyond any tmpfs here.
    with path.open("ab", buffering=0) as filler:
        for _ in range(1 << 16):
            filler.write(b"\0" * size)


def fill(folder: Path) -> None:
    """Write a filler file into ``folder`` until its file system has no space left, to the last byte."""
    for size in (65536, 4096, 512, 1):
        with pytest.raises(OSError, match="No space left"):
            _write_until_full(folder / ".filler", size)


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file in the mounted folders but the filler: what was accepted before the run."""
    return {
        str(path.relative_to(repo)): path.read_bytes()
        for name in MOUNTED
        for path in sorted((repo / name).rglob("*"))
        if path.is_file() and path.name != ".filler"
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "read-only"])
def test_every_stage_on_a_broken_disk_says_where_and_keeps_the_outputs(mounted_repo: Path, mode: str) -> None:
    repo = mounted_repo
    for name in MOUNTED:
        if mode == "full":
            fill(repo / name)
        else:
            _mount(repo / name, "-o", "remount,ro")
    before = snapshot(repo)
    stages = list(yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"])
    for stage in stages:
        result = run(repo, "dvc", "repro", "--force", "--single-item", stage, check=False, timeout=600)
        printed = result.stdout + result.stderr
        assert result.returncode != 0, f"{stage} wrote on a {mode} disk:\n{printed[-3000:]}"
        errors = [line for line in result.stderr.splitlines() if line.startswith("conveyor ")]
        if not errors and mode == "read-only":
            # DVC makes a cached output writable before the stage runs: on a read-only disk it
            # stops there, with its own one line naming the file (and deletes nothing).
            errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
            assert len(errors) == 1, f"{stage}:\n{printed[-3000:]}"
            assert "Read-only file system: " in errors[0], errors[0]
            assert any(f"/repo/{name}/" in errors[0] for name in MOUNTED), errors[0]
        else:
            assert len(errors) == 1, f"{stage}:\n{printed[-3000:]}"
            assert errors[0].startswith(f"conveyor {stage}: error: "), errors[0]
            assert "cannot write" in errors[0], errors[0]
            assert any(name in errors[0].split(": ")[2] for name in MOUNTED), errors[0]
        assert "Traceback" not in printed, f"{stage}:\n{printed[-3000:]}"
        after = snapshot(repo)
        lost = sorted(path for path in before if before[path] != after.get(path))
        assert not lost, f"{stage} on a {mode} disk lost or changed {lost}"
