"""The train/test split both engines share: a seeded hash of each row, cut per class at an exact quota.

A row's side depends only on its own values and ``split.seed``, never on where it sits in the
table or in which partition, so the pandas engine (one frame) and the Dask engine (many) put the
same rows on the same side. Within each class (one group when not stratified) the test split takes
the rows with the smallest hashes, up to the class's quota of ``ceil(test_size * rows)`` test rows
(shared by largest remainder, at least one row on each side). The cut is found in two passes
that a partitioned table can make: counts of hashes per class and 16-bit bucket, then the hashes
of the one bucket per class the cut falls in. Identical rows hash alike and stay together, so a
class whose cut falls between duplicates gets them all (a few more test rows than its quota).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from conveyor.errors import ConveyorError

__all__ = [
    "ONE_GROUP",
    "Cut",
    "SplitError",
    "bucket_counts",
    "cut_hashes",
    "cuts",
    "group_labels",
    "is_test",
    "quotas",
    "require_train_classes",
    "row_hashes",
    "thresholds",
]

# The group every row is in when the split is not stratified.
ONE_GROUP = "__all__"
BUCKET_SHIFT = np.uint64(48)


class SplitError(ConveyorError):
    """The split settings cannot be applied to this data."""


def _mix(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # splitmix64's finaliser: every input bit moves every output bit.
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def row_hashes(df: pd.DataFrame, seed: int) -> NDArray[np.uint64]:
    """A 64-bit hash of each row's values (not its position), mixed with ``seed``; shape (n_rows,)."""
    values = pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)
    salt = _mix(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _mix(values ^ salt)


def group_labels(df: pd.DataFrame, target: str, *, stratify: bool) -> NDArray[np.object_]:
    """The group of each row: its label as text when stratified, else :data:`ONE_GROUP`."""
    if not stratify:
        return np.full(len(df), ONE_GROUP, dtype=object)
    return df[target].astype(str).to_numpy(dtype=object)


def bucket_counts(groups: NDArray[np.object_], hashes: NDArray[np.uint64]) -> pd.Series:
    """Rows per (group, top 16 bits of the hash): the first pass, summed over partitions."""
    frame = pd.DataFrame({"group": groups, "bucket": (hashes >> BUCKET_SHIFT).astype(np.int64)})
    return frame.value_counts(["group", "bucket"])


def require_train_classes(train_labels: Iterable[Any], test_labels: Iterable[Any], *, target: str) -> None:
    """:class:`SplitError` naming the classes of ``target`` that have test rows and no train rows.

    Only an unstratified split can leave one so: a model cannot learn a class it never sees, and
    evaluate cannot score a label outside the model's classes.
    """
    train = {str(label) for label in train_labels if not pd.isna(label)}
    unseen = sorted({str(label) for label in test_labels if not pd.isna(label)} - train)
    if unseen:
        shown = ", ".join(map(repr, unseen[:10])) + (f" and {len(unseen) - 10} more" if len(unseen) > 10 else "")
        raise SplitError(
            f"split: class(es) {shown} of {target!r} fell only in the test split, so the model would never see "
            "them; add rows of those classes or remove them (with at least 2 rows each, split.stratify: true "
            "puts every class on both sides)"
        )


def quotas(sizes: Mapping[str, int], test_size: float, *, target: str, stratified: bool) -> dict[str, int]:
    """Test rows per group: ``ceil(test_size * rows)`` in all, shared by largest remainder; one row each side at least."""
    counts = pd.Series(dict(sizes), dtype="int64").sort_index()
    rows = int(counts.sum())
    n_test = math.ceil(test_size * rows)
    if not 0 < n_test < rows:
        raise SplitError(f"split.test_size={test_size}: leaves {rows - n_test} train and {n_test} test rows")
    if not stratified:
        return {ONE_GROUP: n_test}
    too_few = counts[counts < 2]
    if len(too_few):
        raise SplitError(
            f"split.stratify: class(es) {list(too_few.index)} of {target!r} have fewer than 2 rows; "
            "stratified splitting needs at least 2 per class (set split.stratify: false or add data)"
        )
    if n_test < len(counts) or rows - n_test < len(counts):
        raise SplitError(
            f"split.test_size={test_size}: {n_test} test rows cannot hold each of the {len(counts)} classes "
            f"of {target!r} on both sides; raise or lower it, or set split.stratify: false"
        )
    exact = counts.to_numpy() * n_test / rows
    share = np.floor(exact).astype(np.int64)
    # Largest remainder: the rows floor() left over go to the classes it shortchanged most.
    for index in np.argsort(-(exact - share), kind="stable")[: n_test - int(share.sum())]:
        share[index] += 1
    share = np.clip(share, 1, counts.to_numpy() - 1)
    return {str(label): int(take) for label, take in zip(counts.index, share, strict=True)}


class Cut(tuple[int, int]):
    """Where a group's quota ends: the hash bucket it falls in and its rank (1-based) inside it."""

    __slots__ = ()

    @property
    def bucket(self) -> int:
        """The top 16 bits of the last test row's hash."""
        return self[0]

    @property
    def rank(self) -> int:
        """The last test row's place among the group's hashes in that bucket, from 1."""
        return self[1]


def cuts(counts: pd.Series, group_quotas: Mapping[str, int]) -> dict[str, Cut]:
    """From the summed :func:`bucket_counts`, the bucket and rank where each group's quota ends."""
    found: dict[str, Cut] = {}
    for group, quota in group_quotas.items():
        per_bucket = counts.xs(group, level="group").sort_index()
        running = per_bucket.cumsum().to_numpy()
        at = int(np.searchsorted(running, quota))
        before = int(running[at - 1]) if at else 0
        found[group] = Cut((int(per_bucket.index[at]), quota - before))
    return found


def cut_hashes(groups: NDArray[np.object_], hashes: NDArray[np.uint64], group_cuts: Mapping[str, Cut]) -> pd.Series:
    """The second pass: the hashes of each group's cut bucket (a few per million rows), indexed by group."""
    bucket = (hashes >> BUCKET_SHIFT).astype(np.int64)
    # -1: no bucket, for a group without a cut (none in this partition's share of the quota).
    wanted = {group: cut.bucket for group, cut in group_cuts.items()}
    keep = _per_row(groups, wanted, missing=-1, dtype=np.int64) == bucket
    return pd.Series(hashes[keep], index=pd.Index(groups[keep], name="group"), dtype="uint64")


def thresholds(collected: Iterable[pd.Series], group_cuts: Mapping[str, Cut]) -> dict[str, int]:
    """The largest test hash of each group, from the :func:`cut_hashes` of every partition."""
    hashes = pd.concat(list(collected))
    return {
        group: int(np.sort(hashes[hashes.index == group].to_numpy())[cut.rank - 1]) for group, cut in group_cuts.items()
    }


def is_test(groups: NDArray[np.object_], hashes: NDArray[np.uint64], limits: Mapping[str, int]) -> NDArray[np.bool_]:
    """Whether each row is a test row: its hash at or below its group's threshold; shape (n_rows,)."""
    return np.asarray(hashes <= _per_row(groups, limits, missing=0, dtype=np.uint64), dtype=bool)


def _per_row(
    groups: NDArray[np.object_], per_group: Mapping[str, int], *, missing: int, dtype: type[np.integer[Any]]
) -> NDArray[np.integer[Any]]:
    # One lookup per distinct group, not per row: a per-row map over text costs 0.4 s per million rows.
    codes, distinct = pd.factorize(groups)
    return np.array([per_group.get(group, missing) for group in distinct], dtype=dtype)[codes]
