"""schemas/ is complete and self-consistent: every table the design names, keys that exist, documented columns."""

from __future__ import annotations

import json
import re

import pytest
from pyspark.sql import types as T
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StringType, TimestampType

from jobs.lake.schemas import SCHEMA_DIR, schema_differences, schema_of, table_names, table_spec

DESIGN_TABLES = {
    "crawl_manifest",
    "images",
    "image_sources",
    "faces",
    "quarantine",
    "suppression",
    "erasure_audit",
    "dq_results",
    "face_status",
    "image_links",
    "index_builds",
}
# Key columns added after lakes existed: nullable so they can join an existing table
# (jobs.lake.tables._add_missing_columns), filled by their writer and checked not null by the table's suite.
LATE_KEY_COLUMNS = {"dq_results": {"validation_id"}}


def test_every_design_table_has_a_schema() -> None:
    assert set(table_names()) == DESIGN_TABLES


@pytest.mark.parametrize("name", sorted(DESIGN_TABLES))
def test_keys_exist_are_not_null_and_columns_are_documented(name: str) -> None:
    spec = table_spec(name)
    fields = {f.name: f for f in spec.schema.fields}
    late = LATE_KEY_COLUMNS.get(name, set())
    assert spec.key and all(k in fields and (not fields[k].nullable or k in late) for k in spec.key)
    if late:
        from jobs.quality.suites import suite_spec

        not_null = {
            e.columns[0]
            for e in suite_spec(name).expectations
            if e.type == "expect_column_values_to_not_be_null"
        }
        assert late <= set(spec.key) and late <= not_null
        assert all(fields[k].nullable for k in late), "a late key column that is NOT NULL is not late"
    assert all(f.metadata.get("comment") for f in spec.schema.fields), "every column says what it holds"
    assert spec.properties.get("delta.enableDeletionVectors") == "false"
    # Retention is set per table, not left to Delta's defaults (maintain's VACUUM honours it).
    assert spec.properties["delta.deletedFileRetentionDuration"].startswith("interval ")
    assert spec.properties["delta.logRetentionDuration"].startswith("interval ")
    assert all(c in fields and c not in spec.partition_by for c in spec.zorder_by)
    raw = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    assert raw["table"] == name


def test_contract_types() -> None:
    images = {f.name: f.dataType for f in schema_of("images").fields}
    assert images["content"] == BinaryType() and images["image_id"] == StringType()
    assert images["jurisdiction_tags"] == ArrayType(StringType(), True)
    faces = {f.name: f.dataType for f in schema_of("faces").fields}
    assert faces["embedding"] == ArrayType(FloatType(), True)
    assert {f.name: f.dataType for f in schema_of("crawl_manifest").fields}["crawled_at"] == TimestampType()
    # Suppression and audit hold hashes and counts, never URLs.
    assert "source_url" not in {f.name for f in schema_of("suppression").fields}
    assert "source_url" not in {f.name for f in schema_of("erasure_audit").fields}


def test_schema_differences_reports_each_kind_of_mismatch() -> None:
    images = schema_of("images")
    assert schema_differences(images, images) == []
    renamed = images.fromJson(
        {
            **images.jsonValue(),
            "fields": [
                {**f.jsonValue(), "name": "phash64" if f.name == "phash" else f.name} for f in images.fields
            ],
        }
    )
    assert schema_differences(renamed, images) == ["missing column phash", "unexpected column phash64"]
    loosened = images.fromJson(
        {
            **images.jsonValue(),
            "fields": [
                {**f.jsonValue(), "nullable": True} if f.name == "width" else f.jsonValue()
                for f in images.fields
            ],
        }
    )
    assert schema_differences(loosened, images) == ["width: nullable True != False"]


# What issue #10 names as personal data; each must carry "personal": true wherever it appears.
PERSONAL = {
    "source_url",
    "page_url",
    "source_host",
    "page_host",
    "image_path",
    "raw_line",
    "extra",
    "content",
    "embedding",
    "landmarks",
    "bbox",
}
# Names that say "URL, path, raw input, free text, bytes or biometrics": never worth a statistic.
NEVER_STATS = re.compile(
    r"(^|_)(url|path|host|raw|extra|content|embedding|landmarks|bbox|detail|kwargs|observed|ticket|requested)(_|$)"
)
# Delta keeps min/max only on these types; it refuses to list any other in the property.
STATS_TYPES = (
    T.StringType,
    T.IntegerType,
    T.LongType,
    T.ShortType,
    T.ByteType,
    T.FloatType,
    T.DoubleType,
    T.DecimalType,
    T.DateType,
    T.TimestampType,
    T.TimestampNTZType,
)


@pytest.mark.parametrize("name", sorted(DESIGN_TABLES))
def test_log_statistics_only_on_declared_non_personal_columns(name: str) -> None:
    spec = table_spec(name)
    fields = {f.name: f for f in spec.schema.fields}
    raw = {f["name"]: f for f in json.loads((SCHEMA_DIR / f"{name}.json").read_text())["fields"]}
    assert set(spec.personal) == {n for n, f in raw.items() if f.get("personal") is True}
    assert {n for n in fields if n in PERSONAL} <= set(spec.personal), (
        "URL/path/raw/bytes/biometric columns are personal"
    )
    # Without the property Delta writes min/max of the first 32 columns (strings cut to 32 characters)
    # into every commit, checkpoint and checksum of _delta_log, for as long as the log is retained.
    assert "delta.dataSkippingStatsColumns" in spec.properties, "every table restricts its log statistics"
    stats = spec.stats_columns
    assert stats and len(set(stats)) == len(stats)
    assert set(stats) <= fields.keys(), "stats columns exist"
    assert not set(stats) & set(spec.personal), f"personal data in {name}'s log statistics"
    assert not [c for c in stats if NEVER_STATS.search(c)]
    assert all(isinstance(fields[c].dataType, STATS_TYPES) for c in stats)
    # Data skipping serves the MERGE key and the Z-order columns; Z-order without their stats is wasted.
    assert set(spec.key) | set(spec.zorder_by) <= set(stats)
