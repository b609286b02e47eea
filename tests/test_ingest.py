"""Ingest on the sample drop, checked against its answer key: manifest validation, quarantine, idempotency."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.config import FacelakeConfig
from jobs.ingest import ingest_manifest, read_drop_id
from jobs.manifest import drop_id_for
from jobs.reasons import QuarantineReason as R
from jobs.runs import RunContext
from jobs.schemas import schema_differences, schema_of
from jobs.tables import read_table, table_uri

# Reasons decided from the manifest line alone; file-level reasons come with image decoding.
LINE_REASONS = {R.MALFORMED_JSON, R.MISSING_FIELD, R.INVALID_FIELD, R.PATH_ESCAPE}


def _key(drop: Path) -> dict:
    return json.loads((drop / "answer_key.json").read_text())


def _versions(spark: SparkSession, lake: str) -> dict[str, int]:
    return {
        name: DeltaTable.forPath(spark, table_uri(lake, name)).history(1).first()["version"]
        for name in ("crawl_manifest", "quarantine")
    }


def test_manifest_lines_land_or_are_quarantined_per_answer_key(
    spark: SparkSession, config: FacelakeConfig, sample_drop: Path
) -> None:
    key = _key(sample_drop)
    counts = ingest_manifest(spark, config.replace(drop=str(sample_drop)), RunContext(job="ingest"))
    drop_id = drop_id_for((sample_drop / "manifest.jsonl").read_bytes())

    expected_bad = {ln["line_no"]: ln["expected"] for ln in key["lines"] if ln["expected"] in LINE_REASONS}
    quarantined = {
        r["line_no"]: r["reason"]
        for r in read_table(spark, config.lake, "quarantine").select("line_no", "reason").collect()
    }
    assert quarantined == expected_bad
    assert counts["quarantined_lines"] == len(expected_bad)
    reported = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("quarantine.")}
    assert reported == Counter(expected_bad.values())

    manifest = read_table(spark, config.lake, "crawl_manifest")
    landed = {r["line_no"]: r for r in manifest.collect()}
    assert set(landed) == {ln["line_no"] for ln in key["lines"]} - set(expected_bad)
    assert counts["manifest_lines"] == len(key["lines"])
    for ln in key["lines"]:
        if ln["line_no"] in landed:
            row = landed[ln["line_no"]]
            assert row["image_path"] == ln["image_path"] and row["source_url"] == ln["source_url"]
            assert row["drop_id"] == drop_id
    # What the job wrote matches schemas/ exactly.
    assert schema_differences(manifest.schema, schema_of("crawl_manifest")) == []
    assert schema_differences(read_table(spark, config.lake, "quarantine").schema, schema_of("quarantine")) == []


def test_unknown_fields_are_kept(spark: SparkSession, config: FacelakeConfig, sample_drop: Path) -> None:
    ingest_manifest(spark, config.replace(drop=str(sample_drop)), RunContext(job="ingest"))
    manifest_lines = (sample_drop / "manifest.jsonl").read_text().splitlines()
    extras = {r["line_no"]: json.loads(r["extra"]) for r in read_table(spark, config.lake, "crawl_manifest")
              .where("extra IS NOT NULL").collect()}
    assert extras, "the sample drop has lines with unknown fields"
    for line_no, extra in extras.items():
        original = json.loads(manifest_lines[line_no - 1])
        assert all(original[k] == v for k, v in extra.items())


def test_second_ingest_of_the_same_drop_is_a_noop(
    spark: SparkSession, config: FacelakeConfig, sample_drop: Path
) -> None:
    drop_config = config.replace(drop=str(sample_drop))
    ingest_manifest(spark, drop_config, RunContext(job="ingest"))
    before = _versions(spark, config.lake)
    rows_before = read_table(spark, config.lake, "crawl_manifest").orderBy("line_no").collect()
    again = ingest_manifest(spark, drop_config, RunContext(job="ingest"))
    assert again["manifest_rows_inserted"] == 0 and again["quarantine_rows_inserted"] == 0
    assert _versions(spark, config.lake) == before
    assert read_table(spark, config.lake, "crawl_manifest").orderBy("line_no").collect() == rows_before


def test_drop_id_is_read_from_manifest_bytes(spark: SparkSession, sample_drop: Path) -> None:
    assert read_drop_id(spark, str(sample_drop)) == drop_id_for((sample_drop / "manifest.jsonl").read_bytes())


def test_missing_manifest_is_a_clear_error(spark: SparkSession, config: FacelakeConfig, tmp_path: Path) -> None:
    empty = tmp_path / "empty-drop"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.jsonl in drop"):
        ingest_manifest(spark, config.replace(drop=str(empty)), RunContext(job="ingest"))
