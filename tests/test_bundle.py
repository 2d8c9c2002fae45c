"""The packaged format: every file hashed (the reference sample included), verified before use, read back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.bundle import CHECKSUMS_FILE, MODEL_FILE, ONNX_FILE, REFERENCE_FILE, Bundle, BundleError, reference_sample


def test_the_bundle_records_the_hash_of_every_file(bundle: Bundle) -> None:
    listed = {line.split("  ", 1)[1] for line in (bundle.directory / CHECKSUMS_FILE).read_text().splitlines()}
    assert listed == {path.name for path in bundle.directory.iterdir()} - {CHECKSUMS_FILE}


@pytest.mark.parametrize("name", [ONNX_FILE, MODEL_FILE, "conveyor.json", "contract.yaml", REFERENCE_FILE])
def test_a_corrupt_bundle_file_is_named_before_anything_is_loaded(bundle: Bundle, tmp_path: Path, name: str) -> None:
    """Every file is checked, whichever path serves: a corrupt ``model.skops`` is caught even
    behind a healthy ONNX model, and a corrupt ``conveyor.json`` before it is parsed."""
    copy = tmp_path / "bundle"
    copy.mkdir()
    for path in bundle.directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / name
    target.write_bytes(np.random.default_rng(0).bytes(target.stat().st_size))
    with pytest.raises(BundleError, match=rf"{name}: corrupt") as caught:
        Bundle.load(copy)
    assert "\n" not in str(caught.value)


def test_a_missing_bundle_file_or_hash_list_is_named(bundle: Bundle, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    copy.mkdir()
    for path in bundle.directory.iterdir():
        if path.name != ONNX_FILE:
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(BundleError, match=rf"{ONNX_FILE}: missing"):
        Bundle.load(copy)
    (copy / CHECKSUMS_FILE).unlink()
    with pytest.raises(BundleError, match=rf"{CHECKSUMS_FILE}: missing"):
        Bundle.load(copy)


def test_the_reference_is_a_seeded_sample_of_the_model_columns() -> None:
    train = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000, "unused": 0})
    sample = reference_sample(train, columns=("a", "b"), rows=100, seed=1)
    assert list(sample.columns) == ["a", "b"]
    assert len(sample) == 100
    assert sample.equals(reference_sample(train, columns=("a", "b"), rows=100, seed=1))
    assert len(reference_sample(train, columns=("a",), rows=5000, seed=1)) == 1000


def test_the_reference_is_hashed_and_read_back(bundle: Bundle) -> None:
    assert REFERENCE_FILE in bundle.files
    reference = bundle.reference()
    assert list(reference.columns) == [*bundle.columns, bundle.info.target]


def test_a_file_the_hash_list_does_not_name_is_never_read(bundle: Bundle, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.directory, copy)
    sums = copy / CHECKSUMS_FILE
    sums.write_text("".join(line for line in sums.read_text().splitlines(keepends=True) if REFERENCE_FILE not in line))
    unlisted = Bundle.load(copy)
    with pytest.raises(BundleError, match=rf"{CHECKSUMS_FILE}: lists no {REFERENCE_FILE}"):
        unlisted.reference()
