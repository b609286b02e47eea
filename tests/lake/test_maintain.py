"""jobs.lake.maintain: results stay identical, short retention ends time travel clearly, old tables lose personal log stats."""

from __future__ import annotations

from pathlib import Path

import pytest
from lakedata import (
    LOG_KINDS,
    assert_same_rows,
    faces,
    file_holds_marker,
    log_files,
    log_kind,
    log_version,
    marker_rows,
    rows,
)
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.lake.api import Lake, PurgedVersionError, history_records
from jobs.lake.maintain import interval_hours, maintain, optimize_plan, properties_to_set
from jobs.lake.tables import ensure_table, merge_new_rows, upsert_rows


def test_interval_hours() -> None:
    assert interval_hours("interval 7 days") == 168
    assert interval_hours("INTERVAL 30 days") == 720
    assert interval_hours("interval 1 week") == 168
    assert interval_hours("interval 12 hours") == 12
    with pytest.raises(ValueError, match="cannot read retention"):
        interval_hours("7d")


def test_properties_to_set() -> None:
    declared = {"delta.enableChangeDataFeed": "true", "delta.enableDeletionVectors": "false"}
    assert properties_to_set(declared, {"delta.enableChangeDataFeed": "TRUE"}) == {
        "delta.enableDeletionVectors": "false"
    }
    assert properties_to_set(declared, dict(declared)) == {}


def test_optimize_plan() -> None:
    assert optimize_plan("zorder", ("image_id",), 5) == "zorder"
    assert optimize_plan("zorder", (), 5) == "compact"  # nothing to order by: bin-packing only
    assert optimize_plan("compact", ("image_id",), 5) == "compact"
    assert optimize_plan("zorder", ("image_id",), 1) is None  # one file: a rerun rewrites nothing
    assert optimize_plan("none", ("image_id",), 9) is None
    with pytest.raises(ValueError, match="optimize mode"):
        optimize_plan("cluster", (), 3)


def small_files_lake(spark: SparkSession, lake: str) -> None:
    """faces in 4 commits (many small files, one update) and suppression in 2."""
    for batch in (["a", "b"], ["c"], ["d-uk", "e"]):
        merge_new_rows(spark, lake, "faces", faces(spark, batch).repartition(2), RunContext(job="embed"))
    upsert_rows(spark, lake, "faces", faces(spark, ["c"], score=0.3), ("det_score",), RunContext(job="retag"))
    for batch in (["s1"], ["s2", "s3"]):
        supp = rows(spark, "suppression", [{"suppression_id": s, "kind": "sha256"} for s in batch])
        merge_new_rows(spark, lake, "suppression", supp, RunContext(job="erasure"))


def snapshot(lake: Lake) -> dict[str, dict[int, list]]:
    """Every version of every table, read back in full (plain Delta time travel)."""
    read = lambda name, v: lake.spark.read.format("delta").option("versionAsOf", v).load(lake.uri(name))  # noqa: E731
    return {
        name: {v: sorted(map(tuple, read(name, v).collect())) for v in range(lake.latest_version(name) + 1)}
        for name in lake.tables()
    }


def test_maintenance_keeps_results_and_time_travel_identical(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    small_files_lake(spark, config.lake)
    lake = Lake(spark, config.lake)
    before = snapshot(lake)
    latest = {name: lake.latest_version(name) for name in lake.tables()}
    files_before = lake._delta("faces").detail().first()["numFiles"]
    assert files_before > 1

    run = RunContext(job="maintain")
    reports = {r.table: r for r in maintain(spark, config, run)}

    assert set(reports) == {"faces", "suppression"}
    assert reports["faces"].optimize == "zorder" and reports["faces"].files_after == 1
    assert reports["suppression"].optimize == "compact"
    assert reports["faces"].vacuum_retention_hours == 168  # the table's declared retention
    assert reports["faces"].files_vacuumed == 0  # everything is younger than 7 days
    after = snapshot(lake)
    for name, versions in before.items():
        # No version lost or changed a row, and the latest data equals the pre-maintenance latest.
        assert {v: after[name][v] for v in versions} == versions
        assert after[name][lake.latest_version(name)] == versions[latest[name]]
    lake.check_readable("faces", 1)  # the guard agrees: old files are still within retention
    assert_same_rows(lake.table("faces"), lake.table("faces", version=latest["faces"]))
    assert lake.diff("suppression", latest["suppression"], method="key").count() == 0
    assert lake.diff("faces", latest["faces"], method="cdf").count() == 0
    optimize_commit = next(r for r in history_records(lake, "faces") if r["operation"] == "OPTIMIZE")
    assert (optimize_commit["job"], optimize_commit["run_id"]) == ("maintain", run.run_id)

    # A rerun finds one file per table and rewrites nothing.
    again = {r.table: r for r in maintain(spark, config, RunContext(job="maintain"), tables=["faces"])}
    assert again["faces"].optimize is None and again["faces"].files_after == 1


def test_short_retention_vacuums_history_and_reapplies_properties(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    small_files_lake(spark, config.lake)
    lake = Lake(spark, config.lake)
    spark.sql(f"ALTER TABLE delta.`{lake.uri('faces')}` UNSET TBLPROPERTIES ('delta.logRetentionDuration')")
    old = lake.latest_version("faces")
    latest_rows = lake.table("faces").collect()

    reports = maintain(
        spark, config.replace(vacuum_retention_hours=0.0), RunContext(job="maintain"), tables=["faces"]
    )

    report = reports[0]
    assert report.properties_set == ["delta.logRetentionDuration"]
    props = lake._delta("faces").detail().first()["properties"]
    assert props["delta.logRetentionDuration"] == "interval 30 days"
    assert report.files_vacuumed > 0
    assert sorted(map(tuple, lake.table("faces").collect())) == sorted(map(tuple, latest_rows))
    with pytest.raises(
        PurgedVersionError, match=f"version {old} of table 'faces' is no longer readable.*VACUUM"
    ):
        lake.table("faces", version=old)
    # The retention check is back on for everyone else.
    assert spark.conf.get("spark.databricks.delta.retentionDurationCheck.enabled") == "true"


def test_maintain_drops_personal_statistics_of_an_older_table(
    spark: SparkSession, config: FacelakeConfig
) -> None:
    """A table created before schemas/ declared its stats columns: maintain sets them and rewrites its files'
    statistics, so no checkpoint or checksum written from then on holds a URL; older log files age out."""
    uri = ensure_table(spark, config.lake, "image_sources")
    spark.sql(f"ALTER TABLE delta.`{uri}` UNSET TBLPROPERTIES ('delta.dataSkippingStatsColumns')")
    spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")
    for batch in range(2):
        merge_new_rows(
            spark,
            config.lake,
            "image_sources",
            marker_rows(spark, "image_sources", batch),
            RunContext(job="ingest"),
        )
    lake = Lake(spark, config.lake)
    before = lake.latest_version("image_sources")
    assert any(file_holds_marker(p) for p in log_files(Path(uri)) if log_kind(p) == "checkpoint")

    run = RunContext(job="maintain")
    report = maintain(spark, config, run, tables=["image_sources"])[0]

    assert report.properties_set == ["delta.dataSkippingStatsColumns"]
    assert {"source_url", "page_url", "source_host", "extra"} <= set(report.stats_recomputed)
    recompute = next(r for r in history_records(lake, "image_sources") if r["operation"] == "COMPUTE STATS")
    assert (recompute["job"], recompute["run_id"]) == ("maintain", run.run_id)
    versioned = [p for p in log_files(Path(uri)) if log_kind(p) in LOG_KINDS]
    since = [p for p in versioned if log_version(p) >= recompute["version"]]
    assert {log_kind(p) for p in since} == set(LOG_KINDS)
    assert [p.name for p in since if file_holds_marker(p)] == []
    # What still holds the marker predates the recompute; delta.logRetentionDuration removes it.
    assert all(log_version(p) < recompute["version"] for p in versioned if file_holds_marker(p))
    # Statistics are not data: same rows, and incremental (CDF) readers see no change.
    assert_same_rows(lake.table("image_sources"), lake.table("image_sources", version=before))
    assert lake.table("image_sources").count() == 4
    assert lake.diff("image_sources", before, method="cdf").count() == 0

    again = maintain(spark, config, RunContext(job="maintain"), tables=["image_sources"])[0]
    assert (again.properties_set, again.stats_recomputed) == ([], [])
