"""No personal data in Delta's transaction log: commits, checkpoints and checksums hold no URL, path or raw line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lakedata import LOG_KINDS, MARKER, file_holds_marker, log_files, log_kind, marker_items, marker_rows
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs.core.runs import RunContext
from jobs.lake.schemas import table_names, table_spec
from jobs.lake.tables import ensure_table, merge_new_rows


def leaks(lake: str) -> dict[str, list[str]]:
    """Per log kind, the log files of every table in the lake that hold MARKER."""
    found: dict[str, list[str]] = {}
    for table_dir in sorted((Path(lake) / "tables").iterdir()):
        for path in log_files(table_dir):
            if file_holds_marker(path):
                found.setdefault(log_kind(path), []).append(f"{table_dir.name}/{path.name}")
    return found


def write_marker_lake(
    spark: SparkSession, lake: str, names: list[str], *, without_stats_property: bool
) -> None:
    """Tables made by ensure_table, marker rows MERGEd in, a checkpoint at every commit (Delta's default: every 10th)."""
    for name in names:
        uri = ensure_table(spark, lake, name)
        if without_stats_property:
            spark.sql(f"ALTER TABLE delta.`{uri}` UNSET TBLPROPERTIES ('delta.dataSkippingStatsColumns')")
        spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")
        assert merge_new_rows(spark, lake, name, marker_rows(spark, name, 0), RunContext(job="privacy")) == 2
    for name in names:
        kinds = {log_kind(p) for p in log_files(Path(lake) / "tables" / name)}
        assert set(LOG_KINDS) <= kinds, f"{name}: the log must hold commits, a checkpoint and checksums"


def test_marker_rows_fill_every_personal_column() -> None:
    """The proof below is only as good as its rows: each personal string or bytes column holds the marker."""
    for name in table_names():
        spec = table_spec(name)
        first = marker_items(name, 0)[0]
        scalar = {c for c in spec.personal if not isinstance(spec.schema[c].dataType, T.ArrayType)}
        assert {c for c in scalar if MARKER in json.dumps(first.get(c), default=str)} == scalar, name


@pytest.mark.slow
def test_delta_log_holds_no_personal_data(spark: SparkSession, lake: str) -> None:
    """Every table, its stats restricted by schemas/*.json: no commit, checkpoint or checksum holds the marker."""
    write_marker_lake(spark, lake, table_names(), without_stats_property=False)
    # The data is there (the marker is in the tables) ...
    quarantine = spark.read.format("delta").load(f"{lake}/tables/quarantine")
    assert quarantine.where(quarantine.raw_line.contains(MARKER)).count() == 2
    # ... and nowhere in any table's log.
    assert leaks(lake) == {}


@pytest.mark.slow
def test_without_stats_property_the_log_leaks(spark: SparkSession, lake: str) -> None:
    """The control: the same writes without delta.dataSkippingStatsColumns put the marker in every kind of log file,
    so the test above fails without the property (and the scan can see each kind)."""
    names = ["crawl_manifest", "image_sources", "quarantine"]
    write_marker_lake(spark, lake, names, without_stats_property=True)
    found = leaks(lake)
    assert set(LOG_KINDS) <= set(found), found
    for name in names:
        assert any(f.startswith(f"{name}/") for f in found["checkpoint"]), name
