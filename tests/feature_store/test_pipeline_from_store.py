"""``dvc repro`` with ``feature_store.enabled``: a training table from Feast, a model packaged to be fed from it.

A drop above the threshold stops the line.

Each test runs one ``dvc repro`` in a copy of the repository whose params point at the Feast
environment; the example's point-in-time join rebuilds the embedded penguins table exactly.
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import pandas as pd
import pytest
import yaml

from conveyor import io
from conveyor.artifacts import IngestReport, OnlineFeaturesInfo
from conveyor.bundle import Bundle, read_package_report
from tests.conftest import copy_repo, run
from tests.feature_store.conftest import feast_python

pytestmark = pytest.mark.slow


def with_feature_store(repo: Path) -> Path:
    """``repo`` with the option on and the Feast environment of this checkout."""
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["feature_store"].update(enabled=True, python=str(feast_python()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return repo


def test_the_pipeline_reads_the_store_and_packages_a_model_fed_from_it(tmp_path: Path) -> None:
    repo = with_feature_store(copy_repo(tmp_path / "repo"))
    run(repo, "dvc", "repro", timeout=900)
    report = io.read_artifact(repo / "reports" / "ingest.json", IngestReport)
    assert report.source == "feast:feature_repo (penguin_species)"
    assert report.feature_store is not None
    assert (report.feature_store.entity_rows, report.feature_store.dropped) == (344, 0)
    # Every label found its own year's measurement, not the 2007 penguins' later one.
    table = io.read_table(repo / "data" / "raw" / "data.parquet")
    original = io.read_source(str(repo / "data" / "penguins.csv"))
    pd.testing.assert_frame_equal(table[list(original.columns)], original)
    # The packaged bundle says the service takes penguin_id and fetches every model input.
    bundle = Bundle.load(
        Path(bentoml.models.get(read_package_report(repo / "reports" / "package.json").model_tag).path)
    )
    assert bundle.info.online_features == OnlineFeaturesInfo(
        feature_service="penguin_species",
        entity_keys=["penguin_id"],
        features=[column for column in report.feature_store.features if column in bundle.columns],
        server_url="http://127.0.0.1:6566",
    )
    assert set(bundle.info.online_features.features) == set(bundle.columns)


def test_a_drop_above_the_threshold_stops_the_line(tmp_path: Path) -> None:
    repo = with_feature_store(copy_repo(tmp_path / "repo"))
    labels = repo / "feature_repo" / "data" / "penguin_labels.parquet"
    rows = pd.read_parquet(labels)
    late = rows.head(1).assign(
        event_timestamp=pd.Timestamp("2015-06-01", tz="UTC")
    )  # past the TTL of its last (2009) measurement
    pd.concat([rows, late], ignore_index=True).to_parquet(labels, index=False)
    result = run(repo, "dvc", "repro", "ingest", check=False, timeout=600)
    assert result.returncode != 0
    assert (
        "dropped 1 of 345 entity rows (0.3%), above feature_store.max_dropped_share 0; "
        "dropped by feature view: penguin_measurements (1); e.g. entity penguin_id=1 at 2015-06-01T00:00:00+00:00 "
        "has no row in feature view penguin_measurements within its TTL (penguin_measurements TTL 365 days)"
    ) in result.stderr
    assert not (repo / "data" / "raw" / "data.parquet").exists()
