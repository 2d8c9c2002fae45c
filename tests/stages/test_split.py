"""The seeded, optionally stratified train/test split."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conveyor.config import SplitConfig
from conveyor.engine.hashsplit import SplitError
from conveyor.stages.split import split


def test_same_seed_same_rows_other_seed_other_rows(penguins: pd.DataFrame) -> None:
    cfg = SplitConfig(test_size=0.25, seed=7, stratify=True)
    first_train, first_test = split(penguins, cfg, target="species", stratify=True)
    again_train, again_test = split(penguins, cfg, target="species", stratify=True)
    pd.testing.assert_frame_equal(first_test, again_test)
    pd.testing.assert_frame_equal(first_train, again_train)
    _, other_test = split(penguins, SplitConfig(test_size=0.25, seed=8), target="species", stratify=True)
    assert not first_test.equals(other_test)


def test_sizes_add_up_and_rows_are_not_shared(penguins: pd.DataFrame) -> None:
    train, test = split(penguins, SplitConfig(test_size=0.2, seed=1), target="species", stratify=False)
    assert len(train) + len(test) == len(penguins)
    assert len(test) == 69  # ceil(0.2 * 344)
    key = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
    shared = train.merge(test, on=key, how="inner")
    assert shared.empty


def test_stratified_split_keeps_class_proportions(penguins: pd.DataFrame) -> None:
    train, test = split(penguins, SplitConfig(test_size=0.25, seed=3), target="species", stratify=True)
    counts = penguins["species"].value_counts()
    for label, total in counts.items():
        in_test = int((test["species"] == label).sum())
        assert abs(in_test - 0.25 * total) <= 1, (label, in_test, total)
    assert set(train["species"]) == set(test["species"]) == set(counts.index)


def test_a_class_with_one_row_cannot_be_stratified(penguins: pd.DataFrame) -> None:
    lonely = pd.concat([penguins, penguins.iloc[[0]].assign(species="Emperor")], ignore_index=True)
    with pytest.raises(SplitError, match=r"split.stratify: class\(es\) \['Emperor'\] of 'species' have fewer than 2"):
        split(lonely, SplitConfig(), target="species", stratify=True)
    train, test = split(lonely, SplitConfig(), target="species", stratify=False)
    assert len(train) + len(test) == len(lonely)


def test_a_test_set_too_small_for_every_class_names_test_size(penguins: pd.DataFrame) -> None:
    with pytest.raises(SplitError, match=r"split.test_size=0.005"):
        split(penguins, SplitConfig(test_size=0.005), target="species", stratify=True)


def test_the_stratified_test_split_has_its_size(penguins: pd.DataFrame) -> None:
    _, test = split(penguins, SplitConfig(test_size=0.25, seed=5), target="species", stratify=True)
    assert len(test) == 86  # ceil(0.25 * 344)


@pytest.mark.parametrize("stage", ["ingest", "validate", "split"])
def test_the_data_stages_import_no_scikit_learn(stage: str) -> None:
    # Each stage is a process; scikit-learn and SciPy would add about two seconds to each.
    probe = (
        f"import sys, conveyor.cli, conveyor.stages.{stage}; print(sorted({{'sklearn', 'scipy'}} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
