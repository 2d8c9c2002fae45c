"""The example feature definitions: one entity, two feature views with TTLs, one feature service.

The sources are Parquet files with event timestamps (``make_sources.py`` derives them from
``data/penguins.csv``): a penguin's measurements are taken on a date and may be taken again
later; its profile (island, sex) is recorded once. ``penguin_labels.parquet`` is the entity
table: the species identified for a penguin at a time, the rows a training set is built on.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

penguin = Entity(
    name="penguin", join_keys=["penguin_id"], value_type=ValueType.INT64, description="One penguin of the Palmer study"
)

measurements_source = FileSource(
    name="penguin_measurements_source",
    path="data/penguin_measurements.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

profiles_source = FileSource(
    name="penguin_profiles_source",
    path="data/penguin_profiles.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

# A measurement older than a year no longer describes the penguin: the join leaves it missing.
penguin_measurements = FeatureView(
    name="penguin_measurements",
    entities=[penguin],
    ttl=timedelta(days=365),
    schema=[
        Field(name="bill_length_mm", dtype=Float64),
        Field(name="bill_depth_mm", dtype=Float64),
        Field(name="flipper_length_mm", dtype=Float64),
        Field(name="body_mass_g", dtype=Float64),
    ],
    source=measurements_source,
    online=True,
)

penguin_profiles = FeatureView(
    name="penguin_profiles",
    entities=[penguin],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="island", dtype=String),
        Field(name="sex", dtype=String),
    ],
    source=profiles_source,
    online=True,
)

# What the species model reads: one service per model version.
penguin_species = FeatureService(
    name="penguin_species",
    features=[penguin_measurements, penguin_profiles],
    description="The inputs of Conveyor's default species classifier",
)
