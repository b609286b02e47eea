"""Erasure verification: no version of a table still holds rows matching an erased selector (used by tests)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.runs import RunContext
from jobs.lake.tables import read_table, table_uri
from jobs.quality.gate import QualityGateError
from jobs.quality.runner import QualityReport, run_suite, write_results


def table_versions(spark: SparkSession, lake: str, table: str) -> list[int]:
    """Every version listed in the table's history (oldest first)."""
    from delta.tables import DeltaTable

    rows = DeltaTable.forPath(spark, table_uri(lake, table)).history().select("version").collect()
    return sorted(int(r["version"]) for r in rows)


def check_erased(
    spark: SparkSession,
    lake: str,
    table: str,
    selector: str | Column | DataFrame,
    versions: Iterable[int] | None = None,
) -> DataFrame:
    """Per-version counts of rows matching an erased selector: columns ``table_version``, ``matching_rows``.

    ``selector`` is a Spark SQL predicate, a Column, or a DataFrame of keys (rows are matched with
    a semi join on its columns). ``versions`` defaults to every version in the table's history;
    the erasure job should pass the versions that must still be readable after purging.
    """
    versions = sorted(
        set(int(v) for v in (table_versions(spark, lake, table) if versions is None else versions))
    )
    wanted = spark.createDataFrame([(v,) for v in versions], "table_version long")
    if not versions:
        return wanted.withColumn("matching_rows", F.lit(0).cast("long"))
    parts = []
    for v in versions:
        rows = read_table(spark, lake, table, version=v)
        if isinstance(selector, DataFrame):
            rows = rows.join(selector, list(selector.columns), "left_semi")
        else:
            rows = rows.where(selector)
        parts.append(rows.select(F.lit(v).cast("long").alias("table_version")))
    counts = (
        reduce(DataFrame.unionAll, parts)
        .groupBy("table_version")
        .agg(F.count(F.lit(1)).alias("matching_rows"))
    )
    return wanted.join(counts, "table_version", "left").select(
        "table_version", F.coalesce("matching_rows", F.lit(0)).cast("long").alias("matching_rows")
    )


def verify_erased(
    spark: SparkSession,
    table: str,
    selector: str | Column | DataFrame,
    *,
    lake: str,
    run: RunContext,
    versions: Iterable[int] | None = None,
    raise_on_failure: bool = True,
    record: bool = True,
) -> QualityReport:
    """After an erasure: zero rows of ``table`` match ``selector`` at every version in ``versions``.

    Runs the ``erased_selector`` suite on ``check_erased``'s counts: the dq_results rows record the
    rows still matching (observed value), the versions checked (parameter and observed value) and,
    on failure, the versions still holding matches as example ids. The selector itself is never
    recorded (it may be personal data). ``record``: write dq_results rows and Data Docs.
    """
    if versions is None:
        versions = table_versions(spark, lake, table)
    versions = sorted(set(int(v) for v in versions))
    counts = check_erased(spark, lake, table, selector, versions)
    # Not through PublishGate: this checks a table after the fact, and an empty list of versions
    # must still run the suite (the gate skips empty frames: they publish nothing).
    report = run_suite(
        spark,
        counts,
        "erased_selector",
        lake=lake,
        run=run,
        table_name=table,
        table_version=max(versions) if versions else None,
        parameters={"versions_checked": versions},
        data_docs=record,
    )
    if record:
        write_results(spark, lake, [report], run)
    if raise_on_failure and not report.success:
        raise QualityGateError(report)
    return report
