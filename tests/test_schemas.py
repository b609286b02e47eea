"""schemas/ is complete and self-consistent: every table the design names, keys that exist, documented columns."""

from __future__ import annotations

import json

import pytest
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StringType, TimestampType

from jobs.schemas import SCHEMA_DIR, schema_differences, schema_of, table_names, table_spec

DESIGN_TABLES = {
    "crawl_manifest", "images", "image_sources", "faces", "quarantine", "suppression", "erasure_audit", "dq_results",
    "face_status",
}


def test_every_design_table_has_a_schema() -> None:
    assert set(table_names()) == DESIGN_TABLES


@pytest.mark.parametrize("name", sorted(DESIGN_TABLES))
def test_keys_exist_are_not_null_and_columns_are_documented(name: str) -> None:
    spec = table_spec(name)
    fields = {f.name: f for f in spec.schema.fields}
    assert spec.key and all(k in fields and not fields[k].nullable for k in spec.key)
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
    renamed = images.fromJson({**images.jsonValue(), "fields": [
        {**f.jsonValue(), "name": "phash64" if f.name == "phash" else f.name} for f in images.fields]})
    assert schema_differences(renamed, images) == ["missing column phash", "unexpected column phash64"]
    loosened = images.fromJson({**images.jsonValue(), "fields": [
        {**f.jsonValue(), "nullable": True} if f.name == "width" else f.jsonValue() for f in images.fields]})
    assert schema_differences(loosened, images) == ["width: nullable True != False"]
